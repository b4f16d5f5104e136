"""unregister_tenant() removes everything the tenant owned: an id registered again starts empty.

Memberships, runtime settings (stored and live), conversation memory, statistics
buckets and pending counts, and the cached state of each. The refusal while rows
of the application's own scoped models exist stays, and deletes nothing.
"""

import pytest
from django.contrib.auth import get_user_model

import tenancy
from tenancy import runtime, signals
from tenancy.exceptions import TenantHasDataError
from tenancy.membership import is_member
from tenancy.memory import ContextManager
from tenancy.models import (
    Conversation,
    ConversationCollection,
    Message,
    TenantMembership,
    TenantStatsBucket,
    UserRuntimeContext,
)
from tenancy.stats.counters import counters
from tenancy.stats.flush import flush_stats

TENANTS = ("acme", "globex")


def give_everything(tenant_id, user):
    """Every kind of state the package keeps for a tenant, for *user*."""
    TenantMembership.objects.create(tenant_id=tenant_id, user=user)
    assert is_member(tenant_id, user.pk)  # cached
    with tenancy.switch(tenant_id):
        runtime.set_user_provider(f"{tenant_id}-provider", user.pk)
        runtime.set_user_llm_instance(object(), user.pk)
        memory = ContextManager.get_instance(tenant_id, "agent", "conv-1")
        memory.add_message_sync({"role": "user", "content": f"secret of {tenant_id}"})
        memory.register_collection_sync("docs")
    flush_stats()  # a bucket in the database...
    with tenancy.switch(tenant_id):
        pass  # ...and a count still pending


def state_of(tenant_id, user):
    """What a caller can find of *tenant_id* and *user* in it, read as the package reads it."""
    with tenancy.switch(tenant_id):
        memory = ContextManager.get_instance(tenant_id, "agent", "conv-1")
        return {
            "member": is_member(tenant_id, user.pk),
            "provider": runtime.get_user_provider(user.pk),
            "llm": runtime.get_user_llm_instance(user.pk) is not None,
            "history": [m["content"] for m in memory.get_conversation_history_sync()],
            "collections": memory.get_collections_sync(),
            "buckets": TenantStatsBucket.objects.filter(tenant_id=tenant_id).count(),
            "pending": sum(1 for key in counters.peek_pending() if key[0] == tenant_id),
        }


def rows_of(tenant_id):
    return {
        "memberships": TenantMembership.objects.filter(tenant_id=tenant_id).count(),
        "settings": UserRuntimeContext.objects.filter(scope=tenant_id).count(),
        "conversations": Conversation.unscoped.filter(tenant_id=tenant_id).count(),
        "messages": Message.unscoped.filter(tenant_id=tenant_id).count(),
        "collections": ConversationCollection.unscoped.filter(tenant_id=tenant_id).count(),
        "buckets": TenantStatsBucket.objects.filter(tenant_id=tenant_id).count(),
    }


NOTHING = dict.fromkeys(
    ["memberships", "settings", "conversations", "messages", "collections", "buckets"], 0
)


@pytest.fixture
def user(transactional_db):
    user = get_user_model().objects.create_user("alice", password="pw")
    runtime.set_user_provider("global-provider", user.pk)  # outside any tenant: stays
    yield user
    ContextManager._registry.clear()
    runtime._live.clear()
    counters.take_pending()


@pytest.fixture
def populated(user):
    for tenant_id in TENANTS:
        tenancy.register_tenant(tenant_id, tenant_id.title())
        give_everything(tenant_id, user)
    return user


def test_a_tenant_registered_again_starts_empty(populated):
    user = populated
    before = state_of("acme", user)
    assert before["member"] and before["provider"] == "acme-provider" and before["llm"]
    assert before["history"] == ["secret of acme"] and before["collections"] == ["docs"]
    assert before["buckets"] == 1 and before["pending"] == 1
    globex_rows = rows_of("globex")

    tenancy.unregister_tenant("acme")

    assert rows_of("acme") == NOTHING
    assert not any(key[0] == "acme" for key in ContextManager._registry)
    assert not any(slot[1] == "acme" for slot in runtime._live)
    assert not any(key[0] == "acme" for key in counters.peek_pending())
    tenancy.register_tenant("acme", "Acme again")
    flush_stats()
    assert state_of("acme", user) == {
        "member": False,
        "provider": "global-provider",  # the user's global scope, not the old tenant's
        "llm": False,
        "history": [],
        "collections": [],
        "buckets": 0,
        "pending": 1,  # the switch of state_of() itself, counted for the new tenant
    }
    # The other tenant lost nothing.
    assert rows_of("globex") == globex_rows
    assert state_of("globex", user)["history"] == ["secret of globex"]
    assert state_of("globex", user)["provider"] == "globex-provider"


def test_the_refusal_while_application_rows_exist_stays_and_deletes_nothing(populated):
    from tests.testapp.models import Project

    with tenancy.switch("acme"):
        Project.objects.create(name="Rocket")
    before = rows_of("acme")
    with pytest.raises(TenantHasDataError) as info:
        tenancy.unregister_tenant("acme")
    assert info.value.models == ["testapp.Project"]  # conversation memory is not in the way
    assert rows_of("acme") == before
    assert state_of("acme", populated)["history"] == ["secret of acme"]


def test_a_receiver_that_raises_rolls_the_whole_unregister_back(populated):
    def refuse(sender, tenant, using, **kwargs):
        raise RuntimeError(f"{tenant.tenant_id} is under legal hold")

    before = rows_of("acme")
    signals.tenant_unregistering.connect(refuse, dispatch_uid="test.refuse")
    try:
        with pytest.raises(RuntimeError, match="legal hold"):
            tenancy.unregister_tenant("acme")
    finally:
        signals.tenant_unregistering.disconnect(dispatch_uid="test.refuse")
    assert tenancy.is_tenant_registered("acme")
    assert rows_of("acme") == before
    after = state_of("acme", populated)
    assert after["member"] and after["llm"] and after["history"] == ["secret of acme"]


def test_unregistering_is_sent_inside_the_transaction_before_unregistered(populated):
    seen = []

    def unregistering(sender, tenant, using, **kwargs):
        from django.db import connections

        seen.append(
            (
                "unregistering",
                tenant.tenant_id,
                using,
                connections[using].in_atomic_block,
                tenancy.tenant_context.models_with_data(tenant.tenant_id),
            )
        )

    def unregistered(sender, tenant, using, **kwargs):
        seen.append(("unregistered", tenant.tenant_id))

    signals.tenant_unregistering.connect(unregistering, dispatch_uid="test.ing")
    signals.tenant_unregistered.connect(unregistered, dispatch_uid="test.ed")
    try:
        tenancy.unregister_tenant("globex")
    finally:
        signals.tenant_unregistering.disconnect(dispatch_uid="test.ing")
        signals.tenant_unregistered.disconnect(dispatch_uid="test.ed")
    assert seen == [
        ("unregistering", "globex", "default", True, []),
        ("unregistered", "globex"),
    ]


def test_live_objects_left_in_another_process_never_reach_a_new_tenant_of_the_id(user):
    from tenancy.models import Tenant

    tenancy.register_tenant("acme", "Acme")
    client = object()
    with tenancy.switch("acme"):
        runtime.set_user_llm_instance(client, user.pk)
        assert runtime.get_user_llm_instance(user.pk) is client
    # As another process sees it: the tenant is gone, and this process was not told.
    Tenant.objects.filter(tenant_id="acme").delete()
    tenancy.tenant_context.reset_cache()
    tenancy.register_tenant("acme", "Acme again")
    with tenancy.switch("acme"):
        assert runtime.get_user_llm_instance(user.pk) is None
        runtime.set_user_llm_instance(client, user.pk)  # the new tenant's own
        assert runtime.get_user_llm_instance(user.pk) is client
    assert runtime.get_user_llm_instance(user.pk) is None  # global scope: never set


def test_live_objects_work_under_any_bound_id(user):
    for scope in ("default", "ghost"):  # reserved, and well-formed but unregistered
        with tenancy.Context(tenant_id=scope, validate_tenant=False):
            runtime.set_user_mcp_client("client", user.pk)
            assert runtime.get_user_mcp_client(user.pk) == "client"
