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

import functools
import inspect
from asyncio import current_task as _current_task
from asyncio.events import _get_running_loop
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextvars import ContextVar, Token
from threading import get_ident as _get_ident
from types import MappingProxyType
from typing import Any, TypeVar, overload

from asgiref.sync import iscoroutinefunction

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
    "with_context",
]

WELL_KNOWN_KEYS = (
    "tenant_id",
    "request_id",
    "user_id",
    "agent_id",
    "conversation_id",
    "collection_id",
    "session_id",
)

F = TypeVar("F", bound=Callable[..., Any])


class RuntimeContext:
    """An immutable snapshot of context variables.

    ``variables`` is a read-only mapping. Any key is allowed besides the
    well-known ones (feature flags, custom data). Instances are never mutated:
    :meth:`replace` returns a new snapshot.
    """

    __slots__ = ("_data", "_log_fields")

    _data: dict[str, Any]
    # The log record attributes tenancy.log derives from this snapshot, set on
    # first use (see set_log_fields); they never go stale, as _data never changes.
    _log_fields: dict[str, Any]

    def __init__(self, variables: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_data", dict(variables) if variables else {})

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
set_log_fields = RuntimeContext.__dict__["_log_fields"].__set__


def _wrap(data: dict[str, Any]) -> RuntimeContext:
    ctx = _new(RuntimeContext)
    _set_data(ctx, data)
    return ctx


RuntimeContext._wrap = staticmethod(_wrap)  # type: ignore[attr-defined]


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


# Snapshots bound on top of an empty context by ``bind_value(..., intern=True)``.
_INTERNED: dict[tuple[str, Any], RuntimeContext] = {}
_INTERNED_LIMIT = 4096


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
                if len(_INTERNED) >= _INTERNED_LIMIT:
                    _INTERNED.clear()
                ctx = _INTERNED[(key, value)] = _wrap({key: value})
            return _set(ctx)
    else:
        data = current._data.copy()
        data[key] = value
    ctx = _new(RuntimeContext)
    _set_data(ctx, data)
    return _set(ctx)


def _getter(key: str) -> Callable[[], Any]:
    def get_current() -> Any:
        ctx = _get()
        return None if ctx is None else ctx._data.get(key)

    get_current.__name__ = f"get_current_{key}"
    get_current.__doc__ = f"Return the bound ``{key}``, or ``None`` (no validation)."
    return get_current


def _setter(key: str) -> Callable[[Any], Token[RuntimeContext | None]]:
    def set_current(value: Any) -> Token[RuntimeContext | None]:
        return bind({key: value})

    set_current.__name__ = f"set_current_{key}"
    set_current.__doc__ = (
        f"Bind ``{key}`` (low level); undo with ``reset_context(token, {key!r})``."
    )
    return set_current


get_current_tenant_id = _getter("tenant_id")
get_current_request_id = _getter("request_id")
get_current_user_id = _getter("user_id")
get_current_agent_id = _getter("agent_id")
get_current_conversation_id = _getter("conversation_id")
get_current_collection_id = _getter("collection_id")
get_current_session_id = _getter("session_id")
get_collection_id = get_current_collection_id

set_current_tenant_id = _setter("tenant_id")
set_current_request_id = _setter("request_id")
set_current_user_id = _setter("user_id")
set_current_agent_id = _setter("agent_id")
set_current_conversation_id = _setter("conversation_id")
set_current_collection_id = _setter("collection_id")
set_current_session_id = _setter("session_id")


def get_full_context() -> dict[str, Any]:
    """Return the current variables as a new dict, leaving out ``None`` values."""
    ctx = _get()
    if ctx is None:
        return {}
    return {k: v for k, v in ctx._data.items() if v is not None}


def _validated_tenant(tenant_id: Any) -> str:
    """Return *tenant_id* if it may be used as a tenant, else raise."""
    from .conf import tenancy_settings
    from .exceptions import TenantRequiredError
    from .ids import validate_tenant_id

    if tenant_id is None or tenant_id in tenancy_settings.RESERVED_TENANT_IDS:
        raise TenantRequiredError()
    return validate_tenant_id(tenant_id)


def _check_ids(values: Mapping[str, Any]) -> None:
    """Refuse malformed ids before they are bound (and reach logs and outgoing headers).

    A tenant id must be well-formed or reserved (``default`` stands for "no
    tenant"); agent, conversation and collection ids must be plain identifiers.
    """
    from .conf import tenancy_settings
    from .exceptions import InvalidContextIdError
    from .ids import describe_rejected, is_valid_context_id, validate_tenant_id

    tenant_id = values.get("tenant_id")
    if tenant_id is not None and tenant_id not in tenancy_settings.RESERVED_TENANT_IDS:
        validate_tenant_id(tenant_id)
    for key in ("agent_id", "conversation_id", "collection_id"):
        value = values.get(key)
        if value is not None and not is_valid_context_id(value):
            raise InvalidContextIdError(
                f"Invalid {key} ({describe_rejected(value)}). "
                + InvalidContextIdError.default_message
            )


class TokenStacks:
    """The tokens of the blocks one object has entered, kept per task (or thread).

    A ``Context`` or ``switch()`` object may be shared, say as a module
    constant, and entered by several tasks or threads at once, or re-entered
    while already entered: each leaving restores what *that* task bound, never
    another task's.
    """

    __slots__ = ("_stacks",)

    def __init__(self) -> None:
        # owner -> (token, the owner's earlier entry or None): a chain, not a list,
        # so that a push or pop is one dict operation on a key no other owner uses.
        self._stacks: dict[Hashable, tuple[Token[RuntimeContext | None], Any]] = {}

    def push(self, token: Token[RuntimeContext | None]) -> None:
        # The owner lookup is written out: this runs on every switch.
        loop = _get_running_loop()
        owner = (_current_task(loop) if loop is not None else None) or _get_ident()
        stacks = self._stacks
        stacks[owner] = (token, stacks.get(owner))

    def pop(self) -> Token[RuntimeContext | None]:
        loop = _get_running_loop()
        owner = (_current_task(loop) if loop is not None else None) or _get_ident()
        try:
            token, earlier = self._stacks.pop(owner)
        except KeyError:
            raise RuntimeError(
                "This block was left by a task or thread that did not enter it. "
                "Enter and leave a Context or switch() block in the same task."
            ) from None
        if earlier is not None:
            self._stacks[owner] = earlier
        return token


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

    __slots__ = ("_tokens", "_validate", "_values")

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
        _check_ids(self._values)
        self._values.update(variables)
        self._validate = validate_tenant
        self._tokens = TokenStacks()

    def __repr__(self) -> str:
        return f"Context({self._values!r}, validate_tenant={self._validate})"

    def _enter(self) -> Context:
        if self._validate:
            tenant_id = self._values.get("tenant_id", get_current_tenant_id())
            _validated_tenant(tenant_id)
            from .registry import tenant_context

            tenant_context.get_active_tenant(tenant_id)
        self._tokens.push(bind(self._values))
        return self

    def _exit(self) -> None:
        _CONTEXT.reset(self._tokens.pop())

    def __enter__(self) -> Context:
        return self._enter()

    def __exit__(self, *exc_info: object) -> None:
        self._exit()

    async def __aenter__(self) -> Context:
        if self._validate:
            # Warm the registry off the event loop: a cold lookup reads the database.
            from asgiref.sync import sync_to_async

            from .ids import is_valid_tenant_id
            from .registry import tenant_context

            tid = self._values.get("tenant_id", get_current_tenant_id())
            if is_valid_tenant_id(tid) and not tenant_context.is_cached(tid):
                await sync_to_async(tenant_context.get_tenant)(tid)
        return self._enter()

    async def __aexit__(self, *exc_info: object) -> None:
        self._exit()

    # Accessors: read the *current* context, so they are right inside the block.

    def get_tenant_id(self) -> str:
        """Return the current tenant id; never ``None`` or ``default`` (raise instead)."""
        return _validated_tenant(get_current_tenant_id())

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
        ctx = _get()
        return default if ctx is None else ctx.get(key, default)


_DECORATED_IDS = (
    ("tenant", "tenant_id"),
    ("agent", "agent_id"),
    ("conversation", "conversation_id"),
    ("collection", "collection_id"),
)


@overload
def with_context(func: F) -> F: ...


@overload
def with_context(
    func: None = None,
    *,
    tenant: bool = True,
    agent: bool = False,
    conversation: bool = False,
    collection: bool = False,
    validate_tenant: bool = True,
) -> Callable[[F], F]: ...


def with_context(
    func: Callable[..., Any] | None = None,
    *,
    tenant: bool = True,
    agent: bool = False,
    conversation: bool = False,
    collection: bool = False,
    validate_tenant: bool = True,
) -> Any:
    """Bind context ids for each call of a sync or async function.

    Each named id (``tenant_id``, ``agent_id``, ...) is taken from the call's
    arguments when the function receives it (e.g. ``agent_id`` from the URL),
    else from the current context, and is bound for the duration of the call.
    With ``validate_tenant=True`` the tenant must be set, well-formed,
    registered and active, else a :class:`~tenancy.TenancyError` is raised
    before the function runs. A function that declares a ``ctx`` parameter
    receives the :class:`Context`. Usable bare (``@with_context``) and under
    ``@api_view`` or other decorators.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        wanted = [key for flag, key in _DECORATED_IDS if locals_flags[flag]]
        signature = inspect.signature(fn)
        params = signature.parameters
        wants_ctx = "ctx" in params
        positional = [
            name
            for name, p in params.items()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]

        ctx_index = positional.index("ctx") if "ctx" in positional else None

        def inject(args: tuple[Any, ...], kwargs: dict[str, Any], ctx: Context) -> None:
            if not wants_ctx or kwargs.get("ctx") is not None:
                return
            if ctx_index is not None and ctx_index < len(args):
                return  # the caller passed ctx positionally
            kwargs["ctx"] = ctx

        def make_context(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Context:
            values: dict[str, Any] = {}
            for key in wanted:
                value = kwargs.get(key)
                if value is None and key in positional:
                    index = positional.index(key)
                    if index < len(args):
                        value = args[index]
                if value is not None:
                    values[key] = value
            return Context(validate_tenant=validate_tenant and tenant, **values)

        if iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                ctx = make_context(args, kwargs)
                async with ctx:
                    inject(args, kwargs, ctx)
                    return await fn(*args, **kwargs)

            return async_wrapper

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = make_context(args, kwargs)
            with ctx:
                inject(args, kwargs, ctx)
                return fn(*args, **kwargs)

        return sync_wrapper

    locals_flags = {
        "tenant": tenant,
        "agent": agent,
        "conversation": conversation,
        "collection": collection,
    }
    if func is not None:
        return decorate(func)
    return decorate
