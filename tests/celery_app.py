"""The Celery app, tasks and views of tests/test_celery_worker.py.

The workers the tests start import this module (``celery -A tests.celery_app``)
with ``tests.server_settings``; the test process imports it with the test
settings and publishes to the same broker and queue (``TENANCY_TEST_BROKER``,
``TENANCY_TEST_QUEUE``). Each task writes what it saw into a Redis list, so the
test reads back every task's tenant and request id.
"""

from __future__ import annotations

import json
import logging
import os

import redis
from celery import Celery, chord, group
from django.http import JsonResponse
from django.urls import path

import tenancy
from tenancy.contrib.celery import setup

logger = logging.getLogger("tests.celery")

BROKER = os.environ.get("TENANCY_TEST_BROKER", "memory://")

app = Celery("tests")
app.conf.update(
    broker_url=BROKER,
    result_backend=BROKER if BROKER.startswith("redis") else "cache+memory://",
    task_default_queue=os.environ.get("TENANCY_TEST_QUEUE", "tenancy-tests"),
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    result_expires=600,
)
setup(app)


def _store() -> redis.Redis:
    return redis.Redis.from_url(BROKER)


def _seen() -> dict:
    return {
        "tenant_id": tenancy.get_current_tenant_id(),
        "request_id": tenancy.get_current_request_id(),
        "pid": os.getpid(),
    }


@app.task(name="tests.record")
def record(key, expected_tenant, expected_request):
    """Write what this task sees, and what its publisher had bound, into the list *key*."""
    seen = _seen()
    logger.info("recording")
    _store().rpush(key, json.dumps({**seen, "expected": [expected_tenant, expected_request]}))
    return seen["tenant_id"]


@app.task(name="tests.spawn")
def spawn(key, count):
    """Publish *count* ``record`` tasks from inside this task, in the context it was given."""
    for _ in range(count):
        record.delay(key, tenancy.get_current_tenant_id(), tenancy.get_current_request_id())


@app.task(name="tests.spawn_group")
def spawn_group(key, count):
    """Publish a group, a chain and a chord from inside this task."""
    tenant, request_id = tenancy.get_current_tenant_id(), tenancy.get_current_request_id()
    group(record.s(key, tenant, request_id) for _ in range(count)).delay()
    (record.si(key, tenant, request_id) | record.si(key, tenant, request_id)).delay()
    chord(record.si(key, tenant, request_id) for _ in range(2))(record.si(key, tenant, request_id))


@app.task(name="tests.boom")
def boom():
    raise RuntimeError("boom")


@app.task(name="tests.probe")
def probe(key):
    """Record the context a task published with no context runs in (it must be empty)."""
    ctx = tenancy.get_context()
    _store().rpush(key, json.dumps({"variables": dict(ctx.variables) if ctx else {}}))


def publish(request):
    """Publish from a request handler: records, a spawning task, a group and a chain."""
    key = request.GET["key"]
    records, spawned = int(request.GET.get("records", 0)), int(request.GET.get("spawned", 0))
    tenant, request_id = tenancy.get_current_tenant_id(), tenancy.get_current_request_id()
    for _ in range(records):
        record.delay(key, tenant, request_id)
    if spawned:
        spawn.apply_async((key, spawned))
    if request.GET.get("group"):
        group(record.s(key, tenant, request_id) for _ in range(2)).apply_async()
        (record.si(key, tenant, request_id) | record.si(key, tenant, request_id)).delay()
    return JsonResponse({"tenant_id": tenant, "request_id": request_id})


urlpatterns = [path("publish/", publish)]
