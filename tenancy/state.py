"""The cache of tenant state: ``TenantInfo`` snapshots and the stores that keep them.

Where the state lives depends on the backend of ``TENANCY["CACHE_ALIAS"]``
(:func:`make_store`):

- a process-local backend (``LocMemCache``, ``DummyCache``): a bounded LRU in
  this process (:class:`LocalStore`) of at most ``TENANCY["LOCAL_CACHE_SIZE"]``
  tenants, whose entries expire after ``TENANCY["CACHE_TIMEOUT"]`` seconds;
- a shared backend (Redis, Memcached, database): the cache itself
  (:class:`SharedStore`) with a local copy in front of it
  (:class:`CoherentStore`), so that a warm lookup makes no network round trip.
  Every change bumps one "state version" key in the shared cache; each process
  reads that key at most once per ``TENANCY["STATE_RECHECK_INTERVAL"]`` seconds
  and drops its local copy when the version moved.

Every store answers ``get()`` with a ``TenantInfo``, ``None`` (a known absence)
or :data:`MISS`; ``load()`` fetches a missing value and keeps it unless fresher
state is there already, ``set()`` overwrites. Inside a database transaction the
stores are neither filled nor changed: :mod:`tenancy.overlay` keeps that
transaction's own view until it commits.

A shared cache that raises is a miss, never a crash: every call into it goes
through the few methods of :class:`SharedStore`, on the cache behind its
:class:`~tenancy.outage.GuardedCache` (failures skipped for a while, logged
once per interval, missed writes deleted once it answers again).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from django.core.cache import caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache

from .conf import tenancy_settings
from .current import RuntimeContext, tenant_snapshot
from .outage import guarded_cache

if TYPE_CHECKING:
    from .models.tenants import Tenant

__all__ = [
    "MISS",
    "CoherentStore",
    "LocalStore",
    "SharedStore",
    "TenantInfo",
    "make_store",
]

#: What a store answers for an id it knows nothing about.
MISS: Any = object()
_ABSENT = "-"  # what a shared cache holds for a well-formed id with no tenant behind it
_monotonic = time.monotonic
logger = logging.getLogger("tenancy.state")


@dataclass(frozen=True, slots=True)
class TenantInfo:
    """An immutable snapshot of a tenant, as the registry last saw it."""

    tenant_id: str
    name: str
    active: bool
    metadata: Mapping[str, Any]
    created_at: datetime | None
    # What switch() binds for this tenant on top of no context, made on its first
    # warm switch and kept as long as this snapshot of the tenant is cached.
    _bound: RuntimeContext | None = field(default=None, init=False, repr=False, compare=False)
    # The bookkeeping of the LocalStore that holds this snapshot (at most one does):
    # when it stops trusting it (0.0 until a store takes it), and the CLOCK use bit.
    # Kept here, not in an entry object around it, so that a warm switch reads
    # one object per tenant: what it returns.
    _expires: float = field(default=0.0, init=False, repr=False, compare=False)
    _used: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata or {})))

    def bound_context(self) -> RuntimeContext:
        """Return the context that binds this tenant alone (made once, then shared)."""
        bound = self._bound
        if bound is None:  # two threads may both make one: either is right
            bound = tenant_snapshot(self.tenant_id)
            object.__setattr__(self, "_bound", bound)
        return bound

    def __reduce__(self) -> tuple[Any, ...]:
        # MappingProxyType does not pickle; shared caches store the plain dict.
        return (
            TenantInfo,
            (self.tenant_id, self.name, self.active, dict(self.metadata), self.created_at),
        )

    @classmethod
    def from_model(cls, tenant: Tenant) -> TenantInfo:
        return cls(tenant.tenant_id, tenant.name, tenant.active, tenant.metadata, tenant.created_at)


# The store's bookkeeping slots, written past the frozen dataclass's __setattr__.
_set_expires: Callable[[TenantInfo, float], None] = TenantInfo.__dict__["_expires"].__set__
#: Set a cached snapshot's use bit: ``mark_used(info, True)`` (the registry's warm path).
mark_used: Callable[[TenantInfo, bool], None] = TenantInfo.__dict__["_used"].__set__


class LocalStore:
    """Tenant state in this process: at most ``size`` tenants, expiring after ``timeout``.

    ``data`` maps ids to :class:`TenantInfo` snapshots, each carrying its
    expiry and use bit, and is read directly by the registry's warm path.
    Beyond ``size`` tenants entries are evicted one at a time by the CLOCK
    algorithm, an approximation of least-recently-used that costs a lookup
    nothing but a bit: ``data`` is kept in insertion order, and the hand (the
    front of it) evicts the first entry not used since it last passed, moving
    used ones to the back with their bit cleared. So the entries used since the
    hand last went round (a hot set smaller than the bound) stay, and the
    coldest go first.

    Known absences (well-formed ids with no tenant) live in a smaller LRU of
    their own, so requests naming random ids never push out real tenants.
    Writers (``set``, ``load``, ``delete``, ``clear``) hold a lock; readers
    hold none: every step a reader takes is one atomic dict operation.
    """

    shared = False

    def __init__(self, timeout: float, size: int, name: str = "") -> None:
        self.timeout = timeout
        self.size = max(1, int(size))
        self.absent_size = max(16, self.size // 10)
        self.name = name
        self.data: OrderedDict[str, TenantInfo] = OrderedDict()
        self.absent: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        _locked.add(self)
        self._tick = timeout / 256
        self._expiry = (-1, 0.0)  # (tick, expiry): the expiry float the entries of a tick share

    def get(self, key: str) -> Any:
        info = self.data.get(key)
        if info is not None:
            if info._expires < _monotonic():
                return MISS
            if not info._used:
                mark_used(info, True)
            return info
        expires = self.absent.get(key)
        if expires is None or expires < _monotonic():
            return MISS
        try:
            self.absent.move_to_end(key)
        except KeyError:  # dropped meanwhile by a writer
            pass
        return None

    def load(self, key: str, fetch: Callable[[], Any]) -> Any:
        value = fetch()
        with self._lock:
            if self.get(key) is MISS:  # a fresher value written meanwhile wins
                self._set(key, value)
        return value

    def set(self, key: str, value: TenantInfo | None) -> None:
        with self._lock:
            self._set(key, value)

    def _set(self, key: str, value: TenantInfo | None) -> None:
        expires = self._expires()
        data, absent = self.data, self.absent
        if value is None:
            data.pop(key, None)
            absent[key] = expires
            absent.move_to_end(key)
            while len(absent) > self.absent_size:
                absent.popitem(last=False)
            return
        absent.pop(key, None)
        if value._expires:  # taken by a store already: this one keeps a copy of its own
            value = replace(value)
        _set_expires(value, expires)
        if key in data:
            data[key] = value  # replaced in place: never missing for a reader meanwhile
            data.move_to_end(key)
            return
        # Room first, then the new entry at the back: the hand never takes what it
        # was asked to store (an invalidation's fresh state least of all).
        while data and len(data) >= self.size:
            self._evict_one()
        data[key] = value

    def _evict_one(self) -> None:
        """Evict the entry under the hand that was not used since the hand last passed it.

        Readers set bits meanwhile without the lock, so after two laps the entry
        under the hand goes whatever its bit: the lock is never held for longer.
        """
        data = self.data
        for _ in range(2 * len(data)):
            key = next(iter(data))
            info = data[key]
            if not info._used:
                break
            mark_used(info, False)
            data.move_to_end(key)
        del data[next(iter(data))]

    def _expires(self) -> float:
        """When an entry stored now expires: ``timeout`` from now, early by at most 1/256 of it.

        The entries stored in one such tick share one float, so checking an
        entry's expiry reads memory that every other warm lookup keeps cached.
        """
        at = _monotonic() + self.timeout
        if not 0 < self._tick < math.inf:
            return at
        tick = int(at / self._tick)
        known, expires = self._expiry
        if known != tick:
            expires = tick * self._tick
            self._expiry = (tick, expires)
        return expires

    def delete(self, key: str) -> None:
        with self._lock:
            self.data.pop(key, None)
            self.absent.pop(key, None)

    def clear(self) -> None:
        """Forget everything, in place: the registry's warm path holds a reference to ``data``."""
        with self._lock:
            self.data.clear()
            self.absent.clear()

    def recheck(self) -> float:
        """Return when the local state must next be checked against others: never."""
        return math.inf


class SharedStore:
    """State in a cache shared by every process; a cache that raises is a miss."""

    shared = True

    def __init__(self, cache: Any, prefix: str, timeout: float) -> None:
        self.cache = cache
        self.prefix = prefix
        self.name = prefix
        self.timeout = timeout

    def get(self, key: str) -> Any:
        try:
            value = self.cache.get(self.prefix + key, MISS)
        except Exception:
            _failed("read", key)
            return MISS
        return None if value == _ABSENT else value

    def load(self, key: str, fetch: Callable[[], Any]) -> Any:
        value = fetch()
        self.add(key, value)
        return value

    def add(self, key: str, value: Any) -> None:
        # add(), not set(): a concurrent invalidation that wrote fresher state wins.
        try:
            self.cache.add(self.prefix + key, _ABSENT if value is None else value, self.timeout)
        except Exception:
            _failed("write", key)

    def set(self, key: str, value: Any) -> None:
        try:
            self.cache.set(self.prefix + key, _ABSENT if value is None else value, self.timeout)
        except Exception:
            _failed("write", key)

    def delete(self, key: str) -> None:
        try:
            self.cache.delete(self.prefix + key)
        except Exception:
            _failed("delete", key)

    def read_version(self) -> Any:
        """Return the state version, starting it at 0; :data:`MISS` if the cache failed."""
        key = self.prefix + _VERSION_KEY
        try:
            version = self.cache.get(key)
            if version is None:  # never set, or evicted: every process starts from 0
                self.cache.add(key, 0, None)
                version = self.cache.get(key)
            # Still None: a guarded cache that failed (tenancy.outage) answers its default.
            return MISS if version is None else version
        except Exception:
            _failed("read", _VERSION_KEY)
            return MISS

    def bump_version(self) -> Any:
        """Move the state version on; return the new one (:data:`MISS` if the cache failed)."""
        key = self.prefix + _VERSION_KEY
        try:
            try:
                return self.cache.incr(key)
            except ValueError:  # not set yet, or evicted: any new value is a move
                value = time.time_ns()
                self.cache.set(key, value, None)
                return value
        except Exception:
            _failed("write", _VERSION_KEY)
            return MISS


# Not a valid tenant id (ids have no "!"), so it never collides with a tenant's key.
_VERSION_KEY = "!version"


def _failed(action: str, key: str) -> None:
    logger.warning(
        "The shared cache failed to %s %r: treated as a miss.", action, key, exc_info=True
    )


class CoherentStore:
    """A shared store with a local copy in front: a warm lookup makes no network round trip.

    The local copy (a :class:`LocalStore`) is dropped when the shared "state
    version" moves: :meth:`recheck` reads that one key and the registry calls
    it at most once per ``interval`` seconds, so a change made by another
    process is seen within ``interval`` plus one round trip. A change made here
    (:meth:`set`) writes the shared value first, then bumps the version, and
    updates the local copy at once.
    """

    shared = True

    def __init__(self, shared: SharedStore, local: LocalStore, interval: float) -> None:
        self.shared_store = shared
        self.local = local
        self.data = local.data
        self.name = shared.name
        self.interval = interval
        self.version: Any = MISS  # the version the local copy is known to be as fresh as
        # Incremented each time the local copy is dropped: a value read from the
        # shared cache before a drop is not copied locally after it.
        self.epoch = 0
        self._lock = threading.Lock()
        _locked.add(self)

    def get(self, key: str) -> Any:
        value = self.local.get(key)
        if value is MISS:
            epoch = self.epoch
            value = self.shared_store.get(key)
            if value is not MISS:
                self._keep(key, value, epoch)
        return value

    def load(self, key: str, fetch: Callable[[], Any]) -> Any:
        epoch = self.epoch
        value = fetch()
        self.shared_store.add(key, value)
        self._keep(key, value, epoch)
        return value

    def _keep(self, key: str, value: Any, epoch: int) -> None:
        with self._lock:
            if epoch == self.epoch and self.local.get(key) is MISS:
                self.local.set(key, value)

    def set(self, key: str, value: TenantInfo | None) -> None:
        self.shared_store.set(key, value)
        version = self.shared_store.bump_version()
        with self._lock:
            self.local.set(key, value)
            if isinstance(version, int) and version - 1 == self.version:
                self.version = version  # nobody else changed anything since we last looked

    def delete(self, key: str) -> None:
        self.shared_store.delete(key)
        self.shared_store.bump_version()
        self.local.delete(key)

    def clear(self) -> None:
        with self._lock:
            self.epoch += 1
            self.local.clear()

    def recheck(self) -> float:
        """Drop the local copy if the shared state version moved; return the next deadline.

        A shared cache that fails drops the local copy too: state that cannot be
        checked is not trusted.
        """
        deadline = _monotonic() + self.interval
        version = self.shared_store.read_version()
        if version is MISS or version != self.version:
            with self._lock:
                self.epoch += 1
                self.local.clear()
                self.version = version
        return deadline


# The stores whose lock a forked child re-creates: another thread of the parent
# may have held one at the fork, and nobody in the child would release it.
_locked: weakref.WeakSet[LocalStore | CoherentStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_locked):
        store._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def make_store(using: str) -> LocalStore | CoherentStore:
    """Return the store for the tenants of database alias *using*, as the settings say."""
    cache = caches[tenancy_settings.CACHE_ALIAS]
    timeout = float(tenancy_settings.CACHE_TIMEOUT)
    name = f"{tenancy_settings.CACHE_KEY_PREFIX}:{using}:tenant:"
    local = LocalStore(timeout, tenancy_settings.LOCAL_CACHE_SIZE, name)
    if isinstance(cache, (LocMemCache, DummyCache)):
        return local
    interval = float(tenancy_settings.STATE_RECHECK_INTERVAL)
    # Guarded: a cache that fails is a miss, and the database answers (tenancy.outage).
    guarded = guarded_cache(tenancy_settings.CACHE_ALIAS)
    return CoherentStore(SharedStore(guarded, name, timeout), local, interval)
