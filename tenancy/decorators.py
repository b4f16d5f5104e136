"""View and function decorators: ``@tenant_required`` for plain views, ``@with_context``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.http import HttpRequest, JsonResponse

from .context import Context
from .ids import CONTEXT_IDS
from .request import tenant_denial

__all__ = ["tenant_required", "with_context"]

V = TypeVar("V", bound=Callable[..., Any])
F = TypeVar("F", bound=Callable[..., Any])


def tenant_required(view_func: V) -> V:
    """Refuse requests without a registered, active tenant, like ``TenantRequired``.

    Used bare, like ``login_required``, on sync and async views. A refusal is a
    403 with the JSON body ``{"detail": ..., "code": ...}``; the codes are those
    of :class:`tenancy.permissions.TenantRequired`.
    """
    if iscoroutinefunction(view_func):

        @functools.wraps(view_func)
        async def _async_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if getattr(request, "tenant", None) is None:
                # Off the loop: UNIFORM_DENIAL reads the user and their memberships.
                body = await sync_to_async(tenant_denial)(request)
                if body is not None:
                    return JsonResponse(body, status=403)
            return await view_func(request, *args, **kwargs)

        return _async_view  # type: ignore[return-value]

    @functools.wraps(view_func)
    def _view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        body = tenant_denial(request)
        if body is not None:
            return JsonResponse(body, status=403)
        return view_func(request, *args, **kwargs)

    return _view  # type: ignore[return-value]


# (flag of with_context, context key): tenant_id, agent_id, conversation_id, collection_id.
_DECORATED_IDS = (("tenant", "tenant_id"), *((key.removesuffix("_id"), key) for key in CONTEXT_IDS))


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
