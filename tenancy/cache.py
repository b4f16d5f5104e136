"""Tenant-aware cache keys: one namespace per tenant in any Django cache.

Three tools, from the broadest to the strictest:

- :func:`make_key`, a ``CACHES[alias]["KEY_FUNCTION"]``: every key of that cache
  is written in the bound tenant's namespace, ``<KEY_PREFIX>:t:<tenant_id>:<version>:<key>``,
  and in ``<KEY_PREFIX>:shared:<version>:<key>`` with no tenant bound (``shared`` is
  never a tenant id: those keys sit beside the ``t`` namespaces, not in one).
  Keys that start with ``TENANCY["CACHE_KEY_PREFIX"]`` (the registry's own entries)
  or with one of ``TENANCY["CACHE_SHARED_PREFIXES"]`` (sessions, by default) are
  always shared, so they read the same whoever is bound.
- :func:`tenant_cache`: a cache whose every key is in the bound tenant's
  namespace (whatever the alias's ``KEY_FUNCTION``) and which raises
  ``TenantRequiredError`` with no tenant bound: for data that must never be shared.
- :func:`clear_tenant_cache`: remove one tenant's keys (Redis, local memory);
  ``CacheClearUnsupportedError`` where the backend cannot list keys.
"""

from __future__ import annotations

import weakref
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from django.core.signals import setting_changed

from .conf import tenancy_settings
from .exceptions import CacheClearUnsupportedError, InvalidTenantIdError
from .ids import describe_rejected, is_valid_tenant_id, validate_tenant_id
from .registry import bound_tenant_id, require_tenant_id

__all__ = ["SHARED", "TenantCache", "clear_tenant_cache", "make_key", "tenant_cache", "tenant_key"]

#: The namespace of keys written with no tenant bound (and of always-shared keys).
SHARED = "shared"

_shared_prefixes: tuple[str, ...] | None = None


def _get_shared_prefixes() -> tuple[str, ...]:
    global _shared_prefixes
    if _shared_prefixes is None:
        _shared_prefixes = (
            f"{tenancy_settings.CACHE_KEY_PREFIX}:",
            *tenancy_settings.CACHE_SHARED_PREFIXES,
        )
    return _shared_prefixes


def _forget_prefixes(*, setting: str, **kwargs: Any) -> None:
    global _shared_prefixes
    if setting == "TENANCY":
        _shared_prefixes = None


setting_changed.connect(_forget_prefixes, dispatch_uid="tenancy.cache.prefixes")


def tenant_key(tenant_id: str, key: Any, key_prefix: str, version: Any) -> str:
    """Return the key *key* of tenant *tenant_id* as stored by the backend."""
    return f"{key_prefix}:t:{tenant_id}:{version}:{key}"


def make_key(key: Any, key_prefix: str, version: Any) -> str:
    """Build a cache key in the bound tenant's namespace: a ``KEY_FUNCTION`` for ``CACHES``.

    With no tenant bound (or ``default``), and for the always-shared keys, the
    key is in the :data:`SHARED` namespace. A malformed bound tenant id raises
    ``InvalidTenantIdError`` rather than reach a key.
    """
    tenant_id = bound_tenant_id()
    if tenant_id is None or str(key).startswith(_shared_prefixes or _get_shared_prefixes()):
        return f"{key_prefix}:{SHARED}:{version}:{key}"
    if not is_valid_tenant_id(tenant_id):
        raise InvalidTenantIdError(f"Invalid bound tenant id ({describe_rejected(tenant_id)}).")
    return f"{key_prefix}:t:{tenant_id}:{version}:{key}"


class _TenantScoped:
    """Mixed in front of a backend class: keys in the bound tenant's namespace, or raise."""

    key_prefix: str
    version: int

    def make_key(self, key: Any, version: int | None = None) -> str:
        return tenant_key(
            require_tenant_id(), key, self.key_prefix, self.version if version is None else version
        )

    def clear(self) -> None:
        """Remove the bound tenant's keys only (not the whole cache)."""
        _clear(self, require_tenant_id())

    async def aclear(self) -> None:
        await sync_to_async(self.clear, thread_sensitive=True)()


_VIEW_CLASSES: dict[type, type] = {}
_VIEWS: weakref.WeakKeyDictionary[BaseCache, BaseCache] = weakref.WeakKeyDictionary()


def _view(backend: BaseCache) -> BaseCache:
    """Return *backend* seen through :class:`_TenantScoped`: the same connection and storage."""
    view = _VIEWS.get(backend)
    if view is None:
        cls = type(backend)
        view_class = _VIEW_CLASSES.get(cls)
        if view_class is None:
            view_class = type(f"Tenant{cls.__name__}", (_TenantScoped, cls), {})
            _VIEW_CLASSES[cls] = view_class
        scoped: Any = object.__new__(view_class)
        # One __dict__ for both: clients, pools and locks made by either are shared.
        scoped.__dict__ = backend.__dict__
        _VIEWS[backend] = view = scoped
    return view


class TenantCache:
    """The cache *alias*, every key in the bound tenant's namespace (see :func:`tenant_cache`).

    Like ``django.core.cache.cache``, it finds the alias's backend of the current
    thread at each use, so a module-level instance is safe.
    """

    def __init__(self, alias: str = "default") -> None:
        self._alias = alias

    def __getattr__(self, name: str) -> Any:
        return getattr(_view(caches[self._alias]), name)

    def __contains__(self, key: Any) -> bool:
        return bool(_view(caches[self._alias]).has_key(key))

    def __repr__(self) -> str:
        return f"<TenantCache alias={self._alias!r}>"


def tenant_cache(alias: str = "default") -> TenantCache:
    """Return the cache *alias* with every key in the bound tenant's namespace.

    Every call (``get``, ``set``, ``get_many``, ``incr``, their ``a*`` twins...)
    raises ``TenantRequiredError`` with no tenant bound, and
    ``TenantNotRegisteredError`` for an unregistered one; ``clear()`` removes
    the bound tenant's keys only. The keys are the ones :func:`make_key` makes
    for a bound tenant, so :func:`clear_tenant_cache` removes them too.
    """
    return TenantCache(alias)


def clear_tenant_cache(tenant_id: str, alias: str = "default") -> int:
    """Remove every key of tenant *tenant_id* from the cache *alias*; return how many.

    Keys written through :func:`make_key` or :func:`tenant_cache` are removed,
    every version; other tenants' keys and shared keys stay. Works on Django's
    ``RedisCache`` (``SCAN`` by prefix, then ``DEL``) and ``LocMemCache``; on a
    ``DummyCache`` there is nothing to remove. Any other backend raises
    ``CacheClearUnsupportedError``.
    """
    validate_tenant_id(tenant_id)
    return _clear(caches[alias], tenant_id)


_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


def _clear(backend: Any, tenant_id: str) -> int:
    prefix = tenant_key(tenant_id, "", backend.key_prefix, "")[:-1]  # "<prefix>:t:<id>:"
    if isinstance(backend, RedisCache):
        client = backend._cache.get_client(write=True)
        removed = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=prefix.translate(_GLOB_SPECIAL) + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                removed += client.delete(*batch)
                batch = []
        if batch:
            removed += client.delete(*batch)
        return removed
    if isinstance(backend, LocMemCache):
        local: Any = backend
        with local._lock:
            keys = [key for key in local._cache if key.startswith(prefix)]
            for key in keys:
                local._delete(key)
        return len(keys)
    if isinstance(backend, DummyCache):
        return 0
    raise CacheClearUnsupportedError(
        f"{type(backend).__module__}.{type(backend).__name__} cannot remove keys by prefix: "
        + CacheClearUnsupportedError.default_message
    )
