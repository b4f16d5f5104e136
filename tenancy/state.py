"""The cache of tenant state: ``TenantInfo`` snapshots and the stores that keep them.

Where the state lives depends on the backend of ``TENANCY["CACHE_ALIAS"]``
(:func:`make_store`):

- a process-local backend (``LocMemCache``, ``DummyCache``): a dict in this
  process (:class:`LocalStore`), whose entries expire after
  ``TENANCY["CACHE_TIMEOUT"]`` seconds;
- a shared backend (Redis, Memcached, database): the cache itself
  (:class:`SharedStore`), so that a change made by one process is seen by every
  process at its next lookup.

Both stores answer ``get()`` with a ``TenantInfo``, ``None`` (a known absence)
or :data:`MISS`; ``add()`` never overwrites fresher state, ``set()`` does.
:func:`invalidate_on_commit` is the one way cached state is changed: dropped at
once, the fresh value written when the transaction commits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from django.core.cache import caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.db import transaction

from .conf import tenancy_settings
from .outage import guarded_cache

if TYPE_CHECKING:
    from .models.tenants import Tenant

__all__ = [
    "MISS",
    "LocalStore",
    "SharedStore",
    "TenantInfo",
    "invalidate_on_commit",
    "make_store",
    "read_through",
]

#: What a store answers for an id it knows nothing about.
MISS: Any = object()
_ABSENT = "-"  # what a shared cache holds for a well-formed id with no tenant behind it
_LOCAL_LIMIT = 10_000
_monotonic = time.monotonic


@dataclass(frozen=True, slots=True)
class TenantInfo:
    """An immutable snapshot of a tenant, as the registry last saw it."""

    tenant_id: str
    name: str
    active: bool
    metadata: Mapping[str, Any]
    created_at: datetime | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata or {})))

    def __reduce__(self) -> tuple[Any, ...]:
        # MappingProxyType does not pickle; shared caches store the plain dict.
        return (
            TenantInfo,
            (self.tenant_id, self.name, self.active, dict(self.metadata), self.created_at),
        )

    @classmethod
    def from_model(cls, tenant: Tenant) -> TenantInfo:
        return cls(tenant.tenant_id, tenant.name, tenant.active, tenant.metadata, tenant.created_at)


class LocalStore:
    """Tenant state in a dict of this process; entries expire after ``timeout``."""

    shared = False

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.data: dict[str, tuple[Any, float]] = {}

    def get(self, tenant_id: str) -> Any:
        entry = self.data.get(tenant_id)
        if entry is None or entry[1] < _monotonic():
            return MISS
        return entry[0]

    def add(self, tenant_id: str, value: TenantInfo | None) -> None:
        if len(self.data) >= _LOCAL_LIMIT:
            self._evict()
        now = _monotonic()
        current = self.data.get(tenant_id)
        if current is None or current[1] < now:
            self.data[tenant_id] = (value, now + self.timeout)

    def set(self, tenant_id: str, value: TenantInfo | None) -> None:
        self.data[tenant_id] = (value, _monotonic() + self.timeout)

    def _evict(self) -> None:
        """Make room: drop unknown ids and expired entries first, real tenants last.

        Requests naming random well-formed ids fill the store with absences;
        they must not push out the tenants that are really used. The dict is
        changed in place: the registry's hot path holds a reference to it.
        """
        now = _monotonic()
        for key, (value, expires) in list(self.data.items()):
            if value is None or expires < now:
                self.data.pop(key, None)
        if len(self.data) >= _LOCAL_LIMIT:  # that many real tenants: start afresh
            self.data.clear()

    def delete(self, tenant_id: str) -> None:
        self.data.pop(tenant_id, None)


class SharedStore:
    """Tenant state in a cache shared by every process."""

    shared = True

    def __init__(self, cache: Any, prefix: str, timeout: float) -> None:
        self.cache = cache
        self.prefix = prefix
        self.timeout = timeout

    def get(self, tenant_id: str) -> Any:
        value = self.cache.get(self.prefix + tenant_id, MISS)
        return None if value == _ABSENT else value

    def add(self, tenant_id: str, value: TenantInfo | None) -> None:
        # add(), not set(): a concurrent invalidation that wrote fresher state wins.
        self.cache.add(self.prefix + tenant_id, _ABSENT if value is None else value, self.timeout)

    def set(self, tenant_id: str, value: TenantInfo | None) -> None:
        self.cache.set(self.prefix + tenant_id, _ABSENT if value is None else value, self.timeout)

    def delete(self, tenant_id: str) -> None:
        self.cache.delete(self.prefix + tenant_id)


def make_store(using: str) -> LocalStore | SharedStore:
    """Return the store for the tenants of database alias *using*, as the settings say."""
    cache = caches[tenancy_settings.CACHE_ALIAS]
    timeout = float(tenancy_settings.CACHE_TIMEOUT)
    if isinstance(cache, (LocMemCache, DummyCache)):
        return LocalStore(timeout)
    # Guarded: a cache that fails is a miss, and the database answers (tenancy.outage).
    guarded = guarded_cache(tenancy_settings.CACHE_ALIAS)
    return SharedStore(guarded, f"{tenancy_settings.CACHE_KEY_PREFIX}:{using}:tenant:", timeout)


def read_through(store: Any, key: str, fetch: Callable[[], Any]) -> Any:
    """Return *store*'s value for *key*; on a miss, *fetch* it and ``add()`` it.

    ``add()``, not ``set()``: a fresher value written meanwhile by an
    invalidation wins over what this read fetched.
    """
    value = store.get(key)
    if value is MISS:
        value = fetch()
        store.add(key, value)
    return value


def invalidate_on_commit(store: Any, key: str, fresh: Callable[[], Any], using: str) -> None:
    """Drop *key* from *store* now; write ``fresh()`` once the transaction on *using* commits."""
    store.delete(key)
    transaction.on_commit(lambda: store.set(key, fresh()), using=using)
