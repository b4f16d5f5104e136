"""Tenant state follows the database: a rolled-back transaction leaves every cache as it was.

Each change (register, unregister, activate, deactivate, metadata, membership)
is made inside a transaction that is then rolled back, either the whole
transaction ("atomic") or a savepoint inside one that then commits
("savepoint"); sync and async. The transaction itself sees its change; no cache
shared beyond it does until it commits; afterwards, everybody sees the state
the database has. With ``DATABASE_URL`` and ``CACHE_URL`` set these run on
PostgreSQL with Redis as the shared cache.
"""

from __future__ import annotations

import textwrap
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

import tenancy
from tenancy import TenantInactiveError, TenantNotRegisteredError
from tenancy.membership import is_member
from tenancy.models import Tenant, TenantMembership
from tenancy.registry import tenant_context
from tenancy.state import MISS

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.django_db(transaction=True)


class Rollback(Exception):
    pass


def caches_of(*tenant_ids):
    """What every cache holds for *tenant_ids*: the local LRU and, if any, the shared cache."""
    store = tenant_context.store
    local = getattr(store, "local", store)
    shared = getattr(store, "shared_store", store)
    held = {}
    for tenant_id in tenant_ids:
        entry = local.data.get(tenant_id) if hasattr(local, "data") else None
        held[tenant_id] = (
            None if entry is None else (entry, entry._expires),
            tenant_id in getattr(local, "absent", ()),
            shared.get(tenant_id) if store.shared else MISS,
        )
    return held


@contextmanager
def rolled_back(how):
    """A block whose changes are rolled back: the whole transaction, or a savepoint in one."""
    if how == "atomic":
        try:
            with transaction.atomic():
                yield
                raise Rollback
        except Rollback:
            pass
    else:
        with transaction.atomic():  # commits, without what the savepoint did
            try:
                with transaction.atomic():
                    yield
                    raise Rollback
            except Rollback:
                pass


def in_other_thread(func):
    """Run *func* in another thread (its own connection) and return its result."""
    result = {}

    def run():
        try:
            result["value"] = func()
        finally:
            from django.db import connections

            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return result["value"]


def switchable(tenant_id):
    try:
        with tenancy.switch(tenant_id):
            return True
    except (TenantInactiveError, TenantNotRegisteredError) as exc:
        return exc.code


# -- the changes, each made inside the transaction, with what the transaction sees --------


def register():
    tenancy.register_tenant("newco", "New Co")
    with tenancy.switch("newco") as info:  # the signup creates its first rows
        assert info.name == "New Co"
    assert tenancy.is_tenant_registered("newco")


def activate():
    tenancy.activate_tenant("globex")
    assert switchable("globex") is True


def deactivate():
    tenancy.deactivate_tenant("acme")
    assert switchable("acme") == "tenant_inactive"


def unregister():
    tenancy.unregister_tenant("acme")
    assert switchable("acme") == "tenant_not_registered"
    assert tenancy.get_tenant("acme") is None


def change_metadata():
    tenant = Tenant.objects.get(tenant_id="acme")
    tenant.metadata = {"plan": "free"}
    tenant.save()
    assert tenancy.get_tenant("acme").metadata == {"plan": "free"}


CHANGES = {
    "register": (register, {"newco": "tenant_not_registered"}),
    "activate": (activate, {"globex": "tenant_inactive"}),
    "deactivate": (deactivate, {"acme": True}),
    "unregister": (unregister, {"acme": True}),
    "metadata": (change_metadata, {"acme": True}),
}


@pytest.fixture
def tenants_warm(acme, globex):
    """acme active and globex inactive, committed; both warm in every cache, newco unknown."""
    tenancy.deactivate_tenant("globex")
    for tenant_id in ("acme", "globex", "newco"):
        switchable(tenant_id)
    return caches_of("acme", "globex", "newco")


def assert_as_before(before, expected):
    assert caches_of(*before) == before  # not one cache changed
    for tenant_id, outcome in expected.items():
        assert switchable(tenant_id) == outcome
        assert in_other_thread(lambda tenant_id=tenant_id: switchable(tenant_id)) == outcome
    assert tenancy.get_tenant("acme").metadata == {"plan": "enterprise"}


@pytest.mark.parametrize("how", ["atomic", "savepoint"])
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_rolled_back_change_leaves_every_cache_as_it_was(tenants_warm, change, how):
    make, expected = CHANGES[change]
    with rolled_back(how):
        make()
        # Nothing reached a cache shared beyond the transaction ...
        assert caches_of(*tenants_warm) == tenants_warm
        # ... so another thread (its own connection) still sees the committed state.
        for tenant_id, outcome in expected.items():
            assert in_other_thread(lambda tenant_id=tenant_id: switchable(tenant_id)) == outcome
    assert_as_before(tenants_warm, expected)


@pytest.mark.parametrize("how", ["atomic", "savepoint"])
@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_a_rolled_back_change_leaves_every_cache_as_it_was_async(tenants_warm, change, how):
    make, expected = CHANGES[change]

    def rolled_back_change():
        with rolled_back(how):
            make()

    await sync_to_async(rolled_back_change)()
    for tenant_id, outcome in expected.items():
        if outcome is True:
            async with tenancy.aswitch(tenant_id):
                pass
        else:
            with pytest.raises((TenantInactiveError, TenantNotRegisteredError)) as refused:
                async with tenancy.aswitch(tenant_id):
                    pytest.fail("a rolled-back change was seen")
            assert refused.value.code == outcome
    await sync_to_async(assert_as_before)(tenants_warm, expected)


def test_after_a_savepoint_rolls_back_the_transaction_sees_its_state_again(tenants_warm):
    with transaction.atomic():
        tenancy.deactivate_tenant("acme")
        try:
            with transaction.atomic():
                tenancy.activate_tenant("acme")
                assert switchable("acme") is True
                raise Rollback
        except Rollback:
            pass
        assert switchable("acme") == "tenant_inactive"  # the outer change, still pending
        assert in_other_thread(lambda: switchable("acme")) is True
    assert switchable("acme") == "tenant_inactive"
    assert in_other_thread(lambda: switchable("acme")) == "tenant_inactive"


def test_a_committed_change_reaches_every_cache_and_the_warm_path(tenants_warm):
    with transaction.atomic():
        register()
    assert in_other_thread(lambda: switchable("newco")) is True
    switchable("newco")
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert switchable("newco") is True
    assert len(queries) == 0
    assert caches_of("newco")["newco"][0][0].name == "New Co"


def test_reads_inside_a_transaction_reach_the_caches_only_at_commit(acme):
    tenant_context.reset_cache()
    from django.core.cache import caches

    caches["default"].clear()
    with transaction.atomic():
        assert switchable("acme") is True
        assert switchable("acme") is True  # the transaction's own view: no second query
        assert caches_of("acme")["acme"] == (None, False, MISS)
    assert caches_of("acme")["acme"][0] is not None


def test_a_warm_switch_and_request_outside_any_transaction_make_no_query(acme):
    client = Client()
    client.get("/req/plain", headers={"X-Tenant-ID": "acme"})
    assert not connection.in_atomic_block
    with CaptureQueriesContext(connection) as queries:
        for _ in range(10):
            with tenancy.switch("acme"):
                pass
        for path in ("/req/plain", "/req/tenant", "/req/plain-tenant"):
            assert client.get(path, headers={"X-Tenant-ID": "acme"}).status_code == 200
    assert len(queries) == 0, [q["sql"] for q in queries]


@pytest.mark.parametrize("how", ["atomic", "savepoint"])
def test_a_rolled_back_membership_leaves_the_cache_as_it_was(acme, how):
    user = get_user_model().objects.create_user("alice", password="pw")
    assert not is_member("acme", user.pk)  # cached: no membership
    with rolled_back(how):
        TenantMembership.objects.create(tenant_id="acme", user=user)
        assert is_member("acme", user.pk)
        assert not in_other_thread(lambda: is_member("acme", user.pk))
    assert not is_member("acme", user.pk)
    assert not in_other_thread(lambda: is_member("acme", user.pk))


def test_a_committed_membership_is_seen_everywhere(acme):
    user = get_user_model().objects.create_user("alice", password="pw")
    assert not is_member("acme", user.pk)
    with transaction.atomic():
        membership = TenantMembership.objects.create(tenant_id="acme", user=user)
    assert is_member("acme", user.pk) and in_other_thread(lambda: is_member("acme", user.pk))
    with transaction.atomic():
        membership.delete()
        assert not is_member("acme", user.pk)
        assert in_other_thread(lambda: is_member("acme", user.pk))
    assert not is_member("acme", user.pk)


# -- a user's own pytest-django suite -----------------------------------------------------

SUITE = """
import pytest

import tenancy


def test_a_signup_registers_and_switches_into_its_tenant(db):
    tenancy.register_tenant("newco", "New Co")
    with tenancy.switch("newco"):
        assert tenancy.get_current_tenant_id() == "newco"
    assert tenancy.is_tenant_registered("newco")


def test_the_next_test_never_sees_it(db):
    assert not tenancy.is_tenant_registered("newco")
    assert tenancy.get_tenant("newco") is None
    with pytest.raises(tenancy.TenantNotRegisteredError):
        with tenancy.switch("newco"):
            pass


def test_a_deactivation_is_rolled_back_too(db):
    tenancy.register_tenant("acme", "Acme")
    tenancy.deactivate_tenant("acme")
    with pytest.raises(tenancy.TenantInactiveError):
        with tenancy.switch("acme"):
            pass


def test_and_so_is_the_tenant_it_deactivated(db):
    assert not tenancy.is_tenant_registered("acme")
"""

SETTINGS = """
import os

SECRET_KEY = "suite"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "tenancy"]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {db!r}}}}}
CACHES = {{"default": {cache!r}}}
TENANCY = {{"STATS_AUTO_FLUSH": False}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
"""


@pytest.mark.slow
@pytest.mark.parametrize("cache", ["local", "shared"])
def test_a_users_pytest_django_suite_never_sees_a_tenant_of_an_earlier_test(
    pytester, monkeypatch, cache
):
    """Each test rolls back; no plugin of ours is loaded, pytest-django alone."""
    from django.conf import settings

    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # only what -p names
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    monkeypatch.setenv("PYTHONPATH", str(Path(tenancy.__file__).parent.parent))  # this tenancy

    backend = settings.CACHES["default"]
    if cache == "shared" and "locmem" in backend["BACKEND"]:
        pytest.skip("needs CACHE_URL=redis://...")
    if cache == "local":
        backend = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    else:
        backend = {**backend, "KEY_PREFIX": f"suite-{pytester.path.name}"}
    pytester.makepyfile(
        suite_settings=textwrap.dedent(
            SETTINGS.format(db=str(pytester.path / "db.sqlite3"), cache=backend)
        ),
        test_suite=SUITE,
    )
    pytester.makeini("[pytest]\nDJANGO_SETTINGS_MODULE = suite_settings\npythonpath = .\n")
    result = pytester.runpytest_subprocess(
        "-p", "pytest_django.plugin", "-p", "no:cacheprovider", "-q"
    )
    result.assert_outcomes(passed=4)
