"""Views the outage and uniform-denial tests (and their test server) go through."""

from django.http import JsonResponse
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

import tenancy
from tenancy.decorators import tenant_required
from tenancy.permissions import TenantMember, TenantRequired


def _projects():
    from tests.testapp.models import Project

    return {
        "tenant_id": tenancy.get_current_tenant_id(),
        "projects": sorted(Project.objects.values_list("name", flat=True)),
    }


@tenant_required
def projects(request):
    """The bound tenant's projects: a response of another tenant's rows would be a leak."""
    return JsonResponse(_projects())


@tenant_required
async def projects_async(request):
    from asgiref.sync import sync_to_async

    return JsonResponse(await sync_to_async(_projects)())


def open_view(request):
    """Needs no tenant and no database."""
    return JsonResponse({"tenant_id": tenancy.get_current_tenant_id()})


class ProjectsView(APIView):
    permission_classes = [TenantRequired]

    def get(self, request):
        return Response(_projects())


class MemberProjectsView(APIView):
    permission_classes = [TenantMember, TenantRequired]

    def get(self, request):
        return Response(_projects())


def switch_view(request, tenant_id):
    """Switches to the tenant the URL names: refusals reach the middleware as exceptions."""
    with tenancy.switch(tenant_id):
        return JsonResponse(_projects())


urlpatterns = [
    path("projects", projects),
    path("projects-async", projects_async),
    path("open", open_view),
    path("drf", ProjectsView.as_view()),
    path("member", MemberProjectsView.as_view()),
    path("switch/<str:tenant_id>", switch_view),
]
