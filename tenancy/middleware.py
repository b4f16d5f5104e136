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
log line, and restores the previous context whatever happens.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import deque
from collections.abc import Callable
from contextvars import Token
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.core.handlers.exception import response_for_exception
from django.core.signals import setting_changed
from django.db.utils import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.utils.encoding import escape_uri_path
from django.utils.functional import SimpleLazyObject, empty
from django.utils.module_loading import import_string

from .conf import tenancy_settings
from .current import _CONTEXT, bind, bind_owned, get_current_user_id, reset_context
from .exceptions import (
    InvalidTenantIdError,
    TenancyError,
    TenancyUnavailableError,
    TenantInactiveError,
)
from .ids import (
    CONTEXT_IDS,
    HEADER_SETTINGS,
    describe_rejected,
    is_valid_context_id,
    is_valid_request_id,
)
from .otel import AVAILABLE as _OTEL
from .otel import recording_span, set_attributes
from .outage import report_failure
from .registry import tenant_context
from .request import denial_code, denial_for, meta_key, note_denial
from .resolvers import TenantResolver
from .state import TenantInfo
from .stats.counters import counters
from .stats.flush import flush_if_due

__all__ = ["TenantContextMiddleware"]

logger = logging.getLogger("tenancy.middleware")

Values = dict[str, Any]


class _Plan:
    """What the middleware reads from settings, computed once per settings change."""

    __slots__ = (
        "access_log",
        "count_requests",
        "id_headers",
        "request_id_header",
        "request_id_key",
        "resolvers",
    )

    def __init__(self) -> None:
        s = tenancy_settings
        self.request_id_header: str = s.REQUEST_ID_HEADER
        self.request_id_key = meta_key(s.REQUEST_ID_HEADER)
        self.id_headers = tuple(
            (name, meta_key(header), header)
            for name in CONTEXT_IDS
            for header in [getattr(s, HEADER_SETTINGS[name])]
        )
        self.resolvers: tuple[TenantResolver, ...] = tuple(
            import_string(path)() for path in s.RESOLVERS
        )
        self.access_log = logging.getLogger(s.ACCESS_LOGGER) if s.ACCESS_LOG else None
        self.count_requests: bool = s.STATS_ENABLED


_plan: _Plan | None = None
_perf_counter = time.perf_counter
_reset = _CONTEXT.reset


def _get_plan() -> _Plan:
    global _plan
    plan = _plan
    if plan is None:
        plan = _plan = _Plan()
    return plan


def _forget_plan(*, setting: str, **kwargs: Any) -> None:
    global _plan
    if setting == "TENANCY":
        _plan = None


setting_changed.connect(_forget_plan, dispatch_uid="tenancy.middleware.plan")


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
        plan = _plan or _get_plan()
        started = _perf_counter() if plan.access_log is not None else 0.0
        values, rejected = _start(request, plan)
        claim, info, error, failure = _resolve(request, plan)
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
        plan = _plan or _get_plan()
        started = _perf_counter() if plan.access_log is not None else 0.0
        values, rejected = _start(request, plan)
        claim, info, error, failure = await _aresolve(request, plan)
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


# Random bytes for request ids, read from the OS 4 KiB at a time (a system call
# costs as much as the rest of the middleware) and handed out 16 at a time:
# deque.popleft() is atomic, so threads never get the same bytes. A forked
# child starts with none of its parent's.
_RANDOM: deque[bytes] = deque()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_RANDOM.clear)
# The variant nibble of a UUID: its two high bits are 10 (RFC 4122).
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def new_request_id() -> str:
    """Return a random UUID4 in canonical form (``str(uuid.uuid4())``, several times faster)."""
    try:
        raw = _RANDOM.popleft()
    except IndexError:
        block = os.urandom(4096)
        _RANDOM.extend([block[i : i + 16] for i in range(16, 4096, 16)])
        raw = block[:16]
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_NOTHING_REJECTED: list[tuple[str, str]] = []  # shared, never changed: replaced when needed


def _start(request: HttpRequest, plan: _Plan) -> tuple[Values, list[tuple[str, str]]]:
    """Read the request id and context id headers: the values to bind, and what was rejected."""
    meta = request.META
    rejected: list[tuple[str, str]] = _NOTHING_REJECTED
    request_id = meta.get(plan.request_id_key)
    if request_id is None or not is_valid_request_id(request_id):
        if request_id:
            rejected = [(plan.request_id_header, describe_rejected(request_id))]
        request_id = new_request_id()
    values: Values = {"request_id": request_id}
    for name, key, header in plan.id_headers:
        value = meta.get(key)
        if value:
            if is_valid_context_id(value):
                values[name] = value
            else:
                rejected = [*rejected, (header, describe_rejected(value))]
    request.request_id = request_id  # type: ignore[attr-defined]
    request._tenancy_frame = True  # type: ignore[attr-defined]
    return values, rejected


Outcome = tuple[Any, "TenantInfo | None", "TenancyError | None", "Exception | None"]


def _resolve(request: HttpRequest, plan: _Plan) -> Outcome:
    """Return the tenant claim, its tenant or the refusal, and any other failure."""
    claim = None
    try:
        for resolver in plan.resolvers:
            claim = resolver.resolve(request)
            if claim is not None:
                return claim, tenant_context.get_active_tenant(claim), None, None
    except TenancyUnavailableError as exc:  # neither cache nor database answers: a 503
        return claim, None, None, exc
    except TenancyError as exc:  # malformed, unknown or inactive: for the permissions
        return claim, None, exc, None
    except Exception as exc:  # a resolver or the database failed: answered in our frame
        return claim, None, None, _unavailable(exc)
    return None, None, None, None


async def _aresolve(request: HttpRequest, plan: _Plan) -> Outcome:
    """:func:`_resolve` under ASGI; warm: no query, no thread; cold: the database off the loop."""
    claim = None
    try:
        for resolver in plan.resolvers:
            claim = await resolver.aresolve(request)
            if claim is not None:
                return claim, await tenant_context.aget_active_tenant(claim), None, None
    except TenancyUnavailableError as exc:
        return claim, None, None, exc
    except TenancyError as exc:
        return claim, None, exc, None
    except Exception as exc:
        return claim, None, None, _unavailable(exc)
    return None, None, None, None


def _unavailable(exc: Exception) -> Exception:
    """A resolver's own database outage is a 503 too; any other exception stays as it is."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        report_failure("The database", exc, "a tenant resolver failed: answering 503")
        unavailable = TenancyUnavailableError()
        unavailable.__cause__ = exc
        return unavailable
    return exc


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
            _log_rejected(rejected, claim, error)
        except BaseException:
            _reset(token)
            raise
    return token


def _log_rejected(rejected: list[tuple[str, str]], claim: Any, error: TenancyError | None) -> None:
    """Log what the request sent that was not used (raw values never reach the log)."""
    for header, description in rejected:
        logger.info("Ignored an invalid %s header (%s)", header, description)
    if isinstance(error, InvalidTenantIdError):
        logger.info("Refused a tenant claim: %s (%s)", error.code, describe_rejected(claim))
    elif error is not None:  # a well-formed id: safe to name
        logger.info("Refused a tenant claim: %s (%s)", error.code, error.tenant_id)


def _finish(
    request: HttpRequest,
    response: HttpResponseBase,
    started: float,
    plan: _Plan,
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
