"""A cache that goes away: a real redis-server, started on a free port and killed mid-run.

Requests keep being served from the database with the same isolation (no 500,
no row of another tenant), a warning is logged once, and the cache is used
again once Redis is back on the same port. With the database unreachable too,
a tenant claim is answered with a JSON 503 ``tenancy_unavailable``.
"""

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from django.db import connection, connections
from django.test import override_settings

import tenancy
from tenancy.outage import GuardedCache, describe_error, reset_outage_state
from tenancy.registry import reset_all_caches
from tests.test_server import run_server

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs the redis-server binary"
)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One redis-server on a fixed port, without persistence: killed, it comes back empty."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert self.process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def keys(self, pattern="*"):
        import redis

        client = redis.Redis(port=self.port, socket_timeout=2)
        try:
            return sorted(key.decode() for key in client.keys(pattern))
        finally:
            client.close()

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # in case a test left it stopped
            self.kill()


@pytest.fixture(autouse=True)
def _fresh_outage_state():
    reset_outage_state()
    yield
    reset_outage_state()


@pytest.fixture
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_cache(redis_server):
    """The test's Redis as the default cache, with the recommended socket timeouts."""
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_server.url,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    tenancy_options = {"STATS_AUTO_FLUSH": False, "CACHE_RETRY_INTERVAL": 0.05}
    with override_settings(CACHES=caches, TENANCY=tenancy_options):
        reset_all_caches()
        yield redis_server
    reset_all_caches()


@pytest.fixture
def two_tenants(transactional_db):
    from tests.testapp.models import Project

    rows = {"acme": ["Anvil", "Rocket"], "globex": ["Dome"], "initech": ["Printer"]}
    for tenant_id, names in rows.items():
        tenancy.register_tenant(tenant_id, tenant_id.title())
        with tenancy.switch(tenant_id):
            for name in names:
                Project.objects.create(name=name)
    return rows


def wait_for(condition, what, timeout=15):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def served(caller, tenant_id, rows, path="/outage/projects"):
    """Request *tenant_id*'s projects; fail on anything but its own rows."""
    response = caller.get(path, headers={"X-Tenant-ID": tenant_id})
    assert response.status_code == 200, (tenant_id, response.status_code, response.content[:300])
    body = response.json()
    assert body == {"tenant_id": tenant_id, "projects": rows[tenant_id]}, body
    return body


def test_requests_are_served_from_the_database_while_redis_is_down(
    caller, redis_cache, two_tenants, caplog
):
    redis = redis_cache
    path = "/outage/projects" if caller.mode == "sync" else "/outage/projects-async"
    for tenant_id in ["acme", "globex"] * 5:
        served(caller, tenant_id, two_tenants, path)
    assert any(key.endswith(":tenant:acme") for key in redis.keys()), redis.keys()

    redis.kill()
    with caplog.at_level(logging.INFO, logger="tenancy.outage"):
        for tenant_id in ["acme", "globex"] * 10:
            served(caller, tenant_id, two_tenants, path)
        unknown = caller.get(path, headers={"X-Tenant-ID": "nobody"})
        assert unknown.status_code == 403 and unknown.json()["code"] == "tenant_not_registered"
        # A change made during the outage is seen at once: the database answers.
        tenancy.deactivate_tenant("globex")
        refused = caller.get(path, headers={"X-Tenant-ID": "globex"})
        assert refused.status_code == 403 and refused.json()["code"] == "tenant_inactive"
        served(caller, "acme", two_tenants, path)
    warnings = [r for r in caplog.records if r.name == "tenancy.outage" and r.levelno >= 30]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once per interval
    message = warnings[0].getMessage()
    assert "The cache 'default' failed (ConnectionError: " in message, message
    assert "served from the database" in message

    redis.start()  # the same port, empty
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tenancy.outage"):
        wait_for(
            lambda: (
                served(caller, "acme", two_tenants, path)
                and any(key.endswith(":tenant:acme") for key in redis.keys())
            ),
            "the cache to be used again",
        )
    assert any("answers again" in r.getMessage() for r in caplog.records)
    for tenant_id in ["acme", "initech"] * 5:
        served(caller, tenant_id, two_tenants, path)
    refused = caller.get(path, headers={"X-Tenant-ID": "globex"})
    assert refused.status_code == 403 and refused.json()["code"] == "tenant_inactive"


def test_drf_views_and_switch_are_served_while_redis_is_down(caller, redis_cache, two_tenants):
    redis_cache.kill()
    for tenant_id in ["acme", "globex", "initech"]:
        served(caller, tenant_id, two_tenants, "/outage/drf")
        served(caller, tenant_id, two_tenants, f"/outage/switch/{tenant_id}")
    missing = caller.get("/outage/switch/nobody")
    assert missing.status_code == 403 and missing.json()["code"] == "tenant_not_registered"


def test_memberships_are_read_from_the_database_while_redis_is_down(
    caller, redis_cache, two_tenants
):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from tenancy.models import TenantMembership

    user = get_user_model().objects.create_user("alice", password="pw")
    TenantMembership.objects.create(tenant_id="acme", user=user)
    token = {"Authorization": f"Token {Token.objects.create(user=user).key}"}
    warm = caller.get("/outage/member", headers={"X-Tenant-ID": "globex", **token})
    assert warm.status_code == 403  # and the memberships are cached in Redis
    assert any(":members:" in key for key in redis_cache.keys())
    redis_cache.kill()
    mine = caller.get("/outage/member", headers={"X-Tenant-ID": "acme", **token})
    assert mine.status_code == 200 and mine.json()["projects"] == two_tenants["acme"]
    foreign = caller.get("/outage/member", headers={"X-Tenant-ID": "globex", **token})
    assert foreign.status_code == 403 and foreign.json()["code"] == "tenant_access_denied"
    # A membership added during the outage counts at once.
    TenantMembership.objects.create(tenant_id="globex", user=user)
    now = caller.get("/outage/member", headers={"X-Tenant-ID": "globex", **token})
    assert now.status_code == 200 and now.json()["projects"] == two_tenants["globex"]


def test_a_redis_that_stops_answering_fails_fast_with_socket_timeouts(redis_cache, two_tenants):
    """SIGSTOP: connections are accepted and never answered; the socket timeout ends each wait."""
    from tests.conftest import Caller

    caller = Caller("sync")
    served(caller, "acme", two_tenants)
    redis_cache.process.send_signal(signal.SIGSTOP)
    try:
        for tenant_id in ["acme", "globex"] * 3:
            served(caller, tenant_id, two_tenants)
    finally:
        redis_cache.process.send_signal(signal.SIGCONT)
    redis_cache.keys()  # answering again
    wait_for(
        lambda: served(caller, "globex", two_tenants)
        and any(key.endswith(":tenant:globex") for key in redis_cache.keys()),
        "the cache to be used again",
    )


@contextlib.contextmanager
def database_unreachable(tmp_path):
    """Point the default connection at a database that is not there (a real driver error)."""
    conn = connections["default"]
    saved = dict(conn.settings_dict)
    conn.close()
    if conn.vendor == "sqlite":
        conn.settings_dict["NAME"] = str(tmp_path / "missing" / "db.sqlite3")
    else:
        conn.settings_dict.update(HOST="127.0.0.1", PORT=str(free_port()))
    try:
        yield
    finally:
        conn.close()
        conn.settings_dict.clear()
        conn.settings_dict.update(saved)


def test_cache_and_database_down_is_a_json_503_then_service_resumes(
    caller, redis_cache, two_tenants, tmp_path
):
    redis_cache.kill()
    reset_all_caches()  # as in a process that has not looked these tenants up yet
    with database_unreachable(tmp_path):
        for target in ["/outage/projects", "/outage/drf", "/outage/projects-async"]:
            for tenant_id in ["initech", "nobody"]:  # no copy anywhere
                response = caller.get(target, headers={"X-Tenant-ID": tenant_id})
                assert response.status_code == 503, response.content[:300]
                assert response["Content-Type"] == "application/json"
                assert response["Retry-After"] == "1"
                assert response.json()["code"] == "tenancy_unavailable"
        # What needs no tenant is still answered.
        assert caller.get("/outage/open").json() == {"tenant_id": None}
    redis_cache.start()
    served(caller, "initech", two_tenants)
    served(caller, "acme", two_tenants, "/outage/drf")


def test_a_view_switching_while_the_database_is_down_gets_a_json_503(
    caller, redis_cache, two_tenants, tmp_path
):
    redis_cache.kill()
    reset_all_caches()
    with database_unreachable(tmp_path):
        response = caller.get("/outage/switch/initech")
    assert response.status_code == 503
    assert response.json()["code"] == "tenancy_unavailable"


def test_the_database_guard_only_catches_connection_errors(transactional_db):
    from django.db import IntegrityError
    from django.db.utils import OperationalError

    from tenancy.outage import database_guard

    with pytest.raises(tenancy.TenancyUnavailableError) as info:
        with database_guard():
            raise OperationalError("gone")
    assert info.value.status_code == 503 and info.value.code == "tenancy_unavailable"
    with pytest.raises(IntegrityError), database_guard():
        raise IntegrityError("a bug, not an outage")


# -- the guard itself ------------------------------------------------------------------------


class Flaky:
    """A cache backend that fails while ``down`` is set, and records what it was asked."""

    def __init__(self):
        self.down = False
        self.data = {}
        self.calls = []

    def _maybe_fail(self, name):
        self.calls.append(name)
        if self.down:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:1.\nConnection refused.")

    def get(self, key, default=None):
        self._maybe_fail("get")
        return self.data.get(key, default)

    def add(self, key, value, timeout=None):
        self._maybe_fail("add")
        return self.data.setdefault(key, value) is value

    def set(self, key, value, timeout=None):
        self._maybe_fail("set")
        self.data[key] = value

    def delete(self, key):
        self._maybe_fail("delete")
        return self.data.pop(key, None) is not None

    def delete_many(self, keys):
        self._maybe_fail("delete_many")
        for key in keys:
            self.data.pop(key, None)

    def incr(self, key, delta=1):
        self._maybe_fail("incr")
        if key not in self.data:
            raise ValueError(f"Key {key!r} not found.")
        self.data[key] += delta
        return self.data[key]


@override_settings(TENANCY={"CACHE_RETRY_INTERVAL": 3600, "OUTAGE_LOG_INTERVAL": 3600})
def test_guard_skips_a_failing_cache_and_deletes_what_it_missed_once_back(caplog, monkeypatch):
    backend = Flaky()
    cache = GuardedCache(backend, "flaky")
    cache.set("a", 1)
    cache.set("b", 2)
    backend.down = True
    with caplog.at_level(logging.INFO, logger="tenancy.outage"):
        assert cache.get("a", "miss") == "miss"  # fails: a miss
        assert cache.get("a", "miss") == "miss"  # skipped: the backend is not asked again
        cache.set("a", 10)  # skipped, and remembered as stale
        assert cache.delete("b") is False
        assert backend.calls == ["set", "set", "get"]
        assert cache.available is False
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        message = warnings[0].getMessage()
        assert "The cache 'flaky' failed (ConnectionError: 'Error 111" in message
        assert "\n" not in message and "\\n" in message  # escaped

        backend.down = False
        later = time.monotonic() + 7200
        monkeypatch.setattr("tenancy.outage._monotonic", lambda: later)
        assert cache.get("c", "miss") == "miss"  # tried again: the cache answers
    # What was written while it was down is stale there: deleted, not read back.
    assert backend.data == {}
    assert cache.available is True
    assert any("answers again (2 stale keys deleted)" in r.getMessage() for r in caplog.records)


def test_the_state_version_of_a_failing_cache_is_unknown_not_none():
    """A process must not keep its local copy on the word of a cache that cannot answer."""
    from tenancy.state import MISS, SharedStore

    backend = Flaky()
    store = SharedStore(GuardedCache(backend, "flaky-version"), "t:", 60)
    assert store.read_version() == 0
    backend.down = True
    assert store.read_version() is MISS
    assert store.get("acme") is MISS


def test_guard_lets_a_missing_key_of_incr_raise():
    backend = Flaky()
    with pytest.raises(ValueError):
        GuardedCache(backend, "flaky-incr").incr("missing")
    assert GuardedCache(backend, "flaky-incr").available is True
    backend.down = True
    assert GuardedCache(backend, "flaky-incr").incr("missing") is None


def test_the_production_settings_pass_the_checks():
    """docs/production.md's settings: Redis with socket timeouts, UNIFORM_DENIAL on, no message."""
    import re

    from tenancy.checks import check_settings

    text = (ROOT / "docs" / "production.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "CACHES = {" in b]
    assert len(blocks) == 1
    namespace = {}
    exec(compile(blocks[0], "docs/production.md", "exec"), namespace)
    assert namespace["TENANCY"]["UNIFORM_DENIAL"] is True
    with override_settings(CACHES=namespace["CACHES"], TENANCY=namespace["TENANCY"]):
        assert check_settings() == []


def test_describe_error_escapes_and_shortens():
    text = describe_error(ConnectionError("line one\nline two\x1b[31m" + "x" * 500))
    assert text.startswith("ConnectionError: 'line one\\nline two\\x1b[31m")
    assert "\n" not in text and "\x1b" not in text and len(text) < 260


# -- a real uvicorn server -------------------------------------------------------------------


@contextlib.contextmanager
def run_outage_server(redis_url, log_path, db_name=None):
    """Serve the outage settings with uvicorn on a free port; always stop it."""
    env = {"TENANCY_OUTAGE_REDIS_URL": redis_url}
    if db_name is not None:
        env["TENANCY_SERVER_DB_NAME"] = db_name
    with run_server(log_path, settings="tests.outage_settings", env=env) as (url, _port, _process):
        yield url


CLIENTS = 8
PER_CLIENT = 60
SERVER_PATHS = ["/outage/projects", "/outage/projects-async", "/outage/drf"]


async def load_while(url, rows, redis):
    """CLIENTS clients; Redis is killed after a third of the requests, restarted after two."""
    total = CLIENTS * PER_CLIENT
    results = []
    events = {"killed_at": None, "restarted_at": None}
    tenants = sorted(rows)

    async def client(n):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            for i in range(PER_CLIENT):
                tenant_id = tenants[(n + i) % len(tenants)]
                target = SERVER_PATHS[(n * 7 + i) % len(SERVER_PATHS)]
                response = await http.get(target, headers={"X-Tenant-ID": tenant_id})
                results.append((tenant_id, target, response.status_code, response.content))
                done = len(results)
                if done >= total // 3 and events["killed_at"] is None:
                    events["killed_at"] = done
                    await asyncio.to_thread(redis.kill)
                elif done >= 2 * total // 3 and events["restarted_at"] is None:
                    events["restarted_at"] = done
                    await asyncio.to_thread(redis.start)

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    return results, events


@pytest.mark.server
def test_a_uvicorn_server_rides_out_a_redis_outage(two_tenants, redis_server, tmp_path):
    log_path = tmp_path / "server.log"
    with run_outage_server(redis_server.url, log_path) as url:
        results, events = asyncio.run(load_while(url, two_tenants, redis_server))
        assert events["killed_at"] and events["restarted_at"]
        # Back on the same port: the server fills the cache again by itself.
        wait_for(
            lambda: (
                httpx.get(url + "/outage/drf", headers={"X-Tenant-ID": "globex"}).status_code == 200
                and any(key.endswith(":tenant:globex") for key in redis_server.keys())
            ),
            "the server to use the cache again",
        )
        unknown = httpx.get(url + "/outage/projects", headers={"X-Tenant-ID": "nobody"})
    assert unknown.status_code == 403 and unknown.json()["code"] == "tenant_not_registered"

    assert len(results) == CLIENTS * PER_CLIENT
    statuses = [status for _tenant, _target, status, _body in results]
    down = events["restarted_at"] - events["killed_at"]
    print(f"{len(results)} requests, {down} while Redis was down, statuses {set(statuses)}")
    assert statuses.count(500) == 0
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    for tenant_id, target, _status, body in results:
        data = json.loads(body)
        assert data == {"tenant_id": tenant_id, "projects": two_tenants[tenant_id]}, (target, data)
    log = log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
    warnings = [line for line in log.splitlines() if "logger=tenancy.outage" in line]
    assert any("level=WARNING" in line and "ConnectionError" in line for line in warnings), log
    assert any("answers again" in line for line in warnings), warnings


@pytest.mark.server
def test_a_uvicorn_server_without_cache_and_database_answers_json_503s(
    transactional_db, redis_server, tmp_path
):
    redis_server.kill()
    if connection.vendor == "sqlite":
        missing = str(tmp_path / "missing" / "db.sqlite3")
    else:
        missing = "tenancy_no_such_database"
    log_path = tmp_path / "server.log"
    with run_outage_server(redis_server.url, log_path, db_name=missing) as url:
        responses = [
            httpx.get(url + target, headers={"X-Tenant-ID": tenant_id})
            for target in SERVER_PATHS
            for tenant_id in ("acme", "nobody")
            for _ in range(3)
        ]
        no_claim = httpx.get(url + "/outage/open")
    assert no_claim.status_code == 200
    assert {r.status_code for r in responses} == {503}
    for response in responses:
        assert response.headers["content-type"] == "application/json"
        assert response.json()["code"] == "tenancy_unavailable"
    log = log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
    warnings = [line for line in log.splitlines() if "answering 503" in line]
    assert len(warnings) == 1, warnings  # once per OUTAGE_LOG_INTERVAL, not per request
    assert "level=WARNING" in warnings[0] and "OperationalError" in warnings[0]
