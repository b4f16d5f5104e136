"""Cached memberships: which tenants a user belongs to, with no query once warm.

One cache entry per user (in ``TENANCY["CACHE_ALIAS"]``, so every process
sees the same answer with a shared cache) holds the ids of the user's tenants.
Saving or deleting a ``TenantMembership`` writes the fresh state when the
transaction commits; until then only that transaction sees the change, and a
rollback leaves the cache as it was (:mod:`tenancy.overlay`). Receivers are
connected in ``TenancyConfig.ready()``. ``QuerySet.update()`` and ``bulk_create()`` send no
signal: change memberships through ``save()``/``delete()``, or call
:func:`invalidate_user`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from .conf import tenancy_settings
from .outage import database_guard, guarded_cache
from .overlay import read_through, write
from .state import SharedStore

__all__ = ["invalidate_user", "is_member", "user_tenant_ids"]

_SAFE_PK = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _store(using: str) -> SharedStore:
    # The cache itself, even a local-memory one: memberships are read per user.
    prefix = f"{tenancy_settings.CACHE_KEY_PREFIX}:{using}:members:"
    # Guarded: a cache that fails is a miss, and the database answers (tenancy.outage).
    return SharedStore(guarded_cache(), prefix, tenancy_settings.CACHE_TIMEOUT)


def _key(user_pk: Any) -> str:
    raw = str(user_pk)
    if not _SAFE_PK.fullmatch(raw):  # keep keys valid for every cache backend
        raw = hashlib.sha256(raw.encode()).hexdigest()[:32]
    return raw


def _fetch(user_pk: Any, using: str) -> tuple[str, ...]:
    from .models.tenants import TenantMembership

    rows = TenantMembership.objects.using(using).filter(user_id=user_pk)
    with database_guard("Memberships"):
        ids = list(rows.values_list("tenant_id", flat=True))
    return tuple(sorted(str(tenant_id) for tenant_id in ids))


def user_tenant_ids(user_pk: Any, using: str = "default") -> frozenset[str]:
    """Return the ids of the tenants the user with primary key *user_pk* belongs to."""
    ids = read_through(_store(using), _key(user_pk), lambda: _fetch(user_pk, using), using)
    return frozenset(ids)


def is_member(tenant_id: str, user_pk: Any, using: str = "default") -> bool:
    """Return True if the user with primary key *user_pk* is a member of *tenant_id*."""
    return tenant_id in user_tenant_ids(user_pk, using)


def invalidate_user(user_pk: Any, using: str = "default") -> None:
    """Store the user's fresh memberships once the transaction commits (at once outside one)."""
    write(_store(using), _key(user_pk), lambda: _fetch(user_pk, using), using)


def membership_changed(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
    """Receiver of ``post_save``/``post_delete`` of ``TenantMembership``."""
    invalidate_user(instance.user_id, using)
