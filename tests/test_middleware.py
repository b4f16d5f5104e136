"""TenantContextMiddleware through Django's Client (WSGI path) and AsyncClient (ASGI path)."""

import asyncio
import logging
import uuid

import pytest
from asgiref.sync import async_to_sync, iscoroutinefunction
from django.db import connection
from django.test import AsyncClient, Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils.encoding import escape_uri_path

import tenancy
from tenancy import middleware
from tenancy.ids import is_valid_request_id
from tenancy.log import KeyValueFormatter
from tenancy.middleware import TenantContextMiddleware
from tenancy.resolvers import TenantResolver
from tenancy.stats.counters import counters

VALID_RID = "0f3c9a51-77e2-4d6c-9a43-2d0f5b1e6a11"


@pytest.fixture
def initech(db):
    tenancy.register_tenant("initech", "Initech")
    return tenancy.deactivate_tenant("initech")


def test_middleware_is_hybrid():
    assert TenantContextMiddleware.sync_capable and TenantContextMiddleware.async_capable

    async def view(request):
        return None

    assert iscoroutinefunction(TenantContextMiddleware(view))
    assert not iscoroutinefunction(TenantContextMiddleware(lambda r: None))


# -- request id ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [VALID_RID, "01HZX3K8Q9W2E4R6T8Y0U2I4O6", "abcdef12", "svc:orders.42-a_b", "a" * 128],
)
def test_valid_request_id_is_kept(caller, db, sent):
    response = caller.get("/req/plain", headers={"X-Request-ID": sent})
    assert response.status_code == 200
    assert response["X-Request-ID"] == sent
    assert response.json()["request_id"] == sent
    assert response.json()["request_attr"] == sent


@pytest.mark.parametrize(
    "sent",
    [
        "a" * 129,
        "x" * 10_000,
        "abc\r\ndef-ghij",
        "abc\ndefghijk",
        "abcd efgh ijkl",
        '"abcdefghij"',
        "abcdefgh'ijkl",
        "ábcdefghijkl",
        "abcdefgh\x00ij",
        "short",
        "-leading-dash",
        "abc=defghijk",
        "abc;defghijk",
        "../../etc/passwd",
        "",
    ],
)
def test_invalid_request_id_is_replaced(caller, db, sent):
    if caller.mode == "async":
        sent = sent.encode("utf-8").decode("latin-1")  # what an ASGI server hands over
    response = caller.get("/req/plain", headers={"X-Request-ID": sent})
    assert response.status_code == 200
    returned = response["X-Request-ID"]
    assert returned != sent
    assert str(uuid.UUID(returned)) == returned and uuid.UUID(returned).version == 4
    assert response.json()["request_id"] == returned


def test_request_ids_are_new_for_each_request(caller, db):
    first = caller.get("/req/plain")["X-Request-ID"]
    second = caller.get("/req/plain")["X-Request-ID"]
    assert first != second
    assert is_valid_request_id(first) and is_valid_request_id(second)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/req/tenant", 403),
        ("/req/forbidden", 403),
        ("/req/no-such-page", 404),
        ("/req/boom", 500),
        ("/req/boom-async", 500),
        ("/req/raise", 500),
    ],
)
def test_request_id_header_on_error_responses(caller, db, path, status):
    response = caller.get(path, headers={"X-Request-ID": VALID_RID})
    assert response.status_code == status
    assert response["X-Request-ID"] == VALID_RID
    generated = caller.get(path)
    assert generated.status_code == status
    assert is_valid_request_id(generated["X-Request-ID"])


def test_error_log_of_a_500_carries_the_request_id(caller, db, context_caplog):
    with context_caplog.at_level(logging.ERROR, logger="django.request"):
        caller.get("/req/boom", headers={"X-Request-ID": VALID_RID, "X-Tenant-ID": "nobody"})
    errors = [r for r in context_caplog.records if r.name == "django.request"]
    assert errors and all(r.request_id == VALID_RID for r in errors)


# -- tenant ----------------------------------------------------------------------------


def test_registered_active_tenant_is_bound(caller, tenants):
    body = caller.get("/req/plain", headers={"X-Tenant-ID": "acme"}).json()
    assert body["tenant_id"] == "acme"
    assert body["tenant"] == "acme"
    assert body["tenant_error"] is None


@pytest.mark.parametrize(
    ("claim", "code"),
    [
        ("nobody", "tenant_not_registered"),
        ("initech", "tenant_inactive"),
        ("Not A Slug", "invalid_tenant_id"),
        ("default", "invalid_tenant_id"),
        ("a" * 64, "invalid_tenant_id"),
    ],
)
def test_refused_claims_are_recorded_not_bound(caller, acme, initech, claim, code):
    body = caller.get("/req/plain", headers={"X-Tenant-ID": claim}).json()
    assert body["tenant_id"] is None
    assert body["tenant"] is None
    assert body["tenant_error"] == code


def test_no_claim_binds_nothing(caller, acme):
    for headers in ({}, {"X-Tenant-ID": ""}):
        body = caller.get("/req/plain", headers=headers).json()
        assert body["tenant_id"] is None and body["tenant_error"] is None


def test_deactivation_applies_to_the_next_request(caller, acme):
    assert caller.get("/req/plain", headers={"X-Tenant-ID": "acme"}).json()["tenant"] == "acme"
    tenancy.deactivate_tenant("acme")
    body = caller.get("/req/plain", headers={"X-Tenant-ID": "acme"}).json()
    assert body["tenant_error"] == "tenant_inactive"
    tenancy.activate_tenant("acme")
    assert caller.get("/req/plain", headers={"X-Tenant-ID": "acme"}).json()["tenant"] == "acme"


@override_settings(TENANCY={"TENANT_HEADER": "X-Org"})
def test_tenant_header_name_comes_from_settings(caller, acme):
    assert caller.get("/req/plain", headers={"X-Org": "acme"}).json()["tenant"] == "acme"
    assert caller.get("/req/plain", headers={"X-Tenant-ID": "acme"}).json()["tenant"] is None


def test_warm_request_makes_no_query(acme):
    client = Client()
    with CaptureQueriesContext(connection) as cold:
        client.get("/req/plain", headers={"X-Tenant-ID": "acme"})
    assert len(cold) <= 1  # the tenant lookup, unless register_tenant already cached it
    for path in ("/req/plain", "/req/tenant", "/req/plain-tenant"):
        with CaptureQueriesContext(connection) as warm:
            response = client.get(path, headers={"X-Tenant-ID": "acme"})
        assert response.status_code == 200
        assert len(warm) == 0, [q["sql"] for q in warm]


def test_warm_async_request_makes_no_query(acme):
    tenancy.get_tenant("acme")  # warm the cache

    async def send():
        client = AsyncClient()
        for path in ("/req/plain-async", "/req/plain-tenant-async"):
            response = await client.get(path, headers={"X-Tenant-ID": "acme"})
            assert response.status_code == 200

    with CaptureQueriesContext(connection) as warm:
        async_to_sync(send)()
    assert len(warm) == 0, [q["sql"] for q in warm]


def test_unknown_claims_are_cached_too(db):
    client = Client()
    client.get("/req/plain", headers={"X-Tenant-ID": "nobody"})
    with CaptureQueriesContext(connection) as warm:
        client.get("/req/plain", headers={"X-Tenant-ID": "nobody"})
    assert len(warm) == 0


def test_malformed_claims_never_reach_the_database(db):
    with CaptureQueriesContext(connection) as queries:
        Client().get("/req/plain", headers={"X-Tenant-ID": "Robert'); DROP TABLE--"})
    assert len(queries) == 0


# -- agent, conversation, collection ---------------------------------------------------


def test_context_ids_are_bound_from_headers(caller, db):
    headers = {"X-Agent-ID": "agent_12", "X-Conversation-ID": "conv-456", "X-Collection-ID": "c:7"}
    body = caller.get("/req/plain-async", headers=headers).json()
    assert (body["agent_id"], body["conversation_id"], body["collection_id"]) == (
        "agent_12",
        "conv-456",
        "c:7",
    )


def test_malformed_context_ids_are_ignored_and_logged_safely(caller, db, context_caplog):
    bad = "agent 12\r\nX-Evil: 1"
    if caller.mode == "async":
        bad = "agent 12\tX-Evil: 1"
    with context_caplog.at_level(logging.INFO, logger="tenancy"):
        body = caller.get("/req/plain", headers={"X-Agent-ID": bad, "X-Conversation-ID": "ok-1"})
        body = body.json()
    assert body["agent_id"] is None and body["conversation_id"] == "ok-1"
    (line,) = [r for r in context_caplog.records if r.name == "tenancy.middleware"]
    assert line.getMessage().startswith("Ignored an invalid X-Agent-ID header (length=")
    assert "X-Evil" not in line.getMessage()
    assert line.request_id == body["request_id"]  # logged inside the request's context


@pytest.mark.parametrize(
    ("claim", "logged"),
    [
        ("nobody", "Refused a tenant claim: tenant_not_registered (nobody)"),
        ("initech", "Refused a tenant claim: tenant_inactive (initech)"),
        ("Bad Claim!", "Refused a tenant claim: invalid_tenant_id (length=10 sha256="),
    ],
)
def test_refused_claims_are_logged_safely(caller, initech, context_caplog, claim, logged):
    with context_caplog.at_level(logging.INFO, logger="tenancy"):
        response = caller.get("/req/plain", headers={"X-Tenant-ID": claim})
    (line,) = [r for r in context_caplog.records if r.name == "tenancy.middleware"]
    assert line.getMessage().startswith(logged)
    assert line.request_id == response["X-Request-ID"]


# -- the context is restored -----------------------------------------------------------


def test_outer_context_is_restored_after_the_request(acme, globex):
    with tenancy.Context(tenant_id="acme", request_id="outer-request-1"):
        body = Client().get("/req/plain", headers={"X-Tenant-ID": "globex"}).json()
        assert body["tenant_id"] == "globex" and body["request_id"] != "outer-request-1"
        assert tenancy.get_current_tenant_id() == "acme"
        assert tenancy.get_current_request_id() == "outer-request-1"
    assert tenancy.get_context() is None or not tenancy.get_context().variables


@pytest.mark.parametrize("path", ["/req/boom", "/req/boom-async", "/req/raise", "/req/forbidden"])
def test_context_is_restored_when_the_view_raises(caller, acme, path):
    response = caller.get(path, headers={"X-Tenant-ID": "acme", "X-Agent-ID": "a1"})
    assert response.status_code >= 400
    assert tenancy.get_context() is None or not tenancy.get_context().variables


def test_concurrent_async_requests_keep_their_own_context(db):
    ids = [f"t{i:02d}" for i in range(10)]
    for tid in ids:
        tenancy.register_tenant(tid, tid.upper())

    async def one(client, n):
        tid, rid = ids[n % len(ids)], f"req-{n:04d}-{uuid.uuid4().hex[:8]}"
        response = await client.get(
            "/req/plain-async", headers={"X-Tenant-ID": tid, "X-Request-ID": rid}
        )
        body = response.json()
        return (
            (tid, rid)
            == (body["tenant_id"], body["request_id"])
            == (
                body["tenant"],
                response["X-Request-ID"],
            )
        )

    async def many():
        client = AsyncClient()
        return await asyncio.gather(*(one(client, n) for n in range(200)))

    assert all(async_to_sync(many)())


# -- errors a view raises --------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        ("required", 403, "ERROR_TENANT_REQUIRED"),
        ("exists", 409, "tenant_already_registered"),
        ("invalid", 400, "invalid_tenant_id"),
    ],
)
def test_tenancy_errors_raised_in_a_view_become_json(caller, acme, error, status, code):
    response = caller.get(f"/req/raise?error={error}", headers={"X-Request-ID": VALID_RID})
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == code and response.json()["detail"]
    assert response["X-Request-ID"] == VALID_RID


def test_scoped_query_without_tenant_is_a_403_not_a_500(caller, acme):
    response = caller.get("/req/scoped")
    assert response.status_code == 403
    assert response.json()["code"] == "ERROR_TENANT_REQUIRED"
    assert caller.get("/req/scoped", headers={"X-Tenant-ID": "acme"}).json() == {"projects": 0}


class ExplodingResolver(TenantResolver):
    def resolve(self, request):
        raise RuntimeError("resolver failure")


class RefusingResolver(TenantResolver):
    def resolve(self, request):
        raise tenancy.InvalidTenantIdError()


@override_settings(TENANCY={"RESOLVERS": ["tests.test_middleware.RefusingResolver"]})
def test_resolver_raising_a_tenancy_error_is_a_refused_claim(caller, db):
    assert caller.get("/req/plain").json()["tenant_error"] == "invalid_tenant_id"
    assert caller.get("/req/tenant").json()["code"] == "invalid_tenant_id"


@override_settings(TENANCY={"RESOLVERS": ["tests.test_middleware.ExplodingResolver"]})
def test_failing_resolver_is_a_500_with_request_id(caller, db, context_caplog):
    with context_caplog.at_level(logging.ERROR, logger="django.request"):
        response = caller.get("/req/plain", headers={"X-Request-ID": VALID_RID})
    assert response.status_code == 500
    assert response["X-Request-ID"] == VALID_RID
    assert any(r.request_id == VALID_RID for r in context_caplog.records)


# -- access log and statistics ---------------------------------------------------------


def test_one_access_line_per_request(caller, acme, context_caplog):
    with context_caplog.at_level(logging.INFO, logger="tenancy.access"):
        caller.get(
            "/req/tenant?x=secret", headers={"X-Tenant-ID": "acme", "X-Request-ID": VALID_RID}
        )
        caller.get("/req/boom", headers={"X-Tenant-ID": "acme"})
    lines = [r for r in context_caplog.records if r.name == "tenancy.access"]
    assert len(lines) == 2
    ok, failed = lines
    assert ok.getMessage() == "GET /req/tenant 200"
    assert (ok.method, ok.path, ok.status_code) == ("GET", "/req/tenant", 200)
    assert isinstance(ok.duration_ms, float) and ok.duration_ms >= 0
    assert ok.request_id == VALID_RID
    assert ok.tenant_id == "acme"
    assert "secret" not in ok.getMessage()
    assert failed.status_code == 500 and failed.tenant_id == "acme"


def test_access_log_escapes_the_path(caller, db, context_caplog):
    with context_caplog.at_level(logging.INFO, logger="tenancy.access"):
        caller.get("/req/no%0D%0Asuch%20page%22")
    (line,) = [r for r in context_caplog.records if r.name == "tenancy.access"]
    assert line.getMessage() == "GET /req/no%0D%0Asuch%20page%22 404"


def test_the_access_line_names_the_code_that_wrote_it(caller, db, context_caplog):
    # The line is built without walking the stack; it must still say where it comes from.
    with context_caplog.at_level(logging.INFO, logger="tenancy.access"):
        caller.get("/req/plain")
    (line,) = [r for r in context_caplog.records if r.name == "tenancy.access"]
    assert line.funcName == "_log_access"
    assert line.pathname == middleware.__file__
    assert line.lineno == middleware._log_access.__code__.co_firstlineno


def test_paths_logged_unescaped_are_exactly_those_escaping_leaves_alone():
    for code in range(0x250):
        char = chr(code)
        if middleware._PLAIN_PATH.fullmatch(char):
            assert escape_uri_path(char) == char, repr(char)
    assert middleware._PLAIN_PATH.fullmatch("/api/notes/12/(draft)~v1.json")


def test_new_request_ids_are_canonical_uuid4s():
    ids = [middleware.new_request_id() for _ in range(500)]
    assert len(set(ids)) == 500
    for request_id in ids:
        parsed = uuid.UUID(request_id)
        assert str(parsed) == request_id
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert is_valid_request_id(request_id)


@override_settings(TENANCY={"ACCESS_LOG": False})
def test_access_log_can_be_turned_off(caller, db, context_caplog):
    with context_caplog.at_level(logging.INFO, logger="tenancy.access"):
        caller.get("/req/plain")
    assert not [r for r in context_caplog.records if r.name == "tenancy.access"]


def test_requests_are_counted_per_tenant(caller, acme, initech):
    counters.take_pending()
    caller.get("/req/tenant", headers={"X-Tenant-ID": "acme"})
    caller.get("/req/forbidden", headers={"X-Tenant-ID": "acme"})  # 403 on a bound tenant
    caller.get("/req/tenant", headers={"X-Tenant-ID": "initech"})  # inactive: denied
    caller.get("/req/tenant", headers={"X-Tenant-ID": "nobody"})  # not registered: not counted
    caller.get("/req/tenant", headers={"X-Tenant-ID": "Bad Id"})  # malformed: not counted
    pending = counters.take_pending()
    totals = {}
    for (tid, _hour), entry in pending.items():
        requests, denied = totals.get(tid, (0, 0))
        totals[tid] = (requests + entry.requests, denied + entry.denied_requests)
    assert totals == {"acme": (2, 1), "initech": (1, 1)}


def test_flush_hook_is_called_after_each_request(caller, db, monkeypatch):
    calls = []
    monkeypatch.setattr("tenancy.middleware.flush_if_due", lambda: calls.append(1))
    caller.get("/req/plain")
    caller.get("/req/boom")
    assert len(calls) == 2


# -- hostile headers -------------------------------------------------------------------

HOSTILE = {
    "long": "a" * 10_000,
    "long-slug": "acme" * 40,
    "nul": "acme\x00",
    "crlf": "acme\r\nX-Injected: yes",
    "lf": "acme\nlevel=ERROR",
    "unicode": "ácme-租户",
    "line-separator": "acme\u2028x",
    "traversal": "../../etc/passwd",
    "sql": "acme' OR '1'='1",
    "sql-drop": "1; DROP TABLE tenancy_tenant;--",
    "empty": "",
    "spaces": "  acme  ",
    "quotes": '"acme"',
    "percent": "%0d%0aX-Evil:%201",
    "html": "<script>alert(1)</script>",
    "format": "%s%s%n{0}{tenant_id}",
}
READ_HEADERS = ["X-Tenant-ID", "X-Request-ID", "X-Agent-ID", "X-Conversation-ID", "X-Collection-ID"]
CONTROL = ("\r", "\n", "\x00", "\u2028")


@pytest.mark.parametrize("header", READ_HEADERS)
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_header_matrix(caller, acme, context_caplog, header, name):
    value = HOSTILE[name]
    if caller.mode == "async":
        value = value.encode("utf-8").decode("latin-1")  # the bytes an ASGI server hands over
    formatter = KeyValueFormatter()
    for path in ("/req/tenant", "/req/plain-tenant-async", "/req/open"):
        context_caplog.clear()
        with context_caplog.at_level(logging.DEBUG):
            # A hostile X-Request-ID replaces the valid one.
            response = caller.get(path, headers={"X-Request-ID": VALID_RID, header: value})
        assert response.status_code in (200, 403), (path, response.status_code)
        assert is_valid_request_id(response["X-Request-ID"])
        for header_value in response.headers.values():
            assert not any(c in header_value for c in CONTROL)
            assert len(value) < 3 or value not in header_value
        assert len(value) < 3 or value not in response.content.decode("utf-8", "replace")
        for record in context_caplog.records:
            message = record.getMessage()
            assert not any(c in message for c in CONTROL), (record.name, message)
            if record.name.startswith(("tenancy", "tests")):
                assert len(value) < 3 or value not in message, (record.name, message)
            assert not any(c in formatter.format(record) for c in CONTROL)


@override_settings(
    TENANCY={
        "RESOLVERS": ["tenancy.resolvers.SubdomainResolver"],
        "SUBDOMAIN_BASE_DOMAIN": "example.com",
    }
)
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_host_header(caller, acme, name):
    host = HOSTILE[name] + ".example.com"
    if caller.mode == "async":
        host = host.encode("utf-8").decode("latin-1")
    response = caller.get("/req/tenant", headers={"Host": host})
    assert response.status_code in (400, 403)
