"""Shared fixtures: a clean context and registry cache around every test, and demo tenants."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import tenancy
from tenancy.registry import reset_all_caches

_DEMO_TESTS = Path(__file__).parent / "demo"


def pytest_ignore_collect(collection_path, config):
    """Leave tests/demo/ to its own run (tests/test_demo.py): it needs the demo app."""
    if collection_path == _DEMO_TESTS:
        from django.conf import settings

        if "project.demo" not in settings.INSTALLED_APPS:
            return True
    return None


@pytest.fixture(scope="session", autouse=True)
def _close_worker_thread_connections(django_db_setup, django_db_blocker):
    """Close the connection of asgiref's sync_to_async thread before the test DB is dropped."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.fixture(autouse=True)
def _clean_context():
    """Start every test with no context and an empty tenant cache; fail if one leaks."""
    tenancy.reset_context()
    reset_all_caches()
    from django.core.cache import caches

    caches["default"].clear()
    yield
    leaked = tenancy.get_context()
    tenancy.reset_context()
    assert leaked is None or not leaked.variables, f"context leaked out of the test: {leaked}"


@pytest.fixture
def hour():
    """The start of the current UTC hour, with at least 30 seconds of it left.

    Tests that write statistics buckets for "this hour" and then count live
    events would split across two buckets when the clock passes the hour
    between the two; this waits for the next hour instead.
    """
    left = 3600 - time.time() % 3600
    if left < 30:
        time.sleep(left + 0.01)
    return int(time.time() // 3600) * 3600


@pytest.fixture
def acme(db):
    return tenancy.register_tenant("acme", "Acme Corporation", metadata={"plan": "enterprise"})


@pytest.fixture
def globex(db):
    return tenancy.register_tenant("globex", "Globex Inc")


@pytest.fixture
def tenants(acme, globex):
    return {"acme": acme, "globex": globex}


@pytest.fixture
def scoped_rows(tenants):
    """Rows of two tenants: acme has projects Rocket and Anvil, globex has Dome; two tasks each."""
    from tests.testapp.models import Project, Task

    rows = {}
    for tenant_id, names in (("acme", ["Rocket", "Anvil"]), ("globex", ["Dome"])):
        with tenancy.switch(tenant_id):
            for name in names:
                project = Project.objects.create(name=name)
                Task.objects.bulk_create(
                    [Task(project=project, title=f"{name} {n}") for n in (1, 2)]
                )
                rows[name] = project
    return rows


@pytest.fixture
async def close_async_connections():
    """Close the database connection the async ORM opened in asgiref's worker thread.

    Async ORM calls run in one shared thread with its own connection; left open,
    it keeps PostgreSQL from dropping the test database at the end of the run.
    """
    yield
    from asgiref.sync import sync_to_async
    from django.db import connections

    await sync_to_async(connections.close_all)()


class Caller:
    """Sends requests through Django's sync (Client) or async (AsyncClient) path, same API."""

    def __init__(self, mode):
        self.mode = mode

    def request(self, method, path, headers=None, client_kwargs=None, **kwargs):
        from asgiref.sync import async_to_sync
        from django.test import AsyncClient, Client

        options = {"raise_request_exception": False, **(client_kwargs or {})}
        headers = dict(headers or {})
        if self.mode == "sync":
            return getattr(Client(**options), method)(path, headers=headers, **kwargs)

        async def send():
            client = AsyncClient(**options)
            host = headers.pop("Host", None)
            if host is None:
                return await getattr(client, method)(path, headers=headers, **kwargs)
            # AsyncClient always sends "host: testserver"; build the scope to send another.
            raw = [(b"host", host.encode("latin-1"))] + [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in headers.items()
            ]
            return await client.request(
                method=method.upper(), path=path, query_string="", headers=raw
            )

        # async_to_sync: the sync parts run on this thread, inside the test's transaction.
        return async_to_sync(send)()

    def get(self, path, headers=None, **kwargs):
        return self.request("get", path, headers, **kwargs)


@pytest.fixture(params=["sync", "async"])
def caller(request):
    """Every request test runs twice: through the WSGI path and through the ASGI path."""
    return Caller(request.param)


@pytest.fixture
def context_caplog(caplog):
    """``caplog`` whose records carry the context of the code that logged them."""
    from tenancy.log import TenantContextFilter

    context_filter = TenantContextFilter()
    caplog.handler.addFilter(context_filter)
    yield caplog
    caplog.handler.removeFilter(context_filter)
