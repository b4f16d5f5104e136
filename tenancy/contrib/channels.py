"""The context in Django Channels: one ASGI middleware binds each connection's context.

Put it inside ``AuthMiddlewareStack`` (so a logged-in user is known) and around
the router::

    from channels.auth import AuthMiddlewareStack
    from channels.routing import ProtocolTypeRouter, URLRouter
    from tenancy.contrib.channels import TenantContextMiddleware

    application = ProtocolTypeRouter({
        "http": django_asgi_app,
        "websocket": AuthMiddlewareStack(TenantContextMiddleware(URLRouter(websocket_urls))),
    })

For each websocket (or HTTP) connection it resolves the tenant as the HTTP
middleware does: ``TENANCY["RESOLVERS"]`` read the connection's headers (or the
authenticated user's membership), and only a registered, active tenant is
bound, with the request id (``X-Request-ID``, or a new one), the user and the
agent, conversation and collection ids of well-formed headers. Every handler of
the consumer runs in that context, sync and async consumers alike (sync
handlers through ``sync_to_async``, which carries it), and it is restored when
the connection ends. The consumer finds the tenant in ``self.scope["tenant"]``.

A malformed, unknown or inactive tenant is refused: a websocket is accepted
and closed at once with close code :data:`CLOSE_CODE` (4403) and the error's
code as the reason (``tenant_not_registered``...), so a browser's ``onclose``
sees both; an HTTP connection gets the error's status and JSON body.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import Token
from typing import Any

from django.http import HttpRequest
from django.utils.functional import empty

from ..binding import aresolve, get_plan, log_rejected, start
from ..current import RuntimeContext, bind_owned, reset_context
from ..exceptions import TenancyError
from ..otel import annotate_span

__all__ = ["CLOSE_CODE", "TenantContextMiddleware", "bind_connection_context"]

logger = logging.getLogger("tenancy.channels")

#: The websocket close code of a refused tenant (4000-4999 are the application's).
CLOSE_CODE = 4403

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def connection_request(scope: Scope) -> HttpRequest:
    """Return an ``HttpRequest`` with the connection's headers and user, for the resolvers."""
    request = HttpRequest()
    request.path = request.path_info = scope.get("path", "")
    request.method = scope.get("method", "GET")
    meta = request.META
    for raw_name, raw_value in scope.get("headers", ()):
        key = "HTTP_" + raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        meta[key] = f"{meta[key]},{value}" if key in meta else value
    server = scope.get("server")
    if server:
        meta["SERVER_NAME"], meta["SERVER_PORT"] = server[0], str(server[1] or "")
    if "user" in scope:
        request.user = scope["user"]
    return request


def _user_id(scope: Scope) -> str | None:
    """Return the pk of the user ``AuthMiddleware`` loaded, without loading one."""
    user = scope.get("user")
    if user is None or getattr(user, "_wrapped", None) is empty:
        return None
    return str(user.pk) if getattr(user, "is_authenticated", False) else None


async def bind_connection_context(scope: Scope) -> tuple[Token[RuntimeContext | None], Scope]:
    """Resolve and bind the context of the connection *scope*; return its token and scope.

    The scope returned is a copy with ``tenant`` (a ``TenantInfo`` or ``None``)
    and ``request_id`` set. Raise the ``TenancyError`` of a malformed, unknown
    or inactive tenant; nothing is bound then.
    """
    plan = get_plan()
    request = connection_request(scope)
    values, rejected = start(request, plan)
    claim, info, error, failure = await aresolve(request, plan)
    if failure is not None:
        raise failure
    if error is not None:
        token = bind_owned(values)
        try:  # logged in the connection's context, so the line carries its request id
            log_rejected(rejected, claim, error)
        finally:
            reset_context(token)
        annotate_span(
            {"tenant_id": error.tenant_id, "request_id": values["request_id"]}, error.code
        )
        raise error
    if info is not None:
        values["tenant_id"] = info.tenant_id
    user_id = _user_id(scope)
    if user_id is not None:
        values["user_id"] = user_id
    token = bind_owned(values)
    annotate_span(values)  # the connection's span (an instrumented ASGI server), if recording
    if rejected:
        log_rejected(rejected, None, None)
    return token, {**scope, "tenant": info, "request_id": values["request_id"]}


class TenantContextMiddleware:
    """Bind each websocket or HTTP connection's context for its consumer; refuse a bad tenant."""

    def __init__(self, inner: Callable[[Scope, Receive, Send], Awaitable[Any]]) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if scope["type"] not in ("websocket", "http"):
            return await self.inner(scope, receive, send)
        try:
            token, scope = await bind_connection_context(scope)
        except TenancyError as exc:
            await _refuse(scope, receive, send, exc)
            return None
        try:
            return await self.inner(scope, receive, send)
        finally:
            reset_context(token)


async def _refuse(scope: Scope, receive: Receive, send: Send, error: TenancyError) -> None:
    if scope["type"] == "websocket":
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": CLOSE_CODE, "reason": error.code})
        return
    body = json.dumps(error.as_dict()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
