"""tenancy.contrib.celery in this process: message headers, eager tasks, refusals, fan-out.

The real workers are in tests/test_celery_worker.py; here the app publishes to
Celery's in-memory broker, or runs tasks eagerly.
"""

from __future__ import annotations

import pytest
from celery import Celery
from celery.signals import before_task_publish

import tenancy
from tenancy.contrib import celery as tenancy_celery

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def app():
    app = Celery("test-eager", broker="memory://", backend="cache+memory://")
    app.conf.task_always_eager = True
    app.conf.task_store_eager_result = True
    tenancy_celery.setup(app)
    seen = []

    @app.task(name="t.seen", shared=False)
    def seen_task(note=None):
        import logging

        logging.getLogger("tests.celery").info("task ran %s", note)
        seen.append(tenancy.get_full_context())
        return tenancy.get_current_tenant_id()

    @app.task(name="t.retrying", bind=True, max_retries=2, shared=False)
    def retrying(self):
        seen.append(tenancy.get_full_context())
        if self.request.retries < 2:
            raise self.retry(countdown=0)
        return self.request.retries

    app.seen = seen
    return app


@pytest.fixture
def initech(db):
    tenancy.register_tenant("initech", "Initech")
    return tenancy.deactivate_tenant("initech")


def test_setup_makes_context_task_the_base(app):
    assert issubclass(app.tasks["t.seen"].__class__, tenancy_celery.ContextTask)
    assert "tenancy.for_each_active_tenant" in app.tasks


def test_a_published_message_carries_the_context_in_one_header(app, tenants):
    app.conf.task_always_eager = False
    captured = []

    def capture(headers=None, **kwargs):
        captured.append(dict(headers[tenancy_celery.HEADER]))

    before_task_publish.connect(capture, weak=False)
    try:
        with (
            tenancy.Context(request_id="request-0001", user_id=7, agent_id="agent_1"),
            tenancy.switch("acme"),
        ):
            app.tasks["t.seen"].delay()
            app.tasks["t.seen"].apply_async(("x",))
    finally:
        before_task_publish.disconnect(capture)
    expected = {
        "tenant_id": "acme",
        "request_id": "request-0001",
        "user_id": "7",
        "agent_id": "agent_1",
    }
    assert captured == [expected, expected]


def test_an_eager_task_runs_in_its_callers_context_and_logs_with_it(app, tenants, context_caplog):
    context_caplog.set_level("INFO", logger="tests.celery")
    with tenancy.Context(request_id="request-0002"), tenancy.switch("globex"):
        assert app.tasks["t.seen"].delay("hello").get() == "globex"
    assert app.seen == [{"tenant_id": "globex", "request_id": "request-0002"}]
    (line,) = [r for r in context_caplog.records if r.getMessage() == "task ran hello"]
    assert (line.tenant_id, line.request_id) == ("globex", "request-0002")
    assert tenancy.get_context() is None


def test_the_message_context_replaces_the_workers_and_is_restored_after(app, tenants):
    header = {tenancy_celery.HEADER: {"tenant_id": "acme", "request_id": "request-0003"}}
    with tenancy.Context(request_id="worker-0000", agent_id="worker_agent"):
        assert app.tasks["t.seen"].apply(headers=header).get() == "acme"
        assert tenancy.get_full_context() == {
            "request_id": "worker-0000",
            "agent_id": "worker_agent",
        }
    assert app.seen == [{"tenant_id": "acme", "request_id": "request-0003"}]


@pytest.mark.parametrize(
    ("tenant_id", "error"),
    [
        ("nobody", tenancy.TenantNotRegisteredError),
        ("initech", tenancy.TenantInactiveError),
        ("Bad Id\n", tenancy.InvalidTenantIdError),
    ],
)
def test_a_refused_tenant_fails_the_task_and_never_runs_it(
    app, tenants, initech, tenant_id, error, caplog
):
    caplog.set_level("INFO", logger="tenancy.celery")
    before = tenancy_celery.refused_tasks[error.code]
    result = app.tasks["t.seen"].apply(headers={tenancy_celery.HEADER: {"tenant_id": tenant_id}})
    assert result.failed()
    assert isinstance(result.result, error)
    assert app.seen == []
    assert tenancy_celery.refused_tasks[error.code] == before + 1
    assert f"Refused a task: {error.code}" in caplog.text
    assert "Bad Id\n" not in caplog.text
    assert tenancy.get_context() is None


def test_malformed_ids_are_left_out_not_bound(app, tenants):
    values = {"tenant_id": "acme", "request_id": "bad id\n", "agent_id": "no spaces please"}
    app.tasks["t.seen"].apply(headers={tenancy_celery.HEADER: values}).get()
    assert app.seen == [{"tenant_id": "acme"}]


def test_a_retried_task_runs_each_time_in_its_context(app, tenants):
    with tenancy.Context(request_id="request-0004"), tenancy.switch("acme"):
        assert app.tasks["t.retrying"].delay().get() == 2
    assert app.seen == [{"tenant_id": "acme", "request_id": "request-0004"}] * 3
    assert tenancy.get_context() is None


def test_a_task_called_directly_runs_in_the_callers_context(app, tenants):
    with tenancy.switch("acme"):
        assert app.tasks["t.seen"]() == "acme"
    assert app.tasks["t.seen"]() is None


def test_for_each_active_tenant_publishes_once_per_active_tenant(app, tenants, initech):
    results = tenancy_celery.for_each_active_tenant(app.tasks["t.seen"], "fan")
    assert [r.get() for r in results] == ["acme", "globex"]
    assert [c["tenant_id"] for c in app.seen] == ["acme", "globex"]
    assert tenancy.get_context() is None


def test_the_beat_task_fans_a_task_out_by_name(app, tenants, initech):
    app.tasks["tenancy.for_each_active_tenant"].delay("t.seen", "beat")
    assert sorted(c["tenant_id"] for c in app.seen) == ["acme", "globex"]
