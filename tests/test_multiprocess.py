"""Several processes, one PostgreSQL and one Redis: a change made anywhere holds everywhere.

Two uvicorn servers (separate processes) serve ``tests/multiprocess_app.py``
against the test database and the test cache, through the real request path
(``TenantContextMiddleware`` with ``TenantRequired`` / ``tenant_required``) and
through ``switch``/``aswitch`` in a view. Tenant state is shared through
the cache only; each process keeps a local copy in front of it, checked
against the shared state version at most every
``TENANCY["STATE_RECHECK_INTERVAL"]`` (0.5 s). So a change is seen at once by
the process that made it and within that bound by the others, which the tests
poll for with a deadline. These tests need a shared cache: they run when ``CACHE_URL``
is ``redis://...`` and ``DATABASE_URL`` is ``postgres://...`` (the CI run
against PostgreSQL + Redis) and are skipped otherwise.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from django.db import connections

import tenancy

ROOT = Path(__file__).resolve().parent.parent


def _shared_backends() -> bool:
    database = os.environ.get("DATABASE_URL", "")
    cache = os.environ.get("CACHE_URL", "")
    return database.startswith(("postgres://", "postgresql://", "pgsql://")) and cache.startswith(
        ("redis://", "rediss://")
    )


pytestmark = [
    pytest.mark.server,
    pytest.mark.redis,
    pytest.mark.skipif(
        not _shared_backends(),
        reason="needs DATABASE_URL=postgres://... and CACHE_URL=redis://...: "
        "processes share tenant state only through them",
    ),
    pytest.mark.django_db(transaction=True),
]


def _database_url() -> str:
    """The URL of the test database (pytest-django's, not the one DATABASE_URL names)."""
    s = connections["default"].settings_dict
    auth = quote(s["USER"] or "", safe="")
    if s["PASSWORD"]:
        auth += ":" + quote(s["PASSWORD"], safe="")
    host = s["HOST"] or "127.0.0.1"
    port = f":{s['PORT']}" if s["PORT"] else ""
    return f"postgres://{auth}@{host}{port}/{s['NAME']}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One uvicorn process serving the test app on a free 127.0.0.1 port."""

    def __init__(self, name: str, env: dict[str, str], log_dir: str, client: httpx.Client) -> None:
        self.name = name
        self.client = client
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_dir) / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.multiprocess_app:application",
                "--host=127.0.0.1",
                f"--port={self.port}",
                "--lifespan=off",
                "--log-level=warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if self.client.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        pytest.fail(f"server {self.name} did not start:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="module")
def servers(django_db_setup, django_db_blocker) -> Iterator[tuple[Server, Server]]:
    """Two servers in two processes sharing the test database and Redis; stopped at the end."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.multiprocess_settings",
        "DATABASE_URL": _database_url(),
        "CACHE_URL": os.environ["CACHE_URL"],
        "PYTHONUNBUFFERED": "1",
    }
    # One client for every request: a new httpx client builds an SSL context
    # each time, which costs more than the requests themselves.
    with (
        tempfile.TemporaryDirectory(prefix="tenancy-servers-") as log_dir,
        httpx.Client(timeout=10.0) as client,
    ):
        started: list[Server] = []
        try:
            for name in ("a", "b"):
                started.append(Server(name, env, log_dir, client))
            for server in started:
                server.wait_ready()
            yield started[0], started[1]
        finally:
            for server in started:
                server.stop()
            # The servers' connections are gone; let the test database be dropped.
            with django_db_blocker.unblock():
                connections.close_all()


def get(server: Server, path: str) -> httpx.Response:
    return server.client.get(server.url + path)


def post(server: Server, path: str) -> httpx.Response:
    return server.client.post(server.url + path)


def _responses(server: Server, tenant_id: str) -> Iterator[tuple[str, httpx.Response]]:
    """Ask *server* for *tenant_id* in every way: the request's claim, sync and async; a switch."""
    for path in ("/api/tenant", "/async/tenant"):
        yield path, server.client.get(server.url + path, headers={"X-Tenant-ID": tenant_id})
    for view in ("switch", "aswitch"):
        yield view, get(server, f"/{view}/{tenant_id}")


def assert_serves(server: Server, tenant_id: str) -> None:
    for how, response in _responses(server, tenant_id):
        assert response.status_code == 200, (server.name, how, response.text)
        assert response.json()["tenant_id"] == tenant_id


def assert_refuses(server: Server, tenant_id: str, code: str) -> None:
    for how, response in _responses(server, tenant_id):
        assert response.status_code == 403, (server.name, how, response.text)
        assert response.json()["code"] == code


# Another process sees a change within the recheck interval (0.5 s) plus a round
# trip, at most the documented 1 s; the polls allow 1 s more for a loaded machine.
DEADLINE = 2.0


def eventually(check: Any, *args: Any) -> float:
    """Call *check* until it stops raising ``AssertionError``; return how long that took."""
    started = time.monotonic()
    while True:
        try:
            check(*args)
            return time.monotonic() - started
        except AssertionError:
            if time.monotonic() - started > DEADLINE:
                raise
            time.sleep(0.02)


def test_the_servers_are_two_processes(servers):
    a, b = servers
    pids = {get(a, "/health").json()["pid"], get(b, "/health").json()["pid"]}
    assert len(pids) == 2
    assert os.getpid() not in pids


def test_deactivation_through_one_server_is_refused_by_the_other_within_the_bound(servers, acme):
    a, b = servers
    for _ in range(3):  # both have seen it active, and hold it in their local copy
        assert_serves(a, "acme")
        assert_serves(b, "acme")

    response = post(a, "/tenants/acme/deactivate")
    assert response.status_code == 200
    assert response.json()["active"] is False

    assert_refuses(a, "acme", "tenant_inactive")  # the process that made it: at once
    eventually(assert_refuses, b, "acme", "tenant_inactive")
    assert_refuses(b, "acme", "tenant_inactive")  # and from then on

    assert post(b, "/tenants/acme/activate").json()["active"] is True
    assert_serves(b, "acme")
    eventually(assert_serves, a, "acme")


def test_changes_made_by_another_process_reach_every_server(servers, acme, globex):
    for server in servers:
        assert_serves(server, "acme")
        assert_serves(server, "globex")
        assert_refuses(server, "initech", "tenant_not_registered")

    # This test process is a third one: the registry here, the servers there.
    tenancy.deactivate_tenant("globex")
    tenancy.register_tenant("initech", "Initech")
    for server in servers:
        eventually(assert_refuses, server, "globex", "tenant_inactive")
        eventually(assert_serves, server, "initech")
        assert_serves(server, "acme")

    tenancy.unregister_tenant("initech")
    for server in servers:
        eventually(assert_refuses, server, "initech", "tenant_not_registered")


def test_a_rolled_back_deactivation_is_never_seen_by_another_process(servers, acme):
    from django.db import transaction

    a, b = servers
    assert_serves(a, "acme")
    try:
        with transaction.atomic():
            tenancy.deactivate_tenant("acme")
            time.sleep(0.6)  # longer than the recheck interval: the others have looked
            assert_serves(a, "acme")
            assert_serves(b, "acme")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    time.sleep(0.6)
    assert_serves(a, "acme")
    assert_serves(b, "acme")
