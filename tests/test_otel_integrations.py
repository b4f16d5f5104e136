"""tenancy.otel in the Celery and Channels integrations: the task's or connection's span."""

from __future__ import annotations

import pytest
from celery import Celery
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tenancy
from tenancy import TenancyError, otel
from tenancy.contrib import celery as tenancy_celery
from tenancy.contrib.channels import CLOSE_CODE, TenantContextMiddleware

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tracer():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    tracer.exporter = exporter
    return tracer


@pytest.fixture
def app():
    app = Celery("test-otel", broker="memory://", backend="cache+memory://")
    app.conf.task_always_eager = True
    tenancy_celery.setup(app)

    @app.task(name="t.otel", shared=False)
    def traced():
        return tenancy.get_current_tenant_id()

    return app


def test_a_tasks_span_carries_its_tenant_and_request_id(app, tracer, tenants):
    # As opentelemetry-instrumentation-celery does: the task body runs inside its span.
    with tenancy.Context(tenant_id="acme", request_id="req-12345678", user_id=7):
        with tracer.start_as_current_span("run/t.otel"):
            assert app.tasks["t.otel"].delay().get() == "acme"
    (span,) = tracer.exporter.get_finished_spans()
    assert span.attributes["tenant.id"] == "acme"
    assert span.attributes["request.id"] == "req-12345678"
    assert span.attributes["enduser.id"] == "7"
    assert otel.DENIED_ATTRIBUTE not in span.attributes


def test_a_refused_tasks_span_carries_the_refusal_code(app, tracer, tenants):
    tenancy.deactivate_tenant("globex")
    with tenancy.Context(tenant_id="globex"), tracer.start_as_current_span("run/t.otel"):
        with pytest.raises(TenancyError):
            app.tasks["t.otel"].delay().get()
    (span,) = tracer.exporter.get_finished_spans()
    assert span.attributes[otel.DENIED_ATTRIBUTE] == "tenant_inactive"
    assert span.attributes["tenant.id"] == "globex"


class Echo(AsyncJsonWebsocketConsumer):
    async def connect(self):
        await self.accept()
        await self.send_json({"tenant_id": tenancy.get_current_tenant_id()})


def application(tracer):
    """The router behind the tenancy middleware, in a span per connection (as OTel's ASGI
    instrumentation wraps an application)."""
    inner = TenantContextMiddleware(URLRouter([path("ws/", Echo.as_asgi())]))

    async def traced(scope, receive, send):
        with tracer.start_as_current_span(f"websocket {scope['path']}"):
            return await inner(scope, receive, send)

    return traced


async def test_a_connections_span_carries_its_tenant(tracer, tenants):
    communicator = WebsocketCommunicator(
        application(tracer), "/ws/", headers=[(b"x-tenant-id", b"acme")]
    )
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_json_from() == {"tenant_id": "acme"}
    await communicator.disconnect()
    (span,) = tracer.exporter.get_finished_spans()
    assert span.attributes["tenant.id"] == "acme"
    assert len(span.attributes["request.id"]) == 36


async def test_a_refused_connections_span_carries_the_refusal_code(tracer, tenants):
    communicator = WebsocketCommunicator(
        application(tracer), "/ws/", headers=[(b"x-tenant-id", b"../etc")]
    )
    connected, _ = await communicator.connect()
    assert connected  # accepted, then closed with the tenancy close code
    assert (await communicator.receive_output())["code"] == CLOSE_CODE
    await communicator.wait()
    (span,) = tracer.exporter.get_finished_spans()
    assert span.attributes[otel.DENIED_ATTRIBUTE] == "invalid_tenant_id"
    assert "tenant.id" not in span.attributes  # a malformed id never reaches the span
