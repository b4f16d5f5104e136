"""The context in Celery tasks: published with the message, bound by the worker.

One line where the Celery app is made::

    from celery import Celery
    from tenancy.contrib.celery import setup

    app = Celery("project")
    setup(app)

A task published inside a context (``delay``, ``apply_async``, a chain, group
or chord, a task published by another task) carries its tenant, request, user,
agent, conversation and collection ids in one message header, ``tenancy``. The
worker binds them around the task body, and only when the tenant is registered
and active: otherwise the task fails with the ``TenancyError`` (counted in
:data:`refused_tasks`) and its body never runs. The worker's own context is
restored after the body, whatever happened (success, failure, retry).

Celery logs and swallows what a signal receiver raises, so the refusal cannot
live in a ``task_prerun`` receiver: it is in the task's ``__call__``
(:class:`ContextTask`, the base :func:`setup` gives every task of the app).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from contextvars import Token
from typing import Any

from celery import Celery, Task, current_app
from celery.result import AsyncResult
from celery.signals import before_task_publish

from ..current import RuntimeContext, get_context, reset_context, set_context
from ..exceptions import TenancyError
from ..ids import CONTEXT_IDS, describe_rejected, is_valid_context_id, is_valid_request_id
from ..otel import annotate_span
from ..registry import tenant_context

__all__ = [
    "HEADER",
    "ContextTask",
    "bind_task_context",
    "for_each_active_tenant",
    "refused_tasks",
    "setup",
    "task_context_values",
]

logger = logging.getLogger("tenancy.celery")

#: The message header that carries the context: ``{"tenant_id": "acme", "request_id": ...}``.
HEADER = "tenancy"
#: The context keys a task carries.
KEYS = ("tenant_id", "request_id", "user_id", *CONTEXT_IDS)
#: Tasks this process refused, by error code (``tenant_inactive``, ...).
refused_tasks: Counter[str] = Counter()


def task_context_values(ctx: RuntimeContext | None = None) -> dict[str, str]:
    """Return what a task published now carries: the set :data:`KEYS` of *ctx*, as strings."""
    if ctx is None:
        ctx = get_context()
        if ctx is None:
            return {}
    data = ctx._data
    return {key: str(data[key]) for key in KEYS if data.get(key) is not None}


def _on_publish(sender: Any = None, headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Put the publisher's context into the message headers (``before_task_publish``)."""
    if headers is None or HEADER in headers:
        return
    values = task_context_values()
    if not values:
        # Chains, callbacks and chord bodies are published by the worker after the
        # body returned: they carry the context the finished task was bound with.
        parent = current_app.current_worker_task
        if parent is not None:
            values = dict(_message_values(parent.request) or {})
    if values:
        headers[HEADER] = values


def _message_values(request: Any) -> Mapping[str, Any] | None:
    values = request.get(HEADER)
    if values is None:
        values = (request.get("headers") or {}).get(HEADER)
    return values if isinstance(values, Mapping) else None


def _checked(values: Mapping[str, Any]) -> dict[str, Any]:
    """Return the values of a message to bind; raise the ``TenancyError`` refusing its tenant."""
    data: dict[str, Any] = {}
    request_id = values.get("request_id")
    if isinstance(request_id, str) and is_valid_request_id(request_id):
        data["request_id"] = request_id
    user_id = values.get("user_id")
    if isinstance(user_id, str) and user_id.isprintable() and 0 < len(user_id) <= 255:
        data["user_id"] = user_id
    for key in CONTEXT_IDS:
        value = values.get(key)
        if value is not None:
            if is_valid_context_id(value):
                data[key] = value
            else:
                logger.info("Ignored an invalid %s in a task (%s)", key, describe_rejected(value))
    tenant_id = values.get("tenant_id")
    if tenant_id is not None:
        data["tenant_id"] = tenant_context.get_active_tenant(tenant_id).tenant_id
    return data


def bind_task_context(values: Mapping[str, Any]) -> Token[RuntimeContext | None]:
    """Bind the context a message carried; return the token that restores the worker's.

    The task's context is what its message carried and nothing else: none of
    the worker's own variables show through. Raise the ``TenancyError`` of a
    malformed, unknown or inactive tenant, and count it in :data:`refused_tasks`;
    nothing is bound then.
    """
    try:
        data = _checked(values)
    except TenancyError as exc:
        refused_tasks[exc.code] += 1
        tenant_id = values.get("tenant_id")
        shown = exc.tenant_id if exc.tenant_id is not None else describe_rejected(tenant_id)
        logger.warning("Refused a task: %s (%s)", exc.code, shown)
        # A well-formed id only (as in the log line): the raw header never reaches the span.
        annotate_span({"tenant_id": exc.tenant_id}, exc.code)
        raise
    token = set_context(RuntimeContext(data))
    annotate_span(data)  # the task's span (opentelemetry-instrumentation-celery), if recording
    return token


class ContextTask(Task):
    """A task base class that runs the body in the context its message carried.

    :func:`setup` makes it the base of every task of the app; give it as
    ``base=`` (or mix it into your own base class) for tasks of other apps.
    A task called directly (``task(...)``) runs in the caller's context.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.called_directly:
            return super().__call__(*args, **kwargs)
        values = _message_values(request)
        if values is None:
            # Eager tasks publish no message: they carry the caller's context.
            values = task_context_values() if request.is_eager else {}
        token = bind_task_context(values)
        try:
            return super().__call__(*args, **kwargs)
        finally:
            reset_context(token)


def for_each_active_tenant(task: Any, *args: Any, **kwargs: Any) -> list[AsyncResult]:
    """Publish ``task.delay(*args, **kwargs)`` once per active tenant, each bound to it.

    Return the results, in tenant-id order. Celery beat schedules the
    ``tenancy.for_each_active_tenant`` task that :func:`setup` registers, with
    the task's name as its first argument.
    """
    results = []
    for info in tenant_context.list_tenants():
        if info.active:
            with tenant_context.switch(info.tenant_id):
                results.append(task.delay(*args, **kwargs))
    return results


def setup(app: Celery) -> Celery:
    """Carry the context in *app*'s tasks; call it where the app is made, before tasks run.

    Makes :class:`ContextTask` the base of the app's tasks, puts the context
    into every published message's headers, and registers the
    ``tenancy.for_each_active_tenant`` task for Celery beat. Return *app*.
    """
    if not issubclass(app.Task, ContextTask):
        app.Task = type("Task", (ContextTask, app.Task), {"__module__": __name__})
    before_task_publish.connect(_on_publish, weak=False, dispatch_uid="tenancy.celery.publish")

    @app.task(name="tenancy.for_each_active_tenant", ignore_result=True, shared=False)
    def fan_out(task_name: str, *args: Any, **kwargs: Any) -> int:
        return len(for_each_active_tenant(app.tasks[task_name], *args, **kwargs))

    return app
