"""Views of the row-level security server test: raw SQL, as a careless view would write it."""

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django.http import JsonResponse
from django.urls import include, path

import tenancy

# More threads (so more database connections) than PgBouncer has server connections.
_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="rls-view")


def _read(atomic: bool, where: bool = False, hold: bool = False) -> dict:
    query = "SELECT tenant_id, name FROM testapp_project"
    params = []
    if where:  # the condition the ORM would add: the same rows with the wall off
        query += " WHERE tenant_id = %s"
        params.append(tenancy.get_current_tenant_id())
    with transaction.atomic() if atomic else nullcontext(), connection.cursor() as cursor:
        cursor.execute(query + " ORDER BY id", params)
        rows = cursor.fetchall()
        if hold:
            time.sleep(0.002)  # hold the transaction: other requests interleave
        cursor.execute("SELECT current_setting('tenancy.tenant_id', true), pg_backend_pid()")
        setting, pid = cursor.fetchone()
    return {
        "tenant": tenancy.get_current_tenant_id(),
        "rows": rows,
        "setting": setting or "",
        "pid": pid,
    }


async def rows(request):
    """Read in one of 16 threads (each with its own database connection)."""
    atomic = request.GET.get("atomic") == "1"
    read = sync_to_async(_read, thread_sensitive=False, executor=_POOL)
    return JsonResponse(await read(atomic, hold=atomic))


def rows_sync(request):
    """Read in the request's thread (for bench/rls.py)."""
    return JsonResponse(_read(request.GET.get("atomic") == "1", request.GET.get("where") == "1"))


urlpatterns = [
    path("req/", include("tests.request_views")),
    path("rls/rows", rows),
    path("rls/rows-sync", rows_sync),
]
