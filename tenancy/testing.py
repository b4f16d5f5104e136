"""Test helpers: forget every cached tenant state between tests, and create tenants for them.

Tenant state and memberships are cached (:mod:`tenancy.state`,
:mod:`tenancy.membership`); a test whose transaction is rolled back must not
leave a tenant behind in those caches for the next test to see.
:func:`reset_caches` forgets them all: the registries' process-local stores and
the entries under ``TENANCY["CACHE_KEY_PREFIX"]`` in the cache
``TENANCY["CACHE_ALIAS"]``. The pytest plugin (:mod:`tenancy.pytest_plugin`)
calls it before and after every test; a ``unittest`` suite can call it in
``setUp``.
"""

from __future__ import annotations

from typing import Any

from django.core.cache import caches
from django.core.cache.backends.db import DatabaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

from .conf import tenancy_settings
from .current import clear_context
from .registry import reset_all_caches, tenant_context
from .state import TenantInfo
from .stats.flush import forget_push_failure

__all__ = ["create_tenant", "forget_shared_state", "reset_caches"]


def reset_caches() -> None:
    """Forget all cached tenant state and memberships, and unbind the context."""
    clear_context()
    reset_all_caches()
    forget_push_failure()
    forget_shared_state()


def forget_shared_state() -> None:
    """Delete the tenancy entries (``TENANCY["CACHE_KEY_PREFIX"]``) of the tenancy cache.

    Local memory and Redis caches lose only those entries; the database cache
    is left alone (its rows are rolled back with the test's transaction); a
    backend that cannot list its keys (Memcached, the file cache) is cleared.
    """
    cache: Any = caches[tenancy_settings.CACHE_ALIAS]
    prefix = cache.make_key(f"{tenancy_settings.CACHE_KEY_PREFIX}:")
    if isinstance(cache, LocMemCache):
        local: Any = cache  # its dict and lock are private; no public way to list keys
        with local._lock:
            for key in [k for k in local._cache if k.startswith(prefix)]:
                local._delete(key)
    elif hasattr(cache, "delete_pattern"):  # django-redis
        cache.delete_pattern(f"{tenancy_settings.CACHE_KEY_PREFIX}:*")
    elif isinstance(cache, RedisCache):
        client = cache._cache.get_client(None, write=True)
        keys = list(client.scan_iter(match=_glob_escape(prefix) + "*", count=500))
        if keys:
            client.delete(*keys)
    elif not isinstance(cache, DatabaseCache):
        cache.clear()


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def create_tenant(
    tenant_id: str,
    name: str | None = None,
    *,
    active: bool = True,
    metadata: dict[str, Any] | None = None,
    using: str = "default",
) -> TenantInfo:
    """Register *tenant_id* (named after itself unless *name* is given), deactivated if asked."""
    from .registry import TenantContext

    registry = tenant_context if using == "default" else TenantContext(using)
    info = registry.register_tenant(tenant_id, name or tenant_id.title(), metadata=metadata)
    if not active:
        info = registry.deactivate_tenant(tenant_id)
    return info
