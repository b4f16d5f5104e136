"""The context: RuntimeContext, accessors, Context and @with_context, sync and async."""

from __future__ import annotations

import pytest

import tenancy
from tenancy import (
    Context,
    InvalidTenantIdError,
    RuntimeContext,
    ServiceError,
    TenantInactiveError,
    TenantNotRegisteredError,
    TenantRequiredError,
    with_context,
)
from tenancy.current import bind, bind_value

# -- RuntimeContext ----------------------------------------------------------------


def test_runtime_context_is_an_immutable_snapshot():
    source = {"tenant_id": "acme", "flags": {"beta": True}}
    ctx = RuntimeContext(source)
    source["tenant_id"] = "globex"  # the snapshot copied its input
    assert ctx.get("tenant_id") == "acme"
    assert ctx.get("missing", "fallback") == "fallback"
    assert ctx.variables["flags"] == {"beta": True}
    with pytest.raises(TypeError):
        ctx.variables["tenant_id"] = "globex"  # type: ignore[index]
    with pytest.raises(AttributeError):
        ctx.tenant_id = "globex"  # type: ignore[attr-defined]
    replaced = ctx.replace(tenant_id="globex")
    assert (ctx.get("tenant_id"), replaced.get("tenant_id")) == ("acme", "globex")
    assert RuntimeContext({"a": 1}) == RuntimeContext({"a": 1})


def test_set_get_clear_and_reset_context():
    assert tenancy.get_context() is None
    token = tenancy.set_context(RuntimeContext({"tenant_id": "acme", "user_id": 7}))
    assert tenancy.get_current_context().get("user_id") == 7
    assert tenancy.get_current_tenant_id() == "acme"
    inner = tenancy.set_context({"tenant_id": "globex"})
    assert tenancy.get_current_tenant_id() == "globex"
    tenancy.reset_context(inner)
    assert tenancy.get_current_tenant_id() == "acme"
    tenancy.reset_context(token)
    assert tenancy.get_context() is None
    tenancy.set_context({"tenant_id": "acme"})
    tenancy.clear_context()
    assert tenancy.get_context() is None
    tenancy.set_context({"tenant_id": "acme"})
    tenancy.reset_context()  # no arguments: clear everything
    assert tenancy.get_current_tenant_id() is None


@pytest.mark.parametrize(
    "key", ["tenant_id", "request_id", "user_id", "agent_id", "conversation_id", "collection_id"]
)
def test_low_level_setters_and_getters_pair_up(key):
    getter = getattr(tenancy, f"get_current_{key}")
    setter = getattr(tenancy, f"set_current_{key}")
    assert getter() is None
    token = setter("value-1")
    assert getter() == "value-1"
    tenancy.reset_context(token, key)
    assert getter() is None


def test_tokens_undone_in_reverse_order_restore_everything():
    pairs = [
        (tenancy.set_current_tenant_id("acme"), "tenant_id"),
        (tenancy.set_current_agent_id("agent-1"), "agent_id"),
        (tenancy.set_current_conversation_id("conv-1"), "conversation_id"),
    ]
    assert tenancy.get_full_context() == {
        "tenant_id": "acme",
        "agent_id": "agent-1",
        "conversation_id": "conv-1",
    }
    for token, name in reversed(pairs):
        tenancy.reset_context(token, name)
    assert tenancy.get_full_context() == {}


def test_get_full_context_leaves_out_none_values():
    with Context(tenant_id="acme", agent_id="a-1", custom=None, flag=True):
        assert tenancy.get_full_context() == {"tenant_id": "acme", "agent_id": "a-1", "flag": True}


# -- Context -------------------------------------------------------------------------


def test_context_binds_on_top_and_restores_when_nested():
    with Context(tenant_id="acme", agent_id="agent-1") as outer:
        with Context(conversation_id="conv-9"):
            assert tenancy.get_full_context() == {
                "tenant_id": "acme",
                "agent_id": "agent-1",
                "conversation_id": "conv-9",
            }
            with Context(tenant_id="globex"):
                assert tenancy.get_current_tenant_id() == "globex"
                assert tenancy.get_current_agent_id() == "agent-1"
            assert tenancy.get_current_tenant_id() == "acme"
        assert tenancy.get_current_conversation_id() is None
        assert outer.get_agent_id() == "agent-1"
    assert tenancy.get_context() is None


def test_context_restores_on_exception():
    with pytest.raises(KeyError):
        with Context(tenant_id="acme"):
            with Context(tenant_id="globex"):
                raise KeyError("boom")
    assert tenancy.get_context() is None


def test_same_context_instance_is_reentrant():
    block = Context(tenant_id="acme")
    with Context(tenant_id="globex"):
        with block:
            with Context(tenant_id="initech"):
                with block:
                    assert tenancy.get_current_tenant_id() == "acme"
                assert tenancy.get_current_tenant_id() == "initech"
            assert tenancy.get_current_tenant_id() == "acme"
        assert tenancy.get_current_tenant_id() == "globex"


async def test_async_context_nested_and_exception_safe():
    async with Context(tenant_id="acme") as ctx:
        assert ctx.get("tenant_id") == "acme"
        with pytest.raises(RuntimeError):
            async with Context(tenant_id="globex", collection_id="c-1"):
                assert tenancy.get_current_collection_id() == "c-1"
                raise RuntimeError
        assert tenancy.get_full_context() == {"tenant_id": "acme"}
    assert tenancy.get_context() is None


@pytest.mark.parametrize("bad", [None, "default"])
def test_get_tenant_id_never_returns_none_or_default(bad):
    with Context(tenant_id=bad) as ctx:
        with pytest.raises(TenantRequiredError) as info:
            ctx.get_tenant_id()
    assert info.value.code == "ERROR_TENANT_REQUIRED"
    assert isinstance(info.value, ServiceError)
    assert isinstance(info.value, RuntimeError)


def test_get_tenant_id_rejects_a_malformed_bound_value():
    token = tenancy.set_current_tenant_id("Not A Slug")
    try:
        with pytest.raises(InvalidTenantIdError):
            Context().get_tenant_id()
    finally:
        tenancy.reset_context(token)


@pytest.mark.django_db
def test_validate_tenant_rejects_none_and_default_and_binds_nothing(acme):
    with pytest.raises(TenantRequiredError):
        with Context(validate_tenant=True):
            pass
    with pytest.raises(TenantRequiredError):
        with Context(tenant_id="default", validate_tenant=True):
            pass
    assert tenancy.get_context() is None


@pytest.mark.django_db
def test_validate_tenant_checks_the_registry(acme, globex):
    with Context(tenant_id="acme", validate_tenant=True) as ctx:
        assert ctx.get_tenant_id() == "acme"
        with Context(validate_tenant=True):  # validates the current tenant only
            assert tenancy.get_current_tenant_id() == "acme"
    with pytest.raises(TenantNotRegisteredError):
        with Context(tenant_id="ghost", validate_tenant=True):
            pass
    tenancy.deactivate_tenant("globex")
    with pytest.raises(TenantInactiveError):
        with Context(tenant_id="globex", validate_tenant=True):
            pass
    assert tenancy.get_context() is None


@pytest.mark.django_db(transaction=True)
async def test_async_validate_tenant_reads_a_cold_registry_off_the_loop(acme):
    from tenancy.registry import tenant_context

    tenant_context.reset_cache()  # cold: the lookup must go through sync_to_async
    async with Context(tenant_id="acme", validate_tenant=True) as ctx:
        assert ctx.get_tenant_id() == "acme"
    with pytest.raises(TenantRequiredError):
        async with Context(validate_tenant=True):
            pass


# -- @with_context --------------------------------------------------------------------------


@pytest.mark.django_db
def test_with_context_sync_takes_ids_from_kwargs_and_injects_ctx(acme):
    seen = {}

    @with_context(tenant=True, agent=True, conversation=True)
    def view(request, agent_id, ctx: Context, tenant_id=None):
        seen["tenant"] = ctx.get_tenant_id()
        seen["agent"] = ctx.get_agent_id()
        seen["conversation"] = ctx.get_conversation_id()
        return "ok"

    with Context(conversation_id="conv-1"):
        assert view("request", agent_id="agent-7", tenant_id="acme") == "ok"
        assert tenancy.get_current_agent_id() is None  # unbound after the call
    assert seen == {"tenant": "acme", "agent": "agent-7", "conversation": "conv-1"}


@pytest.mark.django_db
def test_with_context_takes_ids_from_positional_arguments_too(acme):
    @with_context(agent=True, validate_tenant=False)
    def handler(agent_id):
        return tenancy.get_current_agent_id()

    assert handler("agent-3") == "agent-3"


@pytest.mark.django_db
def test_with_context_falls_back_to_the_current_context(acme):
    @with_context
    def service():
        return tenancy.get_current_tenant_id()

    with tenancy.switch("acme"):
        assert service() == "acme"
    with pytest.raises(TenantRequiredError):
        service()


def test_with_context_without_validation_allows_no_tenant():
    @with_context(tenant=True, validate_tenant=False)
    def public(ctx):
        return tenancy.get_current_tenant_id(), ctx

    tenant, ctx = public()
    assert tenant is None
    assert isinstance(ctx, Context)
    with pytest.raises(TenantRequiredError):
        ctx.get_tenant_id()  # still validates


def test_with_context_does_not_override_an_explicit_ctx():
    mine = Context(agent_id="mine")

    @with_context(validate_tenant=False)
    def fn(ctx=None):
        return ctx

    assert fn(ctx=mine) is mine
    assert fn(mine) is mine


@pytest.mark.django_db(transaction=True)
async def test_with_context_async_binds_for_the_call_only(acme):
    @with_context(tenant=True, agent=True, collection=True)
    async def handler(agent_id: str, ctx: Context, tenant_id: str | None = None):
        return ctx.get_tenant_id(), ctx.get_agent_id(), ctx.get_collection_id()

    async with Context(collection_id="col-1"):
        assert await handler(agent_id="agent-1", tenant_id="acme") == ("acme", "agent-1", "col-1")
        assert tenancy.get_current_tenant_id() is None
    with pytest.raises(TenantRequiredError):
        await handler(agent_id="agent-1")


@pytest.mark.django_db(transaction=True)
async def test_with_context_async_rejects_unknown_tenant_before_running(acme):
    ran = []

    @with_context
    async def handler(tenant_id):
        ran.append(tenant_id)

    with pytest.raises(TenantNotRegisteredError):
        await handler(tenant_id="ghost")
    with pytest.raises(InvalidTenantIdError):
        await handler(tenant_id="Bad Id")
    assert ran == []


def test_with_context_keeps_the_function_metadata():
    @with_context(validate_tenant=False)
    def documented():
        """Docs stay."""

    assert documented.__name__ == "documented"
    assert documented.__doc__ == "Docs stay."


# -- bind_value: the fast path of a switch -------------------------------------------


@pytest.mark.parametrize("intern", [False, True])
def test_bind_value_on_an_empty_context(intern):
    token = bind_value("tenant_id", "acme", intern=intern)
    try:
        assert tenancy.get_full_context() == {"tenant_id": "acme"}
    finally:
        tenancy.reset_context(token)
    assert tenancy.get_context() is None


@pytest.mark.parametrize("intern", [False, True])
def test_bind_value_keeps_what_is_bound_and_restores_it(intern):
    outer = bind({"request_id": "req-12345678", "tenant_id": "globex"})
    try:
        before = tenancy.get_context()
        token = bind_value("tenant_id", "acme", intern=intern)
        try:
            assert tenancy.get_full_context() == {"request_id": "req-12345678", "tenant_id": "acme"}
        finally:
            tenancy.reset_context(token)
        assert tenancy.get_context() is before
        assert before.variables == {"request_id": "req-12345678", "tenant_id": "globex"}
    finally:
        tenancy.reset_context(outer)


def test_interned_snapshots_are_shared_and_stay_immutable():
    first = bind_value("tenant_id", "acme", intern=True)
    snapshot = tenancy.get_context()
    tenancy.reset_context(first)
    second = bind_value("tenant_id", "acme", intern=True)
    try:
        assert tenancy.get_context() is snapshot
        with pytest.raises(TypeError):
            snapshot.variables["tenant_id"] = "globex"  # type: ignore[index]
        with pytest.raises(AttributeError):
            snapshot._data = {}  # type: ignore[misc]
        # Binding on top makes a new snapshot; the shared one is untouched.
        with tenancy.Context(agent_id="agent-1"):
            assert tenancy.get_full_context() == {"tenant_id": "acme", "agent_id": "agent-1"}
        assert snapshot.variables == {"tenant_id": "acme"}
    finally:
        tenancy.reset_context(second)


# -- malformed ids never get bound -------------------------------------------------------


@pytest.mark.parametrize("key", ["agent_id", "conversation_id", "collection_id"])
@pytest.mark.parametrize("bad", ["x\nlevel=ERROR forged", "a b", "", "ü", "x" * 129, "<script>"])
def test_context_refuses_malformed_context_ids(key, bad):
    with pytest.raises(tenancy.InvalidContextIdError) as info:
        Context(**{key: bad})
    assert info.value.code == "invalid_context_id"
    assert info.value.status_code == 400
    assert "\n" not in str(info.value) and "forged" not in str(info.value)


def test_context_refuses_a_malformed_tenant_but_allows_the_reserved_default():
    with pytest.raises(InvalidTenantIdError):
        Context(tenant_id="Acme\r\nX-Evil: 1")
    with Context(tenant_id="default") as ctx:  # "no tenant", as the seeds use it
        with pytest.raises(TenantRequiredError):
            ctx.get_tenant_id()


def test_with_context_refuses_malformed_ids_from_arguments_before_running():
    ran = []

    @with_context(agent=True, validate_tenant=False)
    def view(request, agent_id):
        ran.append(agent_id)

    with pytest.raises(tenancy.InvalidContextIdError):
        view("request", agent_id="agent\n12")
    with pytest.raises(InvalidTenantIdError):
        view("request", agent_id="agent-12", tenant_id="Not/A/Tenant")
    assert ran == []
    assert tenancy.get_context() is None


def test_values_bound_at_low_level_are_escaped_in_log_prefixes_and_left_out_of_headers():
    from tenancy.log import get_context_log_prefix
    from tenancy.propagation import add_context_to_headers

    token = tenancy.set_current_agent_id("x\nlevel=ERROR forged")
    try:
        prefix = get_context_log_prefix()
        assert "\n" not in prefix and " forged" not in prefix
        assert prefix == "[a:x\\nlevel=ERROR\\x20forged] "
        assert "X-Agent-ID" not in add_context_to_headers({"Accept": "application/json"})
    finally:
        tenancy.reset_context(token)
