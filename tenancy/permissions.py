"""DRF permission classes: only validated tenants, and only their members, get through.

``TenantRequired`` checks the request's tenant claim against the registry;
``TenantMember`` checks that the authenticated user belongs to that tenant.
A tenant header is a claim, not a proof: APIs reached by end users use both::

    class NoteViewSet(viewsets.ModelViewSet):
        permission_classes = [TenantRequired, TenantMember]

Refusals are 403 responses with a JSON body ``{"detail": ..., "code": ...}``.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission

from .exceptions import TenantAccessDenied
from .membership import is_member
from .registry import require_tenant_id
from .request import bind_request_user, denial_for, note_denial, tenant_denial

__all__ = ["TenantMember", "TenantPermissionDenied", "TenantRequired"]


class TenantPermissionDenied(PermissionDenied):
    """A 403 whose body is ``{"detail", "code"}``, like every tenancy error."""

    def __init__(self, body: dict[str, str]) -> None:
        # A dict detail is rendered as the body itself by DRF's exception handler.
        super().__init__(detail=body, code=body["code"])


class TenantRequired(BasePermission):
    """Allow requests bound to a registered, active tenant."""

    message = "This request needs a registered, active tenant."
    code = "tenant_required"

    def has_permission(self, request: Any, view: Any) -> bool:
        body = tenant_denial(request)
        if body is not None:
            # Raised, not returned: DRF would answer an anonymous caller "not authenticated".
            raise TenantPermissionDenied(body)
        bind_request_user(request, request.user)
        return True


class TenantMember(BasePermission):
    """Allow authenticated users who are members of the request's tenant."""

    message = TenantAccessDenied.default_message
    code = TenantAccessDenied.code

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if user is None or not user.is_authenticated:
            return False  # DRF answers 401/403 "not_authenticated"
        body = tenant_denial(request)
        if body is not None:
            raise TenantPermissionDenied(body)
        # The bound tenant: the one the scoped managers will read (the request's).
        tenant_id = require_tenant_id()
        if not is_member(tenant_id, user.pk):
            refusal = denial_for(request, TenantAccessDenied(tenant_id=tenant_id))
            raise TenantPermissionDenied(note_denial(request, refusal.as_dict()))
        bind_request_user(request, user)
        return True
