"""The one ContextVar, the immutable ``RuntimeContext`` it holds, and its accessors.

A request or task has one context: an immutable snapshot of variables in a
single :class:`~contextvars.ContextVar`. A read is one lookup; binding values
is one ``set`` that makes a new snapshot, undone by one ``reset``.

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

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import Any

from .conf import tenancy_settings
from .exceptions import InvalidContextIdError
from .ids import CONTEXT_IDS, describe_rejected, is_valid_context_id, validate_tenant_id
from .memo import remember

__all__ = [
    "CONTEXT_IDS",
    "WELL_KNOWN_KEYS",
    "RuntimeContext",
    "bind",
    "bind_owned",
    "bind_value",
    "check_ids",
    "clear_context",
    "enter_block",
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
    "leave_block",
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

#: The well-known keys; any other key may be bound too.
WELL_KNOWN_KEYS = ("tenant_id", "request_id", "user_id", *CONTEXT_IDS, "session_id")


class RuntimeContext:
    """An immutable snapshot of context variables.

    ``variables`` is a read-only mapping. Any key is allowed besides the
    well-known ones (feature flags, custom data). Instances are never mutated:
    :meth:`replace` returns a new snapshot.
    """

    __slots__ = ("_data", "_log_fields", "_registered_tenant")

    _data: dict[str, Any]
    # The log record attributes tenancy.log derives from this snapshot, set on
    # first use (see set_log_fields); they never go stale, as _data never changes.
    _log_fields: dict[str, Any] | None
    # The tenant id of this snapshot once the registry found it registered (see
    # tenancy.registry.require_tenant_id): later scoped queries skip the lookup.
    _registered_tenant: str | None

    def __init__(self, variables: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_data", dict(variables) if variables else {})
        object.__setattr__(self, "_log_fields", None)
        object.__setattr__(self, "_registered_tenant", None)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("RuntimeContext is immutable; use replace() or Context(...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("RuntimeContext is immutable; use replace() or Context(...)")

    @property
    def variables(self) -> Mapping[str, Any]:
        """The variables, as a read-only mapping."""
        return MappingProxyType(self._data)

    def get(self, key: str, default: Any = None) -> Any:
        """Return the variable *key*, or *default* when it is not set."""
        return self._data.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RuntimeContext):
            return self._data == other._data
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RuntimeContext({self._data!r})"

    def replace(self, **values: Any) -> RuntimeContext:
        """Return a new snapshot with *values* set on top of this one."""
        data = self._data.copy()
        data.update(values)
        return _wrap(data)


# Hot path: build a snapshot around a dict nobody else holds, without copying it
# again and without the generic attribute lookup of ``object.__setattr__`` (the
# slot's own descriptor is about 2.5x cheaper).
_new = object.__new__
_set_data = RuntimeContext.__dict__["_data"].__set__
#: Store the log fields derived from a snapshot on it (used by tenancy.log).
set_log_fields = _set_log_fields = RuntimeContext.__dict__["_log_fields"].__set__
#: Record that a snapshot's tenant is registered (used by tenancy.registry).
set_registered_tenant = _set_registered = RuntimeContext.__dict__["_registered_tenant"].__set__


def _wrap(data: dict[str, Any]) -> RuntimeContext:
    ctx = _new(RuntimeContext)
    _set_data(ctx, data)
    # Unset slots start as None: reading an empty slot raises AttributeError,
    # which costs more than the two stores (the first log line and the first
    # scoped query of every request read them).
    _set_log_fields(ctx, None)
    _set_registered(ctx, None)
    return ctx


_CONTEXT: ContextVar[RuntimeContext | None] = ContextVar("tenancy_context", default=None)
_get = _CONTEXT.get
_set = _CONTEXT.set


def get_context() -> RuntimeContext | None:
    """Return the current :class:`RuntimeContext`, or ``None``."""
    return _get()


get_current_context = get_context


def set_context(ctx: RuntimeContext | Mapping[str, Any] | None) -> Token[RuntimeContext | None]:
    """Replace the whole current context; undo with ``reset_context(token)``."""
    if ctx is not None and not isinstance(ctx, RuntimeContext):
        ctx = RuntimeContext(ctx)
    return _CONTEXT.set(ctx)


def clear_context() -> None:
    """Clear the context of the current task or thread (others keep theirs)."""
    _CONTEXT.set(None)


def reset_context(token: Token[Any] | None = None, name: str | None = None) -> None:
    """Undo a ``set_*`` call, or clear everything.

    With a *token* (from :func:`set_context` or a ``set_current_*_id`` call),
    restore exactly what was bound before it; *name* is accepted for symmetry
    with the ``(token, name)`` pairs of :func:`tenancy.propagation.setup_context_from_headers`.
    With no arguments, clear the context of this task or thread (for tests).
    """
    if token is None:
        _CONTEXT.set(None)
        return
    _CONTEXT.reset(token)


def bind(values: Mapping[str, Any]) -> Token[RuntimeContext | None]:
    """Bind *values* on top of the current context; return the token to reset.

    Low level: pair it with ``reset_context(token)`` in a ``finally`` of the
    same frame, or use :class:`Context`.
    """
    current = _get()
    if current is None:
        data = dict(values)
    else:
        data = current._data.copy()
        data.update(values)
    return _set(_wrap(data))


def bind_owned(data: dict[str, Any]) -> Token[RuntimeContext | None]:
    """:func:`bind` for a dict the caller made for this call and never touches again.

    On top of an empty context the dict becomes the snapshot's own, uncopied.
    """
    current = _get()
    if current is not None:
        merged = current._data.copy()
        merged.update(data)
        data = merged
    ctx = _new(RuntimeContext)
    _set_data(ctx, data)
    _set_log_fields(ctx, None)
    _set_registered(ctx, None)
    return _set(ctx)


# Snapshots bound on top of an empty context by ``bind_value(..., intern=True)``
# (a bounded memo table: about 300 bytes a snapshot).
_INTERNED: OrderedDict[tuple[str, Any], RuntimeContext] = OrderedDict()


def bind_value(key: str, value: Any, *, intern: bool = False) -> Token[RuntimeContext | None]:
    """Bind one variable on top of the current context; the fast form of :func:`bind`.

    ``intern=True`` is for values from a small, bounded set, such as tenant ids:
    the snapshot made on top of an empty context is kept and bound again next
    time instead of being rebuilt (snapshots are immutable, so sharing one is safe).
    """
    current = _get()
    if current is None:
        if not intern:
            data = {key: value}
        else:
            ctx = _INTERNED.get((key, value))
            if ctx is None:
                ctx = remember(_INTERNED, (key, value), _wrap({key: value}))
            return _set(ctx)
    else:
        data = current._data.copy()
        data[key] = value
    ctx = _new(RuntimeContext)
    _set_data(ctx, data)
    _set_log_fields(ctx, None)
    _set_registered(ctx, None)
    return _set(ctx)


def tenant_snapshot(tenant_id: str) -> RuntimeContext:
    """Return a snapshot that binds *tenant_id* alone, for :func:`bind_tenant`."""
    return _wrap({"tenant_id": tenant_id})


def bind_tenant(snapshot: RuntimeContext) -> Token[RuntimeContext | None]:
    """Bind the tenant of *snapshot* (from :func:`tenant_snapshot`) on top of the current context.

    On top of an empty context that is *snapshot* itself: no lookup, nothing built.
    """
    if _get() is None:
        return _set(snapshot)
    return bind_value("tenant_id", snapshot._data["tenant_id"])


def get_current_tenant_id() -> str | None:
    """Return the bound ``tenant_id``, or ``None`` (no validation)."""
    ctx = _get()
    return None if ctx is None else ctx._data.get("tenant_id")


def get_current_request_id() -> str | None:
    """Return the bound ``request_id``, or ``None`` (no validation)."""
    ctx = _get()
    return None if ctx is None else ctx._data.get("request_id")


def get_current_user_id() -> Any:
    """Return the bound ``user_id`` (the middleware binds the user's pk as a string), or None."""
    ctx = _get()
    return None if ctx is None else ctx._data.get("user_id")


def get_current_agent_id() -> str | None:
    """Return the bound ``agent_id``, or ``None`` (no validation)."""
    ctx = _get()
    return None if ctx is None else ctx._data.get("agent_id")


def get_current_conversation_id() -> str | None:
    """Return the bound ``conversation_id``, or ``None`` (no validation)."""
    ctx = _get()
    return None if ctx is None else ctx._data.get("conversation_id")


def get_current_collection_id() -> str | None:
    """Return the bound ``collection_id``, or ``None`` (no validation)."""
    ctx = _get()
    return None if ctx is None else ctx._data.get("collection_id")


def get_current_session_id() -> str | None:
    """Return the bound ``session_id``, or ``None`` (no validation)."""
    ctx = _get()
    return None if ctx is None else ctx._data.get("session_id")


get_collection_id = get_current_collection_id


def set_current_tenant_id(value: str | None) -> Token[RuntimeContext | None]:
    """Bind ``tenant_id`` (low level); undo with ``reset_context(token, "tenant_id")``."""
    return bind({"tenant_id": value})


def set_current_request_id(value: str | None) -> Token[RuntimeContext | None]:
    """Bind ``request_id`` (low level); undo with ``reset_context(token, "request_id")``."""
    return bind({"request_id": value})


def set_current_user_id(value: Any) -> Token[RuntimeContext | None]:
    """Bind ``user_id`` (low level); undo with ``reset_context(token, "user_id")``."""
    return bind({"user_id": value})


def set_current_agent_id(value: str | None) -> Token[RuntimeContext | None]:
    """Bind ``agent_id`` (low level); undo with ``reset_context(token, "agent_id")``."""
    return bind({"agent_id": value})


def set_current_conversation_id(value: str | None) -> Token[RuntimeContext | None]:
    """Bind ``conversation_id`` (low level); undo with ``reset_context(token, name)``."""
    return bind({"conversation_id": value})


def set_current_collection_id(value: str | None) -> Token[RuntimeContext | None]:
    """Bind ``collection_id`` (low level); undo with ``reset_context(token, "collection_id")``."""
    return bind({"collection_id": value})


def set_current_session_id(value: str | None) -> Token[RuntimeContext | None]:
    """Bind ``session_id`` (low level); undo with ``reset_context(token, "session_id")``."""
    return bind({"session_id": value})


def get_full_context() -> dict[str, Any]:
    """Return the current variables as a new dict, leaving out ``None`` values."""
    ctx = _get()
    if ctx is None:
        return {}
    return {k: v for k, v in ctx._data.items() if v is not None}


def check_ids(values: Mapping[str, Any]) -> None:
    """Refuse malformed ids before they are bound (and reach logs and outgoing headers).

    A tenant id must be well-formed or reserved (``default`` stands for "no
    tenant"); agent, conversation and collection ids must be plain identifiers.
    """
    tenant_id = values.get("tenant_id")
    if tenant_id is not None and tenant_id not in tenancy_settings.RESERVED_TENANT_IDS:
        validate_tenant_id(tenant_id)
    for key in CONTEXT_IDS:
        value = values.get(key)
        if value is not None and not is_valid_context_id(value):
            raise InvalidContextIdError(
                f"Invalid {key} ({describe_rejected(value)}). "
                + InvalidContextIdError.default_message
            )


# The Context blocks entered in this task or thread, innermost first:
# (block, the token of what it bound, the chain of outer blocks). Each task and
# thread has its own chain, as it has its own context: a block object may be
# shared and entered by several at once, each leaving restores its own values.
_BLOCKS: ContextVar[tuple[Any, Token[RuntimeContext | None], Any] | None] = ContextVar(
    "tenancy_blocks", default=None
)
_get_blocks = _BLOCKS.get
_set_blocks = _BLOCKS.set


def enter_block(block: object, values: Mapping[str, Any]) -> None:
    """Bind *values* for *block*, to be undone by ``leave_block(block)`` in the same task."""
    token = bind(values)
    _set_blocks((block, token, _get_blocks()))


def leave_block(block: object) -> None:
    """Restore what was bound before *block*'s innermost entry in this task or thread."""
    top = _get_blocks()
    if top is None or top[0] is not block:
        raise _left_elsewhere()
    _set_blocks(top[2])
    try:
        _CONTEXT.reset(top[1])
    except ValueError:  # entered in a parent task, left in a child that inherited it
        raise _left_elsewhere() from None


def _left_elsewhere() -> RuntimeError:
    return RuntimeError(
        "This block was left by a task or thread that did not enter it. "
        "Enter and leave a Context block in the same task."
    )
