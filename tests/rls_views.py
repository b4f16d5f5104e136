"""Views of the row-level security server test: raw SQL, as a careless view would write it."""

import time
from contextlib import nullcontext
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.db import connection, transaction
from django.http import JsonResponse
from django.urls import include, path

import tenancy

# More threads (so more database connections) than PgBouncer has server connections.
_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="rls-view")


def _read(atomic: bool) -> dict:
    with transaction.atomic() if atomic else nullcontext(), connection.cursor() as cursor:
        cursor.execute("SELECT tenant_id, name FROM testapp_project ORDER BY id")
        rows = cursor.fetchall()
        if atomic:
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
    atomic = request.GET.get("atomic") == "1"
    return JsonResponse(await sync_to_async(_read, thread_sensitive=False, executor=_POOL)(atomic))


urlpatterns = [
    path("req/", include("tests.request_views")),
    path("rls/rows", rows),
]
