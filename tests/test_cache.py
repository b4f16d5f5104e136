"""tenancy.cache: keys in the bound tenant's namespace, on local memory and on Redis."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from django.core.cache import caches
from django.test import override_settings

import tenancy
from tenancy.cache import SHARED, clear_tenant_cache, make_key, tenant_cache
from tenancy.exceptions import CacheClearUnsupportedError, TenantRequiredError

CACHE_URL = os.environ.get("CACHE_URL", "")
ON_REDIS = CACHE_URL.startswith(("redis://", "rediss://"))


def backend_config(kind: str, prefix: str, key_function: bool) -> dict:
    if kind == "redis":
        config = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
    else:
        config = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": prefix}
    config["KEY_PREFIX"] = prefix
    if key_function:
        config["KEY_FUNCTION"] = "tenancy.cache.make_key"
    return config


@pytest.fixture(
    params=[
        "locmem",
        pytest.param(
            "redis",
            marks=[
                pytest.mark.redis,
                pytest.mark.skipif(not ON_REDIS, reason="needs CACHE_URL=redis://..."),
            ],
        ),
    ]
)
def kind(request):
    return request.param


@pytest.fixture
def aliases(kind):
    """Two aliases on one backend: "keyed" (KEY_FUNCTION = make_key) and "plain" (Django's)."""
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    from django.conf import settings

    cache_settings = {
        **settings.CACHES,
        "keyed": backend_config(kind, prefix, key_function=True),
        "plain": backend_config(kind, prefix, key_function=False),
    }
    with override_settings(CACHES=cache_settings):
        yield caches
        for alias in ("keyed", "plain"):
            backend = caches[alias]
            if kind == "redis":
                client = backend._cache.get_client(write=True)
                keys = list(client.scan_iter(match=f"{prefix}:*"))
                if keys:
                    client.delete(*keys)
            else:
                backend.clear()


@pytest.fixture
def ten_tenants(db):
    return [tenancy.register_tenant(f"tenant-{n}", f"Tenant {n}").tenant_id for n in range(10)]


def test_make_key_namespaces():
    assert make_key("k", "p", 1) == f"p:{SHARED}:1:k"
    with tenancy.Context(tenant_id="acme"):
        assert make_key("k", "p", 1) == "p:t:acme:1:k"
        assert (
            make_key("tenancy:default:tenant:acme", "p", 1)
            == f"p:{SHARED}:1:tenancy:default:tenant:acme"
        )
        assert make_key("django.contrib.sessions.cacheabc", "p", 1).startswith(f"p:{SHARED}:")
    with tenancy.Context(tenant_id="default"):
        assert make_key("k", "p", 1) == f"p:{SHARED}:1:k"
    # "shared" sits where "t" sits: no tenant id, whatever it is, makes a shared key.
    with tenancy.Context(tenant_id="shared"):
        assert make_key("k", "p", 1) == "p:t:shared:1:k"


def test_same_key_in_two_tenants_reads_each_tenants_value(aliases, tenants):
    cache = aliases["keyed"]
    for tenant_id in ("acme", "globex"):
        with tenancy.switch(tenant_id):
            cache.set("greeting", f"hello {tenant_id}")
    cache.set("greeting", "hello nobody")
    for tenant_id in ("acme", "globex"):
        with tenancy.switch(tenant_id):
            assert cache.get("greeting") == f"hello {tenant_id}"
            assert cache.get_many(["greeting"]) == {"greeting": f"hello {tenant_id}"}
    assert cache.get("greeting") == "hello nobody"


def test_tenant_cache_scopes_any_alias_and_refuses_without_a_tenant(aliases, tenants):
    scoped = tenant_cache("plain")
    with pytest.raises(TenantRequiredError):
        scoped.get("greeting")
    with pytest.raises(TenantRequiredError):
        scoped.set("greeting", "x")
    for tenant_id in ("acme", "globex"):
        with tenancy.switch(tenant_id):
            scoped.set("greeting", tenant_id)
            assert "greeting" in scoped
    aliases["plain"].set("greeting", "plain")
    for tenant_id in ("acme", "globex"):
        with tenancy.switch(tenant_id):
            assert scoped.get("greeting") == tenant_id
            assert scoped.add("counter", 0)
            assert scoped.incr("counter") == 1
    assert aliases["plain"].get("greeting") == "plain"  # the unscoped view is untouched


async def test_tenant_cache_async_refuses_without_a_tenant(aliases):
    with pytest.raises(TenantRequiredError):
        await tenant_cache("plain").aget("greeting")


@pytest.mark.django_db(transaction=True)
async def test_200_concurrent_tasks_over_10_tenants_read_only_their_own(aliases, ten_tenants):
    keyed = aliases["keyed"]
    scoped = tenant_cache("plain")

    async def task(n: int) -> None:
        tenant_id = ten_tenants[n % 10]
        async with tenancy.aswitch(tenant_id):
            await keyed.aset("value", tenant_id)
            await scoped.aset("value", tenant_id)
            await asyncio.sleep(0)
            assert await keyed.aget("value") == tenant_id
            assert await scoped.aget("value") == tenant_id

    await asyncio.gather(*(task(n) for n in range(200)))
    for tenant_id in ten_tenants:
        async with tenancy.aswitch(tenant_id):
            assert await keyed.aget("value") == tenant_id


@pytest.mark.parametrize("alias", ["keyed", "plain"])
def test_clear_tenant_cache_removes_exactly_one_tenants_keys(aliases, tenants, alias):
    cache = aliases[alias] if alias == "keyed" else tenant_cache("plain")
    for tenant_id in ("acme", "globex"):
        with tenancy.switch(tenant_id):
            cache.set("a", 1)
            cache.set("b", 2, version=7)
    aliases["keyed"].set("a", "shared")
    aliases["plain"].set("a", "plain")
    assert clear_tenant_cache("acme", alias) == 2
    with tenancy.switch("acme"):
        assert cache.get("a") is None
        assert cache.get("b", version=7) is None
    with tenancy.switch("globex"):
        assert cache.get("a") == 1
        assert cache.get("b", version=7) == 2
    assert aliases["keyed"].get("a") == "shared"
    assert aliases["plain"].get("a") == "plain"
    assert clear_tenant_cache("acme", alias) == 0


def test_tenant_cache_clear_clears_only_the_bound_tenant(aliases, tenants):
    scoped = tenant_cache("plain")
    for tenant_id in ("acme", "globex"):
        with tenancy.switch(tenant_id):
            scoped.set("a", tenant_id)
    with tenancy.switch("acme"):
        scoped.clear()
        assert scoped.get("a") is None
    with tenancy.switch("globex"):
        assert scoped.get("a") == "globex"


def test_the_registry_keeps_working_with_make_key(aliases, tenants):
    """Tenant state cached while one tenant is bound is invalidated from anywhere."""
    with override_settings(TENANCY={"CACHE_ALIAS": "keyed", "STATS_AUTO_FLUSH": False}):
        from tenancy.registry import reset_all_caches

        reset_all_caches()
        try:
            with tenancy.switch("acme"):
                assert tenancy.get_tenant("globex").active  # cached while acme is bound
            tenancy.deactivate_tenant("globex")
            with tenancy.switch("acme"):
                assert not tenancy.get_tenant("globex").active
            from tenancy.exceptions import TenantInactiveError

            with pytest.raises(TenantInactiveError):
                with tenancy.switch("globex"):
                    pass
        finally:
            reset_all_caches()


def test_clear_is_refused_plainly_where_the_backend_cannot(tmp_path, db):
    from django.conf import settings

    file_cache = {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(tmp_path),
    }
    with override_settings(CACHES={**settings.CACHES, "files": file_cache}):
        with pytest.raises(CacheClearUnsupportedError) as caught:
            clear_tenant_cache("acme", "files")
    assert caught.value.code == "cache_clear_unsupported"
    assert "FileBasedCache" in caught.value.message


def test_clear_tenant_cache_validates_the_id(aliases):
    with pytest.raises(tenancy.InvalidTenantIdError):
        clear_tenant_cache("*", "keyed")
