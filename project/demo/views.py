"""The demo API of the request path: a public status and an echo of the bound context."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tenancy import get_current_tenant_id, get_full_context
from tenancy.log import get_logger
from tenancy.permissions import TenantMember, TenantRequired

from .tasks import context_report

logger = get_logger(__name__)


class PublicStatusView(APIView):
    """``GET /api/public/status``: no tenant needed; says which one, if any, was bound."""

    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response(
            {
                "status": "online",
                "tenant": get_current_tenant_id(),
                "request_id": request.request_id,  # type: ignore[attr-defined]
            }
        )


class ContextView(APIView):
    """``GET /api/context``: the context bound for this request, for members of its tenant."""

    permission_classes = [TenantRequired, TenantMember]

    def get(self, request: Request) -> Response:
        tenant = request.tenant  # type: ignore[attr-defined]
        logger.info("context requested")
        body: dict[str, Any] = {
            "context": get_full_context(),
            "tenant": {
                "tenant_id": tenant.tenant_id,
                "name": tenant.name,
                "metadata": dict(tenant.metadata),
            },
        }
        return Response(body)


class ContextReportView(APIView):
    """``POST /api/tasks/context-report``: publish the demo task in this request's context.

    Eager (no ``CELERY_BROKER_URL``): 200 with the task's result. With a worker:
    202 with the task id.
    """

    permission_classes = [TenantRequired, TenantMember]

    def post(self, request: Request) -> Response:
        result = context_report.delay()
        if result.ready():
            return Response({"task_id": result.id, "result": result.get()})
        return Response({"task_id": result.id}, status=202)
