"""The request path: one middleware binds each request's context, under WSGI and ASGI.

Add it after ``AuthenticationMiddleware``::

    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "tenancy.middleware.TenantContextMiddleware",
        ...,
    ]

Per request it keeps a valid ``X-Request-ID`` (or makes a UUID4), resolves the
tenant claim, binds only a registered and active tenant, binds the agent,
conversation and collection ids of well-formed headers, answers every
``TenancyError`` a view raises with its status and JSON body, writes one access
log line, and restores the previous context whatever happens. The steps it
shares with ``tenancy.contrib.channels`` (the request id, the context id
headers, the tenant claim) are in ``tenancy.binding``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from contextvars import Token
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.core.handlers.exception import response_for_exception
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.utils.encoding import escape_uri_path
from django.utils.functional import SimpleLazyObject, empty

from .binding import Plan, Values, aresolve, get_plan, log_rejected, resolve, start
from .binding import new_request_id as new_request_id  # where it has always been importable
from .current import _CONTEXT, bind, bind_owned, get_current_user_id, reset_context
from .exceptions import TenancyError, TenancyUnavailableError, TenantInactiveError
from .otel import AVAILABLE as _OTEL
from .otel import recording_span, set_attributes
from .request import denial_code, denial_for, note_denial
from .state import TenantInfo
from .stats.counters import counters
from .stats.flush import flush_if_due

__all__ = ["TenantContextMiddleware"]

_perf_counter = time.perf_counter
_reset = _CONTEXT.reset


class TenantContextMiddleware:
    """Bind the request id, tenant and context ids of each request; restore them after."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            # Django then calls us without a thread hop; __call__ returns __acall__'s coroutine.
            markcoroutinefunction(self)

    # The two paths run the same helpers in the same order; only the awaits differ.

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        plan = get_plan()
        started = _perf_counter() if plan.access_log is not None else 0.0
        values, rejected = start(request, plan)
        claim, info, error, failure = resolve(request, plan)
        token = _bind_outcome(request, values, rejected, claim, info, error)
        try:
            if failure is None:
                response = self.get_response(request)
            elif isinstance(failure, TenancyError):
                response = _error_response(request, failure)
            else:
                response = response_for_exception(request, failure)
            _finish(request, response, started, plan, values, info, error)
        finally:
            request._tenancy_frame = False  # type: ignore[attr-defined]
            _reset(token)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        plan = get_plan()
        started = _perf_counter() if plan.access_log is not None else 0.0
        values, rejected = start(request, plan)
        claim, info, error, failure = await aresolve(request, plan)
        token = _bind_outcome(request, values, rejected, claim, info, error)
        try:
            if failure is None:
                response = await self.get_response(request)
            elif isinstance(failure, TenancyError):
                response = _error_response(request, failure)
            else:
                response = await sync_to_async(response_for_exception, thread_sensitive=False)(
                    request, failure
                )
            _finish(request, response, started, plan, values, info, error)
        finally:
            request._tenancy_frame = False  # type: ignore[attr-defined]
            _reset(token)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> Any:
        """Answer a ``TenancyError`` raised by a view with its status and JSON body."""
        if isinstance(exception, TenancyError):
            return _error_response(request, exception)
        return None


def _error_response(request: HttpRequest, error: TenancyError) -> JsonResponse:
    """The JSON answer to *error*, as the caller may see it (``UNIFORM_DENIAL``)."""
    shown = denial_for(request, error)
    response = JsonResponse(note_denial(request, shown.as_dict()), status=shown.status_code)
    if isinstance(shown, TenancyUnavailableError):
        response.headers["Retry-After"] = "1"
    return response


def _bind_outcome(
    request: HttpRequest,
    values: Values,
    rejected: list[tuple[str, str]],
    claim: Any,
    info: TenantInfo | None,
    error: TenancyError | None,
) -> Token[Any]:
    """Record the tenant claim's outcome on the request, bind the context, log refusals."""
    request.tenant = info  # type: ignore[attr-defined]
    request.tenant_error = error  # type: ignore[attr-defined]
    if info is not None:
        values["tenant_id"] = info.tenant_id
    token = bind_owned(values)
    if rejected or error is not None:
        try:  # logged inside the request's context, so the lines carry its request id
            log_rejected(rejected, claim, error)
        except BaseException:
            _reset(token)
            raise
    return token


def _finish(
    request: HttpRequest,
    response: HttpResponseBase,
    started: float,
    plan: Plan,
    values: Values,
    info: TenantInfo | None,
    error: TenancyError | None,
) -> None:
    """Stamp the request id on the response, log the access line, count the request."""
    # From what we bound, not request.request_id: views may overwrite attributes.
    response.headers[plan.request_id_header] = values["request_id"]
    status = response.status_code
    access_log = plan.access_log
    if access_log is not None and access_log.isEnabledFor(logging.INFO):
        _log_access(access_log, request, status, started)
    if plan.count_requests:
        if info is not None:
            counters.request_done(info.tenant_id, denied=status == 403)
        elif isinstance(error, TenantInactiveError) and error.tenant_id:
            counters.request_done(error.tenant_id, denied=True)
    if _OTEL:  # a constant: without opentelemetry-api, the request pays one test
        _annotate(request, values)
    flush_if_due()


def _annotate(request: HttpRequest, values: Values) -> None:
    """Put the request's tenant, request id, user and refusal on its current span."""
    span = recording_span()
    if span is None:  # nothing is made for a span that records nothing
        return
    user_id = get_current_user_id()
    if user_id is None:
        user_id = _authenticated_user_id(request)
    set_attributes(
        span,
        {
            "tenant_id": values.get("tenant_id"),
            "request_id": values["request_id"],
            "user_id": user_id,
        },
        denial_code(request),
    )


# The characters escape_uri_path() leaves as they are.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/:@&+$,!~*'()._-]*")


def _log_access(
    access_log: logging.Logger, request: HttpRequest, status: int, started: float
) -> None:
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    method = request.method or "-"
    if not (method.isascii() and method.isalpha()):
        method = "-"
    # The path is percent-decoded: re-escape it so it cannot forge or break log lines
    # (a path of only the characters escaping keeps is left as it is, a lot faster).
    path = request.path
    if _PLAIN_PATH.fullmatch(path) is None:
        path = escape_uri_path(path)
    extra = {"method": method, "path": path, "status_code": status, "duration_ms": duration_ms}
    user_id = None if get_current_user_id() is not None else _authenticated_user_id(request)
    if user_id is None:
        _emit(access_log, (method, path, status), extra)
        return
    # Bound, not passed in extra: a record factory may already set user_id.
    token = bind({"user_id": user_id})
    try:
        _emit(access_log, (method, path, status), extra)
    finally:
        reset_context(token)


def _emit(access_log: logging.Logger, args: tuple[Any, ...], extra: dict[str, Any]) -> None:
    # What access_log.info() does, less the walk up the stack to find the caller
    # (it is always _log_access): the line then costs less than an ordinary info().
    record = access_log.makeRecord(
        access_log.name,
        logging.INFO,
        __file__,
        _LOG_ACCESS_LINE,
        "%s %s %s",
        args,
        None,
        "_log_access",
        extra,
    )
    access_log.handle(record)


_LOG_ACCESS_LINE = _log_access.__code__.co_firstlineno


def _authenticated_user_id(request: HttpRequest) -> str | None:
    """Return the pk of a user the request already authenticated, without loading one."""
    user = request.__dict__.get("user")
    if user is None or (isinstance(user, SimpleLazyObject) and user._wrapped is empty):
        return None
    if getattr(user, "is_authenticated", False):
        return str(user.pk)
    return None
