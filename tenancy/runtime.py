"""Per-user runtime settings: the provider and model each user chose, and their live objects.

Two kinds of values, one lookup order:

- **Serialisable settings** (``provider``, ``model`` and any other JSON value)
  are stored in :class:`~tenancy.models.UserRuntimeContext`, one row per user
  and tenant scope, so every process reads the same values and they survive
  restarts.
- **Live objects** (``llm_instance``, ``mcp_client``: clients, connections)
  stay in this process, in a dict guarded by a lock.

A value is set for ``(user, current tenant)``, or ``(user, "")`` outside any
tenant. A read looks at ``(user, current tenant)``, then the user's global
scope ``(user, "")``, then ``TENANCY["RUNTIME_DEFAULTS"]``. Setting a value
never changes what another user or the global default reads; a setter with no
user (neither ``user_uuid=`` nor a ``user_id`` bound in the context) raises
``ValueError`` instead of touching the default, which only settings change.

Writes lock the user's row (``SELECT ... FOR UPDATE``; a process lock on
databases without row locks, such as SQLite), so concurrent writers never lose
an update. A read is one indexed query; it writes ``last_access`` at most once
a minute per user and scope. The functions are synchronous (they query the
database): from async code call them through ``asgiref.sync.sync_to_async``.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from contextlib import nullcontext
from datetime import timedelta
from typing import Any

from django.db import connections, router, transaction
from django.utils import timezone

from .conf import tenancy_settings
from .current import get_current_tenant_id, get_current_user_id
from .ids import is_valid_tenant_id
from .registry import tenant_context

__all__ = [
    "LIVE_KEYS",
    "cleanup_inactive_user_contexts",
    "clear_user_setting",
    "forget_tenant",
    "get_user_llm_instance",
    "get_user_mcp_client",
    "get_user_model",
    "get_user_provider",
    "get_user_runtime_context",
    "get_user_setting",
    "set_user_llm_instance",
    "set_user_mcp_client",
    "set_user_model",
    "set_user_provider",
    "set_user_setting",
]

logger = logging.getLogger("tenancy.runtime")

#: Keys whose values are live objects, kept in this process only.
LIVE_KEYS = frozenset({"llm_instance", "mcp_client"})
#: ``last_access`` is written by reads at most this often per user and scope.
TOUCH_INTERVAL = timedelta(minutes=1)
_USER_MAX_LENGTH = 255

# (user, scope) -> [live objects by key, time.monotonic() of the last use, the
# scope's tenant generation (see _generation)]
_live: dict[tuple[str, str], list[Any]] = {}
_live_lock = threading.Lock()
# Serialises read-modify-write on databases that ignore SELECT ... FOR UPDATE.
_write_lock = threading.Lock()


def _model() -> Any:
    from .models import UserRuntimeContext

    return UserRuntimeContext


def _user(user_uuid: Any) -> str | None:
    if user_uuid is None:
        user_uuid = get_current_user_id()
        if user_uuid is None:
            return None
    user = str(user_uuid)
    if not user or len(user) > _USER_MAX_LENGTH:
        raise ValueError(f"A user id is 1 to {_USER_MAX_LENGTH} characters (got {len(user)}).")
    return user


def _required_user(user_uuid: Any, key: str) -> str:
    user = _user(user_uuid)
    if user is None:
        raise ValueError(
            f"Setting {key!r} needs a user: pass user_uuid=..., or bind one with "
            "tenancy.Context(user_id=...). The global default is "
            'TENANCY["RUNTIME_DEFAULTS"] and is only changed in settings.'
        )
    return user


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise ValueError("A runtime setting key is a non-empty string, like 'provider'.")
    return key


def _scopes() -> tuple[str, ...]:
    """Return the scopes a read looks at, most specific first."""
    tenant_id = get_current_tenant_id()
    return (tenant_id, "") if tenant_id else ("",)


def _defaults() -> dict[str, Any]:
    return dict(tenancy_settings.RUNTIME_DEFAULTS or {})


# -- serialisable settings: the database -----------------------------------------


def _stored(user: str) -> list[dict[str, Any]]:
    """Return the user's stored values, most specific scope first; refresh ``last_access``."""
    model = _model()
    scopes = _scopes()
    rows = list(
        model.objects.filter(user_uuid=user, scope__in=scopes).only(
            "scope", "values", "last_access"
        )
    )
    now = timezone.now()
    stale = [row.pk for row in rows if now - row.last_access >= TOUCH_INTERVAL]
    if stale:
        # The condition keeps concurrent readers (any process) to one write a minute.
        model.objects.filter(pk__in=stale, last_access__lt=now - TOUCH_INTERVAL).update(
            last_access=now
        )
    by_scope = {row.scope: row.values for row in rows}
    return [by_scope[scope] for scope in scopes if scope in by_scope]


def _write(user: str, changes: dict[str, Any], removed: tuple[str, ...] = ()) -> None:
    """Apply *changes* to the user's row of the current scope, under a row lock."""
    model = _model()
    scope = get_current_tenant_id() or ""
    using = router.db_for_write(model)
    has_row_locks = connections[using].features.has_select_for_update
    now = timezone.now()
    with (
        nullcontext() if has_row_locks else _write_lock,
        transaction.atomic(using=using),
    ):
        row, created = (
            model.objects.using(using)
            .select_for_update()
            .get_or_create(
                user_uuid=user, scope=scope, defaults={"values": changes, "last_access": now}
            )
        )
        if created:
            return
        values = {**row.values, **changes}
        for key in removed:
            values.pop(key, None)
        row.values = values
        row.last_access = now
        row.save(update_fields=["values", "last_access", "updated_at"])


# -- live objects: this process ---------------------------------------------------


def _generation(scope: str) -> Any:
    """Which tenant registered under *scope* a live object belongs to: its creation time.

    A tenant unregistered and registered again under the same id is another
    tenant: the live objects of the first are never handed to the second, in
    any process (this one drops them at once, see :func:`forget_tenant`).
    """
    if not scope or not is_valid_tenant_id(scope):  # a bound id no tenant can have
        return None
    info = tenant_context.get_tenant(scope)
    return None if info is None else info.created_at


def _live_get(user: str | None, key: str) -> Any:
    if user is not None:
        for scope in _scopes():
            entry = _live.get((user, scope))
            if entry is None or key not in entry[0]:
                continue
            generation = _generation(scope)  # outside the lock: it may read the database
            with _live_lock:
                if _live.get((user, scope)) is not entry:
                    continue
                if entry[2] != generation:  # left by an earlier tenant of this id
                    del _live[(user, scope)]
                    continue
                entry[1] = time.monotonic()
                return entry[0].get(key)
    return _defaults().get(key)


def _live_set(user: str, key: str, value: Any) -> None:
    scope = get_current_tenant_id() or ""
    slot = (user, scope)
    generation = _generation(scope)
    with _live_lock:
        entry = _live.get(slot)
        if entry is None or entry[2] != generation:
            entry = _live[slot] = [{}, 0.0, generation]
        if value is None:
            entry[0].pop(key, None)
        else:
            entry[0][key] = value
        entry[1] = time.monotonic()
        if not entry[0]:
            del _live[slot]


# -- public API -------------------------------------------------------------------


def get_user_setting(key: str, user_uuid: Any = None, default: Any = None) -> Any:
    """Return the user's value for *key*: current tenant, then global scope, then the default.

    Without a user (none given, none bound), return ``TENANCY["RUNTIME_DEFAULTS"][key]``
    (or *default* when the key is not there either).
    """
    key = _check_key(key)
    user = _user(user_uuid)
    if key in LIVE_KEYS:
        value = _live_get(user, key)
        return default if value is None else value
    if user is not None:
        for values in _stored(user):
            if key in values:
                return values[key]
    return _defaults().get(key, default)


def set_user_setting(key: str, value: Any, user_uuid: Any = None) -> None:
    """Set *key* for one user, in the current tenant (or the user's global scope).

    Live keys (:data:`LIVE_KEYS`) stay in this process (``None`` removes one);
    any other value must be JSON-serialisable and is shared by every process.
    """
    key = _check_key(key)
    user = _required_user(user_uuid, key)
    if key in LIVE_KEYS:
        _live_set(user, key, value)
        return
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"Runtime setting {key!r} must be JSON-serialisable ({exc}). Live objects go "
            "through set_user_llm_instance() and set_user_mcp_client()."
        ) from None
    if "\\u0000" in text:  # PostgreSQL's jsonb cannot store NUL characters
        raise ValueError(f"Runtime setting {key!r} contains a NUL character.")
    _write(user, {key: value})


def clear_user_setting(key: str, user_uuid: Any = None) -> None:
    """Remove the user's value for *key* in the current scope, so reads fall back again."""
    key = _check_key(key)
    user = _required_user(user_uuid, key)
    if key in LIVE_KEYS:
        _live_set(user, key, None)
    else:
        _write(user, {}, removed=(key,))


def get_user_runtime_context(user_uuid: Any = None) -> dict[str, Any]:
    """Return every setting the user reads right now, live objects included, as a new dict.

    Changing the dict changes nothing stored: use the setters.
    """
    user = _user(user_uuid)
    values = _defaults()
    if user is not None:
        for stored in reversed(_stored(user)):
            values.update(stored)
    for key in sorted(LIVE_KEYS):
        values[key] = _live_get(user, key)
    return values


def get_user_provider(user_uuid: Any = None) -> Any:
    """Return the user's provider (see :func:`get_user_setting`)."""
    return get_user_setting("provider", user_uuid)


def set_user_provider(provider: Any, user_uuid: Any = None) -> None:
    """Set the user's provider; ``ValueError`` without a user (the default never changes)."""
    set_user_setting("provider", provider, user_uuid)


def get_user_model(user_uuid: Any = None) -> Any:
    """Return the user's model (see :func:`get_user_setting`)."""
    return get_user_setting("model", user_uuid)


def set_user_model(model: Any, user_uuid: Any = None) -> None:
    """Set the user's model; ``ValueError`` without a user (the default never changes)."""
    set_user_setting("model", model, user_uuid)


def get_user_llm_instance(user_uuid: Any = None) -> Any:
    """Return the user's LLM client object of this process, or the default."""
    return get_user_setting("llm_instance", user_uuid)


def set_user_llm_instance(llm_instance: Any, user_uuid: Any = None) -> None:
    """Keep the user's LLM client object in this process (``None`` removes it)."""
    set_user_setting("llm_instance", llm_instance, user_uuid)


def get_user_mcp_client(user_uuid: Any = None) -> Any:
    """Return the user's MCP client object of this process, or the default."""
    return get_user_setting("mcp_client", user_uuid)


def set_user_mcp_client(mcp_client: Any, user_uuid: Any = None) -> None:
    """Keep the user's MCP client object in this process (``None`` removes it)."""
    set_user_setting("mcp_client", mcp_client, user_uuid)


def cleanup_inactive_user_contexts(max_age_hours: float = 24) -> int:
    """Delete runtime contexts not used for more than *max_age_hours*; return how many.

    Removes the stored rows (every process) whose ``last_access`` is older than
    the limit, and this process's live objects unused for as long.
    """
    if (
        isinstance(max_age_hours, bool)
        or not isinstance(max_age_hours, (int, float))
        or not math.isfinite(max_age_hours)
        or max_age_hours < 0
    ):
        raise ValueError("max_age_hours must be a number of hours, 0 or more.")
    cutoff = timezone.now() - timedelta(hours=max_age_hours)
    removed, _ = _model().objects.filter(last_access__lt=cutoff).delete()
    idle_since = time.monotonic() - max_age_hours * 3600
    with _live_lock:
        for slot in [slot for slot, entry in _live.items() if entry[1] < idle_since]:
            del _live[slot]
    if removed:
        logger.info("Removed %d user runtime contexts idle for %s hours", removed, max_age_hours)
    return removed


def forget_tenant(tenant_id: str, using: str | None = None) -> int:
    """Delete every user's settings in *tenant_id*'s scope; return how many rows went.

    Called for ``tenant_unregistering``, inside the unregister's transaction:
    the stored rows go with it, and this process's live objects of the scope
    once it commits. Other processes' live objects of the tenant are never
    handed to a tenant registered again under the id (its creation time
    differs) and go at their next read or cleanup.
    """
    model = _model()
    using = using or router.db_for_write(model)
    removed, _ = model.objects.using(using).filter(scope=tenant_id).delete()

    def drop_live() -> None:
        with _live_lock:
            for slot in [slot for slot in _live if slot[1] == tenant_id]:
                del _live[slot]

    transaction.on_commit(drop_live, using=using)
    return removed
