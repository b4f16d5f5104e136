"""The steps that bind a request's context, shared by the HTTP and the Channels middleware.

``tenancy.middleware.TenantContextMiddleware`` (each request, under WSGI and
ASGI) and ``tenancy.contrib.channels.TenantContextMiddleware`` (each
connection) run the same steps: read what the settings ask for once per
settings change (:class:`Plan`, :func:`get_plan`), keep a valid request id or
make one (:func:`new_request_id`) and read the context id headers
(:func:`start`), resolve the tenant claim to an active tenant or its refusal
(:func:`resolve`, :func:`aresolve`), and log what the request sent that was
not used (:func:`log_rejected`). What each middleware does with the outcome
(binding, answering a refusal, the access log) is its own.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from typing import Any

from django.core.signals import setting_changed
from django.db.utils import InterfaceError, OperationalError
from django.http import HttpRequest
from django.utils.module_loading import import_string

from .conf import tenancy_settings
from .exceptions import InvalidTenantIdError, TenancyError, TenancyUnavailableError
from .ids import (
    CONTEXT_IDS,
    HEADER_SETTINGS,
    describe_rejected,
    is_valid_context_id,
    is_valid_request_id,
)
from .outage import report_failure
from .registry import tenant_context
from .request import meta_key
from .resolvers import TenantResolver
from .state import TenantInfo

__all__ = [
    "Outcome",
    "Plan",
    "Values",
    "aresolve",
    "forget_plan",
    "get_plan",
    "log_rejected",
    "new_request_id",
    "resolve",
    "start",
    "unavailable",
]

# The logger the request path has always logged refusals to.
logger = logging.getLogger("tenancy.middleware")

Values = dict[str, Any]


class Plan:
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


_plan: Plan | None = None


def get_plan() -> Plan:
    """Return the :class:`Plan` of the current settings, made on first use after a change."""
    global _plan
    plan = _plan
    if plan is None:
        plan = _plan = Plan()
    return plan


def forget_plan(*, setting: str, **kwargs: Any) -> None:
    """Drop the :class:`Plan` when ``TENANCY`` changes (a ``setting_changed`` receiver)."""
    global _plan
    if setting == "TENANCY":
        _plan = None


setting_changed.connect(forget_plan, dispatch_uid="tenancy.binding.plan")


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


def start(request: HttpRequest, plan: Plan) -> tuple[Values, list[tuple[str, str]]]:
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


def resolve(request: HttpRequest, plan: Plan) -> Outcome:
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
        return claim, None, None, unavailable(exc)
    return None, None, None, None


async def aresolve(request: HttpRequest, plan: Plan) -> Outcome:
    """:func:`resolve` under ASGI; warm: no query, no thread; cold: the database off the loop."""
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
        return claim, None, None, unavailable(exc)
    return None, None, None, None


def unavailable(exc: Exception) -> Exception:
    """A resolver's own database outage is a 503 too; any other exception stays as it is."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        report_failure("The database", exc, "a tenant resolver failed: answering 503")
        error = TenancyUnavailableError()
        error.__cause__ = exc
        return error
    return exc


def log_rejected(rejected: list[tuple[str, str]], claim: Any, error: TenancyError | None) -> None:
    """Log what the request sent that was not used (raw values never reach the log)."""
    for header, description in rejected:
        logger.info("Ignored an invalid %s header (%s)", header, description)
    if isinstance(error, InvalidTenantIdError):
        logger.info("Refused a tenant claim: %s (%s)", error.code, describe_rejected(claim))
    elif error is not None:  # a well-formed id: safe to name
        logger.info("Refused a tenant claim: %s (%s)", error.code, error.tenant_id)
