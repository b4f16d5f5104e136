"""The ASGI app of the statistics and SQLite server tests (tests/test_stats_servers.py).

``uvicorn tests.stats_app:application`` with
``DJANGO_SETTINGS_MODULE=tests.stats_server_settings``. Every request names its
tenant with ``X-Tenant-ID``, so the middleware counts it; ``/count/<id>`` also
switches into the tenant in the view (a counted switch), and ``POST /write``
writes a row of the bound tenant from a worker thread, as many at once as
there are clients.
"""

from __future__ import annotations

import os

from asgiref.sync import sync_to_async
from django.core.asgi import get_asgi_application
from django.db import connections, transaction
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

import tenancy


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"pid": os.getpid()})


def count(request: HttpRequest, tenant_id: str) -> JsonResponse:
    with tenancy.switch(tenant_id):
        return JsonResponse({"tenant_id": tenancy.get_current_tenant_id(), "pid": os.getpid()})


def _write(tenant_id: str, name: str) -> int:
    from tests.testapp.models import Project

    try:
        with tenancy.switch(tenant_id), transaction.atomic():
            # Read, then write, in one transaction: what fails first on SQLite's
            # defaults, as the read lock cannot wait to become a write lock.
            position = Project.objects.count()
            project = Project.objects.create(name=f"{name} #{position}")
            Project.objects.filter(pk=project.pk).update(name=name)
            return project.pk
    finally:
        connections.close_all()  # a worker thread of the pool: leave no connection behind


@csrf_exempt
async def write(request: HttpRequest) -> JsonResponse:
    tenant_id = tenancy.get_current_tenant_id()
    if request.method != "POST" or tenant_id is None:
        return JsonResponse({"code": "bad_request"}, status=400)
    name = request.headers.get("X-Name", "row")[:50]
    pk = await sync_to_async(_write, thread_sensitive=False)(tenant_id, name)
    return JsonResponse({"pk": pk, "pid": os.getpid()}, status=201)


urlpatterns = [
    path("health", health),
    path("count/<str:tenant_id>", count),
    path("write", write),
]

application = get_asgi_application()
