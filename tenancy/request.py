"""Request helpers shared by the middleware, the resolvers, the permissions and the decorators."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

from .conf import tenancy_settings
from .current import bind, get_current_user_id
from .exceptions import (
    TenancyError,
    TenantAccessDenied,
    TenantDeniedError,
    TenantInactiveError,
    TenantNotRegisteredError,
)
from .membership import is_member

__all__ = [
    "bind_request_user",
    "denial_code",
    "denial_for",
    "meta_key",
    "note_denial",
    "tenant_denial",
]

# The refusals that tell whether a tenant exists or is active: one answer under UNIFORM_DENIAL.
_REVEALING = (TenantNotRegisteredError, TenantInactiveError, TenantAccessDenied)


def meta_key(header: str) -> str:
    """Return the ``request.META`` key of a header name: ``X-Tenant-ID`` -> ``HTTP_X_TENANT_ID``."""
    return "HTTP_" + header.upper().replace("-", "_")


def tenant_denial(request: Any) -> dict[str, str] | None:
    """Return the JSON body refusing *request*'s tenant, or ``None`` if a valid tenant is bound.

    The codes: ``tenant_required`` (no claim), ``invalid_tenant_id``,
    ``tenant_not_registered`` and ``tenant_inactive``; with
    ``TENANCY["UNIFORM_DENIAL"]``, ``tenant_denied`` instead of the last two for
    callers who are neither members of the claimed tenant nor staff
    (:func:`denial_for`).
    """
    if getattr(request, "tenant", None) is not None:
        return None
    try:
        error = request.tenant_error
    except AttributeError:
        raise ImproperlyConfigured(
            "The request has no tenant attributes: add "
            "'tenancy.middleware.TenantContextMiddleware' to MIDDLEWARE."
        ) from None
    if error is not None:
        return note_denial(request, denial_for(request, error).as_dict())
    return note_denial(
        request,
        {
            "detail": (
                "This request needs a tenant: send the "
                f"{tenancy_settings.TENANT_HEADER} header with the id of a registered, "
                "active tenant."
            ),
            "code": "tenant_required",
        },
    )


def note_denial(request: Any, body: dict[str, str]) -> dict[str, str]:
    """Record that *request* is refused with *body*'s code (for its span); return *body*."""
    http_request = getattr(request, "_request", request)
    http_request._tenancy_denied = body["code"]
    return body


def denial_code(request: Any) -> str | None:
    """Return the code *request* was refused with by tenancy, or ``None``."""
    return getattr(request, "_request", request).__dict__.get("_tenancy_denied")


def denial_for(request: Any, error: TenancyError) -> TenancyError:
    """Return the error *request*'s caller is shown for *error*.

    *error* itself, unless ``TENANCY["UNIFORM_DENIAL"]`` is on, *error* tells
    whether a tenant exists or is active (not registered, inactive, not a
    member), and the caller is neither a member of that tenant nor staff: then
    :class:`TenantDeniedError`, the same for every tenant id.
    """
    if not tenancy_settings.UNIFORM_DENIAL or not isinstance(error, _REVEALING):
        return error
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        if getattr(user, "is_staff", False) or getattr(user, "is_superuser", False):
            return error
        if error.tenant_id is not None and is_member(error.tenant_id, user.pk):
            return error
    return TenantDeniedError()


def bind_request_user(request: Any, user: Any) -> None:
    """Bind an authenticated *user*'s pk as ``user_id`` for the rest of the request.

    Used by the permission classes once DRF has authenticated the user (token
    or session), so log lines of the view carry it. Only inside the
    middleware's frame, which restores the context when the response is ready.
    """
    http_request = getattr(request, "_request", request)
    if not http_request.__dict__.get("_tenancy_frame"):
        return
    if user is None or not getattr(user, "is_authenticated", False):
        return
    user_id = str(user.pk)
    if get_current_user_id() != user_id:
        bind({"user_id": user_id})
