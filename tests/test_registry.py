"""The tenant registry: every row of SPEC §3, caching, switching and statistics."""

from __future__ import annotations

import pickle
from datetime import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import tenancy
from tenancy import (
    InvalidTenantIdError,
    TenantAlreadyRegisteredError,
    TenantHasDataError,
    TenantInactiveError,
    TenantInfo,
    TenantInUseError,
    TenantNotRegisteredError,
    TenantRequiredError,
)
from tenancy.models import Tenant

pytestmark = pytest.mark.django_db

INACTIVE_MESSAGE = "Tenant 'acme' is not active. Use activate_tenant() to reactivate it."
REQUIRE_MESSAGE = (
    "No tenant context is active. Use 'with tenancy.switch(tenant_id):' to set a tenant context."
)


# -- lifecycle -------------------------------------------------------------------------------


def test_register_tenant_returns_an_active_snapshot():
    info = tenancy.register_tenant("acme", "Acme Corporation", metadata={"plan": "enterprise"})
    assert isinstance(info, TenantInfo)
    assert (info.tenant_id, info.name, info.active) == ("acme", "Acme Corporation", True)
    assert info.metadata == {"plan": "enterprise"}
    assert isinstance(info.created_at, datetime)
    row = Tenant.objects.get(tenant_id="acme")
    assert (row.name, row.active, row.metadata) == (
        "Acme Corporation",
        True,
        {"plan": "enterprise"},
    )


def test_tenant_info_is_immutable_and_survives_pickling(acme):
    with pytest.raises(AttributeError):
        acme.active = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        acme.metadata["plan"] = "free"  # type: ignore[index]
    assert pickle.loads(pickle.dumps(acme)) == acme


def test_register_duplicate_raises_and_changes_nothing(acme):
    with pytest.raises(TenantAlreadyRegisteredError) as info:
        tenancy.register_tenant("acme", "Someone Else")
    assert info.value.code == "tenant_already_registered"
    assert Tenant.objects.get(tenant_id="acme").name == "Acme Corporation"


def test_register_rejects_bad_names_and_metadata():
    with pytest.raises(ValueError, match="non-empty name"):
        tenancy.register_tenant("acme", "  ")
    with pytest.raises(TypeError, match="metadata"):
        tenancy.register_tenant("acme", "Acme", metadata=["not", "a", "mapping"])  # type: ignore[arg-type]
    assert not Tenant.objects.exists()


def test_is_registered_and_is_active(acme):
    assert tenancy.is_tenant_registered("acme") is True
    assert tenancy.is_tenant_registered("unknown") is False
    assert tenancy.is_tenant_registered("Not Valid") is False
    assert tenancy.is_tenant_active("acme") is True
    tenancy.deactivate_tenant("acme")
    assert tenancy.is_tenant_registered("acme") is True
    assert tenancy.is_tenant_active("acme") is False
    tenancy.activate_tenant("acme")
    assert tenancy.is_tenant_active("acme") is True


def test_get_tenant_and_list_tenants(acme, globex):
    assert tenancy.get_tenant("acme") == acme
    assert tenancy.get_tenant("unknown") is None
    assert [t.tenant_id for t in tenancy.list_tenants()] == ["acme", "globex"]


def test_activate_and_deactivate_unknown_tenant_raise():
    with pytest.raises(TenantNotRegisteredError, match="'ghost' is not registered"):
        tenancy.deactivate_tenant("ghost")
    with pytest.raises(TenantNotRegisteredError):
        tenancy.activate_tenant("ghost")


def test_unregister_deletes_the_tenant(acme):
    tenancy.unregister_tenant("acme")
    assert not Tenant.objects.filter(tenant_id="acme").exists()
    assert tenancy.is_tenant_registered("acme") is False
    with pytest.raises(TenantNotRegisteredError):
        tenancy.unregister_tenant("acme")


def test_unregister_refused_while_current(acme):
    with tenancy.switch("acme"):
        with pytest.raises(TenantInUseError) as info:
            tenancy.unregister_tenant("acme")
    assert info.value.code == "tenant_in_use"
    assert tenancy.is_tenant_registered("acme")


def test_unregister_refused_while_scoped_rows_exist_and_deletes_nothing(acme):
    from tests.testapp.models import Project

    with tenancy.switch("acme"):
        Project.objects.create(name="apollo")
    with pytest.raises(TenantHasDataError) as info:
        tenancy.unregister_tenant("acme")
    assert "testapp.Project" in str(info.value)
    assert Tenant.objects.filter(tenant_id="acme").exists()
    assert Project.unscoped.filter(tenant_id="acme").count() == 1


# -- switching -------------------------------------------------------------------------------


def test_switch_yields_info_and_restores(acme):
    assert tenancy.get_current_tenant() is None
    with tenancy.switch("acme") as info:
        assert info.name == "Acme Corporation"
        assert tenancy.get_current_tenant() == "acme"
        assert tenancy.get_current_tenant_id() == "acme"
    assert tenancy.get_current_tenant() is None


def test_nested_switches_restore_the_outer_tenant(acme, globex):
    with tenancy.switch("acme"):
        with tenancy.switch("globex"):
            assert tenancy.get_current_tenant() == "globex"
        assert tenancy.get_current_tenant() == "acme"
    assert tenancy.get_current_tenant() is None


def test_switch_restores_on_exceptions(acme, globex):
    with pytest.raises(ZeroDivisionError):
        with tenancy.switch("acme"):
            with tenancy.switch("globex"):
                1 / 0  # noqa: B018
    assert tenancy.get_current_tenant() is None
    assert tenancy.get_stats()["active_switches"] == 0


def test_switch_keeps_other_context_values(acme):
    with tenancy.Context(request_id="req-12345678", agent_id="agent-1"):
        with tenancy.switch("acme"):
            assert tenancy.get_full_context() == {
                "request_id": "req-12345678",
                "agent_id": "agent-1",
                "tenant_id": "acme",
            }
        assert tenancy.get_current_tenant_id() is None


def test_switch_to_unknown_tenant_binds_nothing():
    with pytest.raises(TenantNotRegisteredError) as info:
        with tenancy.switch("ghost"):
            pass
    assert isinstance(info.value, ValueError)
    assert tenancy.get_context() is None


def test_switch_to_inactive_tenant_has_the_documented_message(acme):
    tenancy.deactivate_tenant("acme")
    with pytest.raises(TenantInactiveError) as info:
        with tenancy.switch("acme"):
            pass
    assert str(info.value) == INACTIVE_MESSAGE
    assert isinstance(info.value, ValueError)
    assert info.value.code == "tenant_inactive"


@pytest.mark.parametrize(
    "bad",
    ["Acme", "a b", "default", "a" * 64, "", "acme\r\nX-Evil: 1", "acme\n", "-acme", None, 42],
)
def test_malformed_ids_are_rejected_everywhere(bad):
    for call in (
        lambda: tenancy.switch(bad).__enter__(),
        lambda: tenancy.register_tenant(bad, "Name"),
        lambda: tenancy.unregister_tenant(bad),
        lambda: tenancy.activate_tenant(bad),
        lambda: tenancy.get_tenant(bad),
    ):
        with pytest.raises(InvalidTenantIdError) as info:
            call()
        assert isinstance(info.value, ValueError)
        if isinstance(bad, str):
            assert "\r" not in str(info.value) and "\n" not in str(info.value)
    assert tenancy.is_tenant_registered(bad) is False
    assert not Tenant.objects.exists()
    assert tenancy.get_context() is None


def test_longest_valid_id_is_accepted():
    tenant_id = "a" * 63
    tenancy.register_tenant(tenant_id, "Long")
    with tenancy.switch(tenant_id):
        assert tenancy.get_current_tenant() == tenant_id


async def _aswitch_roundtrip():
    async with tenancy.aswitch("acme") as info:
        assert info.tenant_id == "acme"
        async with tenancy.aswitch("globex"):
            assert tenancy.get_current_tenant() == "globex"
        assert tenancy.get_current_tenant() == "acme"
        with pytest.raises(KeyError):
            async with tenancy.aswitch("globex"):
                raise KeyError
        assert tenancy.get_current_tenant() == "acme"
    assert tenancy.get_current_tenant() is None


@pytest.mark.django_db(transaction=True)
async def test_aswitch_nested_and_exception_safe_on_a_cold_cache(acme, globex):
    from tenancy.registry import tenant_context

    tenant_context.reset_cache()  # cold lookups must go through sync_to_async
    await _aswitch_roundtrip()
    await _aswitch_roundtrip()  # warm


@pytest.mark.django_db(transaction=True)
async def test_aswitch_refuses_unknown_and_inactive(acme):
    from asgiref.sync import sync_to_async

    with pytest.raises(TenantNotRegisteredError):
        async with tenancy.aswitch("ghost"):
            pass
    await sync_to_async(tenancy.deactivate_tenant)("acme")
    with pytest.raises(TenantInactiveError, match="Use activate_tenant"):
        async with tenancy.aswitch("acme"):
            pass
    assert tenancy.get_context() is None


def test_require_tenant(acme):
    with pytest.raises(TenantRequiredError) as info:
        tenancy.require_tenant()
    assert str(info.value) == REQUIRE_MESSAGE
    assert isinstance(info.value, RuntimeError)
    with tenancy.switch("acme"):
        assert tenancy.require_tenant() == "acme"
    with tenancy.Context(tenant_id="default"):
        with pytest.raises(TenantRequiredError):
            tenancy.require_tenant()


# -- caching ---------------------------------------------------------------------------------


def test_warm_switch_makes_no_query(acme):
    with tenancy.switch("acme"):
        pass  # warms the cache
    with CaptureQueriesContext(connection) as queries:
        for _ in range(50):
            with tenancy.switch("acme"):
                assert tenancy.is_tenant_active("acme")
    assert len(queries) == 0


def test_unknown_ids_are_cached_too(acme):
    assert tenancy.is_tenant_registered("ghost") is False
    with CaptureQueriesContext(connection) as queries:
        assert tenancy.is_tenant_registered("ghost") is False
    assert len(queries) == 0
    tenancy.register_tenant("ghost", "Now Real")
    assert tenancy.is_tenant_registered("ghost") is True


def test_deactivation_is_seen_by_the_very_next_switch(acme):
    with tenancy.switch("acme"):
        pass
    tenancy.deactivate_tenant("acme")
    with pytest.raises(TenantInactiveError):
        with tenancy.switch("acme"):
            pass
    tenancy.activate_tenant("acme")
    with tenancy.switch("acme"):
        assert tenancy.get_current_tenant() == "acme"


def test_a_change_saved_through_the_model_invalidates_the_cache(acme):
    assert tenancy.get_tenant("acme").name == "Acme Corporation"
    row = Tenant.objects.get(tenant_id="acme")
    row.name = "Acme Renamed"
    row.active = False
    row.save()
    assert tenancy.get_tenant("acme").name == "Acme Renamed"
    assert tenancy.is_tenant_active("acme") is False
    row.delete()
    assert tenancy.get_tenant("acme") is None


@pytest.mark.django_db(transaction=True)
def test_committed_changes_write_fresh_state_to_the_cache(acme):
    from tenancy.registry import tenant_context

    tenancy.deactivate_tenant("acme")  # autocommit: the on_commit hook stored the fresh state
    assert tenant_context.is_cached("acme")
    with CaptureQueriesContext(connection) as queries:
        assert tenancy.is_tenant_active("acme") is False
    assert len(queries) == 0


# -- statistics ------------------------------------------------------------------------------


def test_get_stats_follows_the_seed_example(acme, globex):
    tenancy.deactivate_tenant("globex")
    before = tenancy.get_stats()["total_switches"]
    with tenancy.switch("acme"):
        pass
    stats = tenancy.get_stats()
    assert stats["total_tenants"] == 2
    assert stats["active_tenants"] == 1
    assert stats["total_switches"] - before == 1
    assert stats["active_switches"] == 0
    assert stats["current_tenant"] is None
    with tenancy.switch("acme"):
        stats = tenancy.get_stats()
        assert stats["active_switches"] == 1
        assert stats["current_tenant"] == "acme"
        with tenancy.switch("acme"):  # same tenant, still counted
            stats = tenancy.get_stats()
            assert stats["active_switches"] == 2
            assert stats["total_switches"] - before == 3
    assert tenancy.get_stats()["active_switches"] == 0


def test_refused_switches_are_not_counted(acme):
    tenancy.deactivate_tenant("acme")
    before = tenancy.get_stats()
    for tenant_id in ("acme", "ghost", "Bad"):
        with pytest.raises(tenancy.TenancyError):
            with tenancy.switch(tenant_id):
                pass
    after = tenancy.get_stats()
    assert after["total_switches"] == before["total_switches"]
    assert after["active_switches"] == 0


def test_signals_are_sent_for_lifecycle_changes():
    from tenancy import signals

    received = []

    def receiver(sender, tenant, using, signal, **kwargs):
        received.append((signal, tenant.tenant_id, tenant.active))

    for sig in (
        signals.tenant_registered,
        signals.tenant_activated,
        signals.tenant_deactivated,
        signals.tenant_unregistered,
    ):
        sig.connect(receiver, weak=False)
    try:
        tenancy.register_tenant("acme", "Acme")
        tenancy.deactivate_tenant("acme")
        tenancy.deactivate_tenant("acme")  # no change, no signal
        tenancy.activate_tenant("acme")
        tenancy.unregister_tenant("acme")
    finally:
        for sig in (
            signals.tenant_registered,
            signals.tenant_activated,
            signals.tenant_deactivated,
            signals.tenant_unregistered,
        ):
            sig.disconnect(receiver)
    assert received == [
        (signals.tenant_registered, "acme", True),
        (signals.tenant_deactivated, "acme", False),
        (signals.tenant_activated, "acme", True),
        (signals.tenant_unregistered, "acme", True),
    ]


# -- the warm switch path --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_warm_aswitch_makes_no_query(acme, django_db_blocker):
    async with tenancy.aswitch("acme"):
        pass
    # Any database access from now on, from any thread, raises.
    with django_db_blocker.block():
        for _ in range(3):
            async with tenancy.aswitch("acme") as info:
                assert tenancy.get_current_tenant_id() == info.tenant_id == "acme"


@pytest.mark.django_db(transaction=True)
async def test_deactivation_is_seen_by_the_very_next_warm_aswitch(acme):
    from asgiref.sync import sync_to_async

    async with tenancy.aswitch("acme"):
        pass
    await sync_to_async(tenancy.deactivate_tenant)("acme")
    with pytest.raises(TenantInactiveError, match="Use activate_tenant"):
        async with tenancy.aswitch("acme"):
            pytest.fail("an inactive tenant was bound")
    assert tenancy.get_context() is None


def test_inactive_and_unknown_tenants_are_refused_without_a_query_once_warm(acme, globex):
    tenancy.deactivate_tenant("globex")
    for tenant_id, error in (
        ("globex", TenantInactiveError),
        ("initech", TenantNotRegisteredError),
    ):
        with pytest.raises(error):
            with tenancy.switch(tenant_id):
                pass
        with CaptureQueriesContext(connection) as queries:
            with pytest.raises(error):
                with tenancy.switch(tenant_id):
                    pass
        assert len(queries) == 0, tenant_id


@pytest.mark.parametrize("bad", ["Acme", "default", "a" * 64, 42, None, ["acme"], {"acme": 1}])
def test_malformed_ids_are_refused_without_a_query(acme, bad):
    with tenancy.switch("acme"):
        pass
    with CaptureQueriesContext(connection) as queries:
        with pytest.raises(InvalidTenantIdError):
            with tenancy.switch(bad):
                pass
    assert len(queries) == 0
    assert tenancy.get_context() is None


@pytest.mark.django_db(transaction=True)  # committed: a test's own transaction caches nothing
def test_an_expired_entry_is_read_again(acme):
    from tenancy.registry import tenant_context

    with tenancy.switch("acme"):
        pass
    store = tenant_context.store
    # As if CACHE_TIMEOUT had passed.
    if store.shared:
        store.shared_store.cache.delete(store.shared_store.prefix + "acme")
    object.__setattr__(store.data["acme"], "_expires", 0.001)
    with CaptureQueriesContext(connection) as queries:
        with tenancy.switch("acme"):
            pass
    assert len(queries) == 1


def test_a_switch_object_entered_again_while_entered_is_a_clear_error(acme, globex):
    """One token slot per switch() object: a second entry is refused, the first stays intact."""
    acme_switch = tenancy.switch("acme")
    with acme_switch:
        with tenancy.switch("globex"):
            with pytest.raises(RuntimeError, match="already entered"):
                with acme_switch:
                    pass  # pragma: no cover
            assert tenancy.get_current_tenant_id() == "globex"
        assert tenancy.get_current_tenant_id() == "acme"
    assert tenancy.get_context() is None
    with acme_switch:  # reused after it was left
        assert tenancy.get_current_tenant_id() == "acme"
    assert tenancy.get_context() is None
    assert tenancy.get_stats()["active_switches"] == 0


def test_switch_returns_a_new_object_per_call_so_nested_blocks_of_one_tenant_work(acme, globex):
    assert tenancy.switch("acme") is not tenancy.switch("acme")
    with tenancy.switch("acme"):
        with tenancy.switch("globex"):
            with tenancy.switch("acme"):
                assert tenancy.get_current_tenant_id() == "acme"
            assert tenancy.get_current_tenant_id() == "globex"
        assert tenancy.get_current_tenant_id() == "acme"
    assert tenancy.get_context() is None
    assert tenancy.get_stats()["active_switches"] == 0


def test_leaving_a_switch_that_was_not_entered_is_a_clear_error(acme):
    with pytest.raises(RuntimeError, match="without being entered"):
        tenancy.switch("acme").__exit__(None, None, None)
    assert tenancy.get_stats()["active_switches"] == 0
