"""tenancy.contrib.channels: each websocket connection runs in its own tenant, bad ones are closed.

Real Channels consumers (async and sync) behind ``TenantContextMiddleware`` and
``URLRouter``, driven by ``WebsocketCommunicator``: 200 connections at once over
10 tenants, each seeing its own tenant and request id only.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer, WebsocketConsumer
from channels.routing import URLRouter
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.urls import path

import tenancy
from tenancy.contrib.channels import CLOSE_CODE, TenantContextMiddleware

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 60


def seen():
    return {
        "tenant_id": tenancy.get_current_tenant_id(),
        "request_id": tenancy.get_current_request_id(),
        "agent_id": tenancy.get_current_agent_id(),
    }


class AsyncEcho(AsyncJsonWebsocketConsumer):
    async def connect(self):
        await self.accept()
        await self.send_json({"on": "connect", **seen()})

    async def receive_json(self, content):
        await asyncio.sleep(0)  # let the other connections run in between
        await self.send_json({"on": content["n"], **seen()})


class SyncEcho(WebsocketConsumer):
    def connect(self):
        self.accept()
        self.send(text_data=json.dumps({"on": "connect", **seen()}))

    def receive(self, text_data=None, bytes_data=None):
        from tests.testapp.models import Project

        n = json.loads(text_data)["n"]
        self.send(text_data=json.dumps({"on": n, "projects": Project.objects.count(), **seen()}))


class HttpEcho(AsyncHttpConsumer):
    async def handle(self, body):
        tenant = self.scope["tenant"]
        payload = {"scope_tenant": tenant.tenant_id if tenant else None, **seen()}
        await self.send_response(200, json.dumps(payload).encode())


application = TenantContextMiddleware(
    URLRouter(
        [
            path("ws/async/", AsyncEcho.as_asgi()),
            path("ws/sync/", SyncEcho.as_asgi()),
            path("http/", HttpEcho.as_asgi()),
        ]
    )
)


def headers(tenant_id=None, request_id=None, **extra):
    pairs = [(b"host", b"testserver")]
    if tenant_id is not None:
        pairs.append((b"x-tenant-id", tenant_id.encode()))
    if request_id is not None:
        pairs.append((b"x-request-id", request_id.encode()))
    pairs += [(name.encode(), value.encode()) for name, value in extra.items()]
    return pairs


@pytest.fixture
def ten_tenants(db):
    from tests.testapp.models import Project

    ids = [f"ws-{n}" for n in range(10)]
    for n, tenant_id in enumerate(ids):
        tenancy.register_tenant(tenant_id, f"Tenant {n}")
        with tenancy.switch(tenant_id):
            Project.objects.bulk_create([Project(name=f"p{i}") for i in range(n)])
    return ids


async def converse(route, tenant_id, messages=3):
    request_id = str(uuid.uuid4())
    communicator = WebsocketCommunicator(
        application, route, headers=headers(tenant_id, request_id, **{"x-agent-id": "agent_7"})
    )
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    replies = [await communicator.receive_json_from(timeout=TIMEOUT)]
    for n in range(messages):
        await communicator.send_json_to({"n": n})
        replies.append(await communicator.receive_json_from(timeout=TIMEOUT))
    await communicator.disconnect(timeout=TIMEOUT)
    return tenant_id, request_id, replies


async def test_two_hundred_concurrent_connections_each_see_their_own_tenant(
    ten_tenants, close_async_connections
):
    jobs = [
        converse("/ws/async/" if n % 2 else "/ws/sync/", ten_tenants[n % 10]) for n in range(200)
    ]
    results = await asyncio.gather(*jobs)
    assert len(results) == 200
    wrong = []
    for tenant_id, request_id, replies in results:
        assert [r["on"] for r in replies] == ["connect", 0, 1, 2]
        for reply in replies:
            if (reply["tenant_id"], reply["request_id"], reply["agent_id"]) != (
                tenant_id,
                request_id,
                "agent_7",
            ):
                wrong.append(reply)
            if "projects" in reply:  # the sync consumer's scoped query: its tenant's rows only
                assert reply["projects"] == ten_tenants.index(tenant_id)
    assert wrong == []
    assert tenancy.get_context() is None


@pytest.fixture
def initech(db):
    tenancy.register_tenant("initech", "Initech")
    return tenancy.deactivate_tenant("initech")


@pytest.mark.parametrize("route", ["/ws/async/", "/ws/sync/"])
@pytest.mark.parametrize(
    ("tenant_id", "code"),
    [
        ("nobody", "tenant_not_registered"),
        ("initech", "tenant_inactive"),
        ("Not An Id", "invalid_tenant_id"),
    ],
)
async def test_a_bad_tenant_closes_the_connection_with_4403(
    initech, close_async_connections, route, tenant_id, code, caplog
):
    caplog.set_level("INFO", logger="tenancy.middleware")
    communicator = WebsocketCommunicator(application, route, headers=headers(tenant_id))
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected  # accepted, so that the close code reaches the client
    closed = await communicator.receive_output(timeout=TIMEOUT)
    assert closed == {"type": "websocket.close", "code": CLOSE_CODE, "reason": code}
    await communicator.wait()
    assert f"Refused a tenant claim: {code}" in caplog.text
    assert "Not An Id" not in caplog.text
    assert tenancy.get_context() is None


async def test_no_tenant_claim_connects_without_a_tenant(db, close_async_connections):
    _, _, replies = await converse("/ws/async/", None, messages=1)
    assert {r["tenant_id"] for r in replies} == {None}
    assert all(r["request_id"] for r in replies)


async def test_a_logged_in_member_of_one_tenant_needs_no_header(
    tenants, settings, close_async_connections
):
    from django.contrib.auth import get_user_model

    from tenancy.models import TenantMembership

    settings.TENANCY = {
        **settings.TENANCY,
        "RESOLVERS": ["tenancy.resolvers.HeaderResolver", "tenancy.resolvers.MembershipResolver"],
    }

    @sync_to_async
    def make_user():
        user = get_user_model().objects.create_user("alice", password="pw")
        TenantMembership.objects.create(tenant_id="globex", user=user)
        return user

    user = await make_user()

    async def with_user(scope, receive, send):
        return await application({**scope, "user": user}, receive, send)

    communicator = WebsocketCommunicator(with_user, "/ws/async/", headers=headers())
    assert (await communicator.connect(timeout=TIMEOUT))[0]
    hello = await communicator.receive_json_from(timeout=TIMEOUT)
    assert hello["tenant_id"] == "globex"
    await communicator.disconnect()


async def test_an_http_connection_is_bound_or_refused_with_json(initech, close_async_connections):
    ok = await HttpCommunicator(
        application, "GET", "/http/", headers=headers("initech")
    ).get_response(timeout=TIMEOUT)
    assert ok["status"] == 403
    assert json.loads(ok["body"])["code"] == "tenant_inactive"
    await sync_to_async(tenancy.activate_tenant)("initech")
    response = await HttpCommunicator(
        application, "GET", "/http/", headers=headers("initech")
    ).get_response(timeout=TIMEOUT)
    assert response["status"] == 200
    body = json.loads(response["body"])
    assert body["scope_tenant"] == body["tenant_id"] == "initech"
