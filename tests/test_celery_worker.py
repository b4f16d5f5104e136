"""Real Celery workers (prefork and threads, concurrency 4) run tasks in their publishers' context.

The test run starts ``celery -A tests.celery_app worker`` against Redis (the
broker and result backend) and the test database; tasks are published from
request handlers (the real middleware binds each request's tenant and request
id) and from other tasks. Every task writes the tenant and request id it saw
into a Redis list, next to what its publisher had bound. These tests need
Redis: ``CELERY_BROKER_URL``, or a ``CACHE_URL`` of ``redis://...``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from celery.exceptions import TaskRevokedError
from django.db import connections

import tenancy

ROOT = Path(__file__).resolve().parent.parent


def _broker() -> str | None:
    url = os.environ.get("CELERY_BROKER_URL") or os.environ.get("CACHE_URL", "")
    return url if url.startswith("redis://") else None


BROKER = _broker()
pytestmark = [
    pytest.mark.server,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.skipif(
        BROKER is None, reason="needs Redis: CELERY_BROKER_URL or CACHE_URL=redis://..."
    ),
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("tests.celery_app"),
]
if BROKER is not None:
    os.environ["TENANCY_TEST_BROKER"] = BROKER


@pytest.fixture(autouse=True)
def _clean_context():
    """The conftest's clean context, without clearing the cache: the broker may share its db."""
    from tenancy.registry import reset_all_caches

    tenancy.reset_context()
    reset_all_caches()
    yield
    leaked = tenancy.get_context()
    tenancy.reset_context()
    assert leaked is None or not leaked.variables, f"context leaked out of the test: {leaked}"


@pytest.fixture(scope="module", params=["prefork", "threads"])
def worker(request, tmp_path_factory, django_db_setup, django_db_blocker):
    """One worker process of *pool*, concurrency 4, on a queue of its own."""
    from tests.celery_app import app

    queue = f"tenancy-tests-{uuid.uuid4().hex[:8]}"
    with django_db_blocker.unblock():
        name = connections["default"].settings_dict["NAME"]
    log_path = tmp_path_factory.mktemp("celery") / f"{request.param}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.server_settings",
        "TENANCY_SERVER_DB_NAME": str(name),
        "TENANCY_TEST_QUEUE": queue,
        "TENANCY_TEST_BROKER": BROKER,
    }
    env.pop("PYTEST_CURRENT_TEST", None)
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.celery_app",
            "worker",
            "--pool",
            request.param,
            "--concurrency",
            "4",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
            "--hostname",
            f"{queue}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    old_queue = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    try:
        deadline = time.monotonic() + 60
        while b" ready." not in log_path.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the worker did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield {"pool": request.param, "log": log_path}
    finally:
        app.conf.task_default_queue = old_queue
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.fixture
def store():
    import redis

    client = redis.Redis.from_url(BROKER)
    key = f"tenancy-tests:{uuid.uuid4().hex}"
    yield client, key
    client.delete(key)


def wait_for(client, key, count, worker, timeout=180):
    deadline = time.monotonic() + timeout
    while client.llen(key) < count:
        if time.monotonic() > deadline:
            log = worker["log"].read_text()[-3000:]
            pytest.fail(f"{client.llen(key)} of {count} tasks recorded:\n{log}")
        time.sleep(0.2)
    return [json.loads(row) for row in client.lrange(key, 0, -1)]


@pytest.fixture
def twenty_tenants(db):
    run = uuid.uuid4().hex[:6]
    return [tenancy.register_tenant(f"w{run}-{n}", f"Tenant {n}").tenant_id for n in range(20)]


def test_a_thousand_tasks_over_twenty_tenants_run_in_their_publishers_context(
    worker, store, twenty_tenants, client
):
    client_redis, key = store
    # Per tenant: 5 requests, each publishing 5 records itself and 1 task publishing 5 more.
    for tenant_id in twenty_tenants:
        for _ in range(5):
            response = client.get(
                "/publish/",
                {"key": key, "records": 5, "spawned": 5},
                headers={"X-Tenant-ID": tenant_id},
            )
            assert response.status_code == 200 and response.json()["tenant_id"] == tenant_id
    rows = wait_for(client_redis, key, 1000, worker)
    assert len(rows) == 1000
    mismatches = [r for r in rows if [r["tenant_id"], r["request_id"]] != r["expected"]]
    assert mismatches == []
    assert {r["tenant_id"] for r in rows} == set(twenty_tenants)
    assert len({r["request_id"] for r in rows}) == 100  # one per request
    assert all(r["request_id"] for r in rows)
    if worker["pool"] == "prefork":
        assert len({r["pid"] for r in rows}) > 1  # the work was spread over the children
    # The tasks' own log lines carry their context (the worker logs key=value lines).
    log = worker["log"].read_text()
    lines = [line for line in log.splitlines() if "recording" in line]
    for tenant_id in twenty_tenants:
        assert sum(f"tenant_id={tenant_id} " in f"{line} " for line in lines) == 50


def test_groups_chains_and_chords_from_requests_and_tasks_carry_the_context(
    worker, store, twenty_tenants, client
):
    from tests.celery_app import spawn_group

    client_redis, key = store
    for tenant_id in twenty_tenants[:4]:
        response = client.get(
            "/publish/", {"key": key, "group": 1}, headers={"X-Tenant-ID": tenant_id}
        )
        assert response.status_code == 200
        with tenancy.Context(request_id=str(uuid.uuid4())), tenancy.switch(tenant_id):
            spawn_group.delay(key, 3)
    # 4 tenants x (2 group + 2 chain) from requests, and x (3 group + 2 chain + 3 chord)
    # from tasks: the chain's second step and the chord's body are published by the worker.
    rows = wait_for(client_redis, key, 4 * 4 + 4 * 8, worker)
    assert [r for r in rows if [r["tenant_id"], r["request_id"]] != r["expected"]] == []
    assert {r["tenant_id"] for r in rows} == set(twenty_tenants[:4])


def test_a_task_for_a_tenant_deactivated_before_it_runs_is_refused(worker, store, db):
    from tests.celery_app import record

    client_redis, key = store
    tenant_id = f"gone-{uuid.uuid4().hex[:6]}"
    tenancy.register_tenant(tenant_id, "Gone")
    with tenancy.switch(tenant_id):
        result = record.apply_async((key, tenant_id, None), countdown=2)
    tenancy.deactivate_tenant(tenant_id)
    with pytest.raises(tenancy.TenantInactiveError):
        result.get(timeout=60)
    assert result.state == "FAILURE"
    assert client_redis.llen(key) == 0  # the body never ran
    assert "Refused a task: tenant_inactive" in worker["log"].read_text()


def test_a_raising_task_leaves_the_next_task_in_its_own_context(worker, store, twenty_tenants):
    from tests.celery_app import boom, probe, record

    client_redis, key = store
    failures = []
    for tenant_id in twenty_tenants[:10]:
        with tenancy.Context(request_id=str(uuid.uuid4())), tenancy.switch(tenant_id):
            failures += [boom.delay() for _ in range(4)]
        for _ in range(4):
            probe.delay(key)
    with tenancy.switch(twenty_tenants[0]):
        record.delay(key, twenty_tenants[0], None)
    rows = wait_for(client_redis, key, 41, worker)
    for result in failures:
        with pytest.raises(RuntimeError, match="boom"):
            result.get(timeout=60)
    probes = [r for r in rows if "variables" in r]
    assert len(probes) == 40
    assert [p for p in probes if p["variables"]] == []  # no tenant left behind by a failure
    (recorded,) = [r for r in rows if "variables" not in r]
    assert recorded["tenant_id"] == twenty_tenants[0] and recorded["request_id"] is None


def test_a_revoked_task_never_runs_and_binds_nothing(worker, store, twenty_tenants):
    from tests.celery_app import probe, record

    client_redis, key = store
    with tenancy.switch(twenty_tenants[1]):
        revoked = record.apply_async((key, twenty_tenants[1], None), countdown=3)
    revoked.revoke()
    for _ in range(8):
        probe.delay(key)
    rows = wait_for(client_redis, key, 8, worker)
    with pytest.raises(TaskRevokedError):
        revoked.get(timeout=60)
    assert revoked.state == "REVOKED"
    rows = [json.loads(row) for row in client_redis.lrange(key, 0, -1)]
    assert rows == [{"variables": {}}] * 8  # the record never ran; the probes saw no context
