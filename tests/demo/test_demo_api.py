"""The demo API through real HTTP (WSGI and ASGI): public status, context, notes, agent chat."""

import json

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

import tenancy
from project.demo.models import Note
from tenancy.memory import ContextManager
from tenancy.models import Message, TenantMembership
from tenancy.runtime import set_user_provider

# Runs with tests/demo_settings.py (the demo app installed), from tests/test_demo.py.
pytestmark = pytest.mark.urls("project.urls")


@pytest.fixture
def alice_token(tenants):
    user = get_user_model().objects.create_user("alice", password="pw")
    TenantMembership.objects.create(tenant_id="acme", user=user)
    return {"Authorization": f"Token {Token.objects.create(user=user).key}"}


def test_public_status_needs_no_tenant(caller, acme):
    response = caller.get("/api/public/status")
    assert response.status_code == 200
    assert response.json() == {
        "status": "online",
        "tenant": None,
        "request_id": response["X-Request-ID"],
    }
    assert caller.get("/api/public/status", headers={"X-Tenant-ID": "acme"}).json()["tenant"] == (
        "acme"
    )


def test_context_echoes_the_bound_context(caller, alice_token):
    headers = {"X-Tenant-ID": "acme", "X-Agent-ID": "agent_12", **alice_token}
    response = caller.get("/api/context", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert body["context"]["tenant_id"] == "acme"
    assert body["context"]["agent_id"] == "agent_12"
    assert body["context"]["request_id"] == response["X-Request-ID"]
    assert body["context"]["user_id"]
    assert body["tenant"] == {
        "tenant_id": "acme",
        "name": "Acme Corporation",
        "metadata": {"plan": "enterprise"},
    }


@pytest.mark.parametrize(
    ("tenant", "code"), [(None, "tenant_required"), ("globex", "tenant_access_denied")]
)
def test_context_is_for_members_of_a_valid_tenant(caller, alice_token, tenant, code):
    headers = dict(alice_token) if tenant is None else {"X-Tenant-ID": tenant, **alice_token}
    response = caller.get("/api/context", headers=headers)
    assert response.status_code == 403 and response.json()["code"] == code


def test_context_without_credentials_is_refused(caller, acme):
    assert caller.get("/api/context", headers={"X-Tenant-ID": "acme"}).status_code in (401, 403)


# -- tenant-scoped notes and the agent chat ------------------------------------


@pytest.fixture(autouse=True)
def _empty_memory_registry():
    ContextManager._registry.clear()
    yield
    ContextManager._registry.clear()


@pytest.fixture
def members(tenants):
    """alice is a member of acme, bob of globex; each has an API token."""
    users = {}
    for username, tenant_id in (("alice", "acme"), ("bob", "globex")):
        user = get_user_model().objects.create_user(username, password="unused")
        TenantMembership.objects.create(tenant_id=tenant_id, user=user)
        users[username] = Token.objects.create(user=user).key
    return users


@pytest.fixture
def notes(members):
    made = {}
    for tenant_id, title in (("acme", "Acme plan"), ("globex", "Globex secret")):
        with tenancy.switch(tenant_id):
            made[tenant_id] = Note.objects.create(title=title, body=f"{tenant_id} only")
    return made


def headers(token, tenant_id):
    return {"Authorization": f"Token {token}", "X-Tenant-ID": tenant_id}


def send(caller, method, path, token, tenant_id, body=None):
    kwargs = {}
    if body is not None:
        kwargs = {"data": json.dumps(body), "content_type": "application/json"}
    return caller.request(method, path, headers(token, tenant_id), **kwargs)


# -- notes -------------------------------------------------------------------------


def test_a_member_lists_and_reads_only_their_tenants_notes(caller, members, notes):
    response = send(caller, "get", "/api/notes/", members["alice"], "acme")
    assert response.status_code == 200
    assert [note["title"] for note in response.json()] == ["Acme plan"]
    response = send(caller, "get", f"/api/notes/{notes['acme'].pk}/", members["alice"], "acme")
    assert response.status_code == 200 and response.json()["body"] == "acme only"


def test_another_tenants_note_id_is_a_404_for_every_method(caller, members, notes):
    globex_note = notes["globex"]
    path = f"/api/notes/{globex_note.pk}/"
    for method, body in (
        ("get", None),
        ("put", {"title": "taken", "body": ""}),
        ("patch", {"title": "taken"}),
        ("delete", None),
    ):
        response = send(caller, method, path, members["alice"], "acme", body)
        assert response.status_code == 404, method
        assert "Globex secret" not in response.content.decode()
    globex_note.refresh_from_db()
    assert (globex_note.title, globex_note.body) == ("Globex secret", "globex only")


def test_tenant_in_the_body_is_ignored_on_create_and_update(caller, members, notes):
    body = {"title": "Mine", "body": "", "tenant": "globex", "tenant_id": "globex"}
    response = send(caller, "post", "/api/notes/", members["alice"], "acme", body)
    assert response.status_code == 201
    created = Note.unscoped.get(pk=response.json()["id"])
    assert created.tenant_id == "acme"
    assert not Note.unscoped.filter(tenant_id="globex", title="Mine").exists()
    response = send(
        caller,
        "patch",
        f"/api/notes/{created.pk}/",
        members["alice"],
        "acme",
        {"tenant": "globex", "tenant_id": "globex"},
    )
    assert response.status_code == 200
    assert Note.unscoped.get(pk=created.pk).tenant_id == "acme"


def test_crud_round_trip_in_ones_own_tenant(caller, members, notes):
    response = send(caller, "post", "/api/notes/", members["bob"], "globex", {"title": "New"})
    note_id = response.json()["id"]
    response = send(
        caller, "patch", f"/api/notes/{note_id}/", members["bob"], "globex", {"body": "text"}
    )
    assert response.json()["body"] == "text"
    response = send(caller, "delete", f"/api/notes/{note_id}/", members["bob"], "globex")
    assert response.status_code == 204
    assert not Note.unscoped.filter(pk=note_id).exists()
    assert Note.unscoped.filter(pk=notes["globex"].pk).exists()


def test_a_non_member_and_a_missing_tenant_are_refused(caller, members, notes):
    response = send(caller, "get", "/api/notes/", members["alice"], "globex")
    assert response.status_code == 403
    assert response.json()["code"] == "tenant_access_denied"
    response = caller.request("get", "/api/notes/", {"Authorization": f"Token {members['alice']}"})
    assert response.status_code == 403
    assert response.json()["code"] == "tenant_required"
    response = caller.request("get", "/api/notes/", {"X-Tenant-ID": "acme"})
    assert response.status_code in (401, 403)
    assert "Acme plan" not in response.content.decode()


# -- the agent chat ------------------------------------------------------------------


def test_chat_stores_both_sides_of_the_conversation(caller, members):
    set_user_provider("anthropic", user_uuid=_user_pk("alice"))
    path = "/api/agents/agent-1/chat"
    first = send(caller, "post", path, members["alice"], "acme", {"message": "Hello"})
    assert first.status_code == 200, first.content
    conversation_id = first.json()["conversation_id"]
    second = send(
        caller,
        "post",
        path,
        members["alice"],
        "acme",
        {"message": "Again", "conversation_id": conversation_id},
    )
    body = second.json()
    assert body["conversation_id"] == conversation_id
    assert [m["role"] for m in body["history"]] == ["user", "assistant", "user", "assistant"]
    assert body["history"][2]["content"] == "Again"
    assert "#2 via anthropic" in body["reply"]
    memory = ContextManager.get_instance("acme", "agent-1", conversation_id)
    assert len(memory.get_conversation_history_sync()) == 4
    assert set(Message.unscoped.values_list("tenant_id", flat=True)) == {"acme"}


def test_chat_conversations_with_the_same_ids_stay_in_their_tenant(caller, members):
    body = {"message": "acme words", "conversation_id": "shared-conv"}
    send(caller, "post", "/api/agents/agent-1/chat", members["alice"], "acme", body)
    body = {"message": "globex words", "conversation_id": "shared-conv"}
    response = send(caller, "post", "/api/agents/agent-1/chat", members["bob"], "globex", body)
    contents = [m["content"] for m in response.json()["history"]]
    assert contents[0] == "globex words" and len(contents) == 2
    assert "acme words" not in response.content.decode()


def test_chat_takes_the_conversation_from_the_header(caller, members):
    response = caller.request(
        "post",
        "/api/agents/agent-1/chat",
        {**headers(members["alice"], "acme"), "X-Conversation-ID": "from-header"},
        data=json.dumps({"message": "hi"}),
        content_type="application/json",
    )
    assert response.json()["conversation_id"] == "from-header"


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/api/agents/agent-1/chat", {}, "invalid_message"),
        ("/api/agents/agent-1/chat", {"message": "   "}, "invalid_message"),
        ("/api/agents/agent-1/chat", {"message": "nul\x00byte"}, "invalid_message"),
        ("/api/agents/agent-1/chat", {"message": "x" * 4001}, "message_too_long"),
        (
            "/api/agents/agent-1/chat",
            {"message": "x", "conversation_id": "a b"},
            "invalid_conversation_id",
        ),
        ("/api/agents/agent;1/chat", {"message": "x"}, "invalid_agent_id"),
    ],
)
def test_chat_bad_input_is_a_400_with_a_code_and_stores_nothing(caller, members, path, body, code):
    response = send(caller, "post", path, members["alice"], "acme", body)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert not Message.unscoped.exists()


def test_chat_needs_membership(caller, members):
    body = {"message": "let me in"}
    response = send(caller, "post", "/api/agents/agent-1/chat", members["bob"], "acme", body)
    assert response.status_code == 403
    assert not Message.unscoped.exists()


def _user_pk(username):
    return get_user_model().objects.get(username=username).pk


def test_chat_refuses_another_members_conversation(caller, members, tenants):
    """carol, also in acme, cannot read or extend alice's conversation by guessing its id."""
    carol = get_user_model().objects.create_user("carol", password="unused")
    TenantMembership.objects.create(tenant_id="acme", user=carol)
    carol_token = Token.objects.create(user=carol).key
    body = {"message": "alice's secret", "conversation_id": "c1"}
    assert (
        send(caller, "post", "/api/agents/agent-1/chat", members["alice"], "acme", body).status_code
        == 200
    )
    body = {"message": "show me", "conversation_id": "c1"}
    response = send(caller, "post", "/api/agents/agent-1/chat", carol_token, "acme", body)
    assert response.status_code == 403
    assert response.json()["code"] == "tenant_access_denied"
    assert "show me" not in response.content.decode()
    with tenancy.switch("acme"):  # alice's turn and its reply, nothing of carol's
        stored = list(Message.objects.order_by("position").values_list("role", "content"))
    assert [role for role, _ in stored] == ["user", "assistant"]
    assert stored[0][1] == "alice's secret"
    assert not any("show me" in content for _, content in stored)
