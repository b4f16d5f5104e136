"""``Context``: bind context values for a ``with`` or ``async with`` block.

The context itself (the one ``ContextVar``, ``RuntimeContext`` and the
``get_current_*``/``set_current_*`` accessors) lives in :mod:`tenancy.current`
and is re-exported here; ``Context(validate_tenant=True)`` checks the tenant
against the registry, so this module sits above it.

Where a bound value is visible (the rules of :mod:`contextvars`):

- in the code running inside the ``with``/``async with`` block or decorated call;
- in asyncio tasks *created* inside the block (they copy the context when created);
- in ``sync_to_async`` and ``async_to_sync`` calls made inside the block (asgiref
  carries the context across the hop);
- not in threads started by hand (``threading.Thread`` starts with an empty
  context) unless you run them with ``contextvars.copy_context().run``;
- never in another request, task or thread running at the same time, and never
  after the block has exited.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

from .conf import tenancy_settings
from .current import (
    WELL_KNOWN_KEYS,
    RuntimeContext,
    bind,
    bind_value,
    check_ids,
    clear_context,
    enter_block,
    get_collection_id,
    get_context,
    get_current_agent_id,
    get_current_collection_id,
    get_current_context,
    get_current_conversation_id,
    get_current_request_id,
    get_current_session_id,
    get_current_tenant_id,
    get_current_user_id,
    get_full_context,
    leave_block,
    reset_context,
    set_context,
    set_current_agent_id,
    set_current_collection_id,
    set_current_conversation_id,
    set_current_request_id,
    set_current_session_id,
    set_current_tenant_id,
    set_current_user_id,
)
from .exceptions import TenantRequiredError
from .ids import is_valid_tenant_id
from .registry import require_tenant_id, tenant_context

__all__ = [
    "WELL_KNOWN_KEYS",
    "Context",
    "RuntimeContext",
    "bind",
    "bind_value",
    "clear_context",
    "get_collection_id",
    "get_context",
    "get_current_agent_id",
    "get_current_collection_id",
    "get_current_context",
    "get_current_conversation_id",
    "get_current_request_id",
    "get_current_session_id",
    "get_current_tenant_id",
    "get_current_user_id",
    "get_full_context",
    "reset_context",
    "set_context",
    "set_current_agent_id",
    "set_current_collection_id",
    "set_current_conversation_id",
    "set_current_request_id",
    "set_current_session_id",
    "set_current_tenant_id",
    "set_current_user_id",
]


class Context:
    """Bind context values for a block: ``with Context(...)`` or ``async with Context(...)``.

    Entering binds the given values on top of the current context (``None``
    means "not given": the current value stays); leaving restores exactly what
    was there before, also on exceptions and when nested. The same instance may
    be entered again, also while it is already entered, and by several tasks or
    threads at once (each leaving restores what that task had).

    ``validate_tenant=True`` checks the tenant that will be current inside the
    block (the given one, or the current one if none is given): it must be set,
    not reserved (``default``), well-formed, registered and active; otherwise
    ``TenantRequiredError``, ``InvalidTenantIdError``, ``TenantNotRegisteredError``
    or ``TenantInactiveError`` is raised and nothing is bound.

    Visibility follows :mod:`contextvars` (see this module's docstring): tasks
    created and ``sync_to_async``/``async_to_sync`` calls made inside the block
    see the values; concurrent tasks, threads and requests never do.
    """

    __slots__ = ("_validate", "_values")

    def __init__(
        self,
        tenant_id: str | None = None,
        agent_id: str | None = None,
        conversation_id: str | None = None,
        collection_id: str | None = None,
        request_id: str | None = None,
        user_id: Any = None,
        validate_tenant: bool = False,
        **variables: Any,
    ) -> None:
        values = {
            "tenant_id": tenant_id,
            "agent_id": agent_id,
            "conversation_id": conversation_id,
            "collection_id": collection_id,
            "request_id": request_id,
            "user_id": user_id,
        }
        self._values = {k: v for k, v in values.items() if v is not None}
        check_ids(self._values)
        self._values.update(variables)
        self._validate = validate_tenant

    def __repr__(self) -> str:
        return f"Context({self._values!r}, validate_tenant={self._validate})"

    def _enter(self) -> Context:
        if self._validate:
            tenant_id = self._values.get("tenant_id", get_current_tenant_id())
            if tenant_id is None or tenant_id in tenancy_settings.RESERVED_TENANT_IDS:
                raise TenantRequiredError()
            tenant_context.get_active_tenant(tenant_id)
        enter_block(self, self._values)
        return self

    def _exit(self) -> None:
        leave_block(self)

    def __enter__(self) -> Context:
        return self._enter()

    def __exit__(self, *exc_info: object) -> None:
        self._exit()

    async def __aenter__(self) -> Context:
        if self._validate:
            # Warm the registry off the event loop: a cold lookup reads the database.
            tid = self._values.get("tenant_id", get_current_tenant_id())
            if is_valid_tenant_id(tid) and not tenant_context.is_cached(tid):
                await sync_to_async(tenant_context.get_tenant)(tid)
        return self._enter()

    async def __aexit__(self, *exc_info: object) -> None:
        self._exit()

    # Accessors: read the *current* context, so they are right inside the block.

    def get_tenant_id(self) -> str:
        """Return the current tenant id; never ``None`` or ``default`` (raise instead)."""
        return require_tenant_id()

    def get_agent_id(self) -> str | None:
        return get_current_agent_id()

    def get_conversation_id(self) -> str | None:
        return get_current_conversation_id()

    def get_collection_id(self) -> str | None:
        return get_current_collection_id()

    def get_request_id(self) -> str | None:
        return get_current_request_id()

    def get_user_id(self) -> Any:
        return get_current_user_id()

    def get(self, key: str, default: Any = None) -> Any:
        """Return any current variable, or *default*."""
        ctx = get_context()
        return default if ctx is None else ctx.get(key, default)
