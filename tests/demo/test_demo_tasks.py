"""The demo's Celery task (eager) and its ``/ws/context/`` websocket, in the request's context."""

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

import tenancy
from project.demo.models import Note
from tenancy.contrib.channels import CLOSE_CODE
from tenancy.models import TenantMembership

# Runs with tests/demo_settings.py (the demo app installed), from tests/test_demo.py.
pytestmark = pytest.mark.urls("project.urls")


@pytest.fixture
def alice(tenants):
    user = get_user_model().objects.create_user("alice", password="pw")
    TenantMembership.objects.create(tenant_id="acme", user=user)
    with tenancy.switch("acme"):
        Note.objects.create(title="Acme plan", body="acme only")
    with tenancy.switch("globex"):
        Note.objects.create(title="Globex secret", body="globex only")
    return {"Authorization": f"Token {Token.objects.create(user=user).key}", "user": user}


def test_the_demo_task_runs_in_the_requests_context(client, alice):
    response = client.post(
        "/api/tasks/context-report",
        headers={"Authorization": alice["Authorization"], "X-Tenant-ID": "acme"},
    )
    assert response.status_code == 200, response.content
    result = response.json()["result"]
    assert result["notes"] == 1  # acme's note only
    assert result["context"] == {
        "tenant_id": "acme",
        "request_id": response["X-Request-ID"],
        "user_id": str(alice["user"].pk),
    }


def test_the_demo_task_needs_a_tenant(client, alice):
    response = client.post("/api/tasks/context-report", headers={"X-Tenant-ID": "nobody"})
    assert response.status_code in (401, 403)


@pytest.mark.django_db(transaction=True)
async def test_the_websocket_echoes_the_connections_context(tenants, close_async_connections):
    from project.asgi import application

    communicator = WebsocketCommunicator(
        application,
        "/ws/context/",
        headers=[(b"x-tenant-id", b"globex"), (b"x-request-id", b"demo-request-0001")],
    )
    assert (await communicator.connect(timeout=30))[0]
    hello = await communicator.receive_json_from(timeout=30)
    assert hello == {"context": {"tenant_id": "globex", "request_id": "demo-request-0001"}}
    await communicator.send_json_to({"say": "hi"})
    reply = await communicator.receive_json_from(timeout=30)
    assert reply == {"echo": {"say": "hi"}, "context": hello["context"]}
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_the_websocket_refuses_an_unknown_tenant(tenants, close_async_connections):
    from project.asgi import application

    communicator = WebsocketCommunicator(
        application, "/ws/context/", headers=[(b"x-tenant-id", b"nobody")]
    )
    assert (await communicator.connect(timeout=30))[0]
    closed = await communicator.receive_output(timeout=30)
    assert closed["code"] == CLOSE_CODE
    assert closed["reason"] == "tenant_not_registered"
