"""tenancy.otel: the context on the request's server span (the SDK's in-memory exporter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import tenancy
from tenancy import otel
from tenancy.propagation import add_context_to_headers, context_headers

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def provider():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.exporter = exporter
    return provider


@pytest.fixture
def spans(provider):
    provider.exporter.clear()
    yield provider.exporter
    provider.exporter.clear()


def serve(provider, caller, path, headers=None, **kwargs):
    """Send one request inside a server span, as an instrumented server does; return both."""
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span(f"GET {path}", kind=SpanKind.SERVER):
        response = caller.get(path, headers=headers, **kwargs)
    (span,) = provider.exporter.get_finished_spans()
    return response, span


def test_a_requests_server_span_carries_its_tenant_and_request_id(provider, spans, caller, acme):
    response, span = serve(
        provider, caller, "/req/tenant", {"X-Tenant-ID": "acme", "X-Request-ID": "req-12345678"}
    )
    assert response.status_code == 200
    assert span.kind == SpanKind.SERVER
    assert span.attributes["tenant.id"] == "acme"
    assert span.attributes["request.id"] == "req-12345678"
    assert "enduser.id" not in span.attributes
    assert otel.DENIED_ATTRIBUTE not in span.attributes


def test_a_generated_request_id_is_the_one_answered(provider, spans, caller, acme):
    response, span = serve(provider, caller, "/req/open", {"X-Tenant-ID": "acme"})
    assert span.attributes["request.id"] == response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("path", "headers", "code"),
    [
        ("/req/tenant", {}, "tenant_required"),
        ("/req/tenant", {"X-Tenant-ID": "ghost"}, "tenant_not_registered"),
        ("/req/tenant", {"X-Tenant-ID": "Not Valid"}, "invalid_tenant_id"),
        ("/req/plain-tenant", {"X-Tenant-ID": "ghost"}, "tenant_not_registered"),
        ("/req/member", {"X-Tenant-ID": "acme"}, "tenant_access_denied"),
    ],
)
def test_a_refused_requests_span_carries_the_refusal_code(
    provider, spans, caller, acme, path, headers, code
):
    user = get_user_model().objects.create_user("mallory", password="pw")
    if path == "/req/member":
        from rest_framework.authtoken.models import Token

        headers = {**headers, "Authorization": f"Token {Token.objects.create(user=user).key}"}
    response, span = serve(provider, caller, path, headers)
    assert response.status_code == 403
    assert response.json()["code"] == code
    assert span.attributes[otel.DENIED_ATTRIBUTE] == code
    assert span.attributes["request.id"] == response.headers["X-Request-ID"]
    if path == "/req/member":
        assert span.attributes["tenant.id"] == "acme"
        assert span.attributes["enduser.id"] == str(user.pk)
    else:
        assert "tenant.id" not in span.attributes


def test_an_authenticated_member_is_the_end_user(provider, spans, caller, acme):
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.create_user("alice", password="pw")
    from tenancy.models import TenantMembership

    TenantMembership.objects.create(tenant_id="acme", user=user, role="member")
    token = Token.objects.create(user=user).key
    response, span = serve(
        provider,
        caller,
        "/req/member",
        {"X-Tenant-ID": "acme", "Authorization": f"Token {token}"},
    )
    assert response.status_code == 200
    assert span.attributes["enduser.id"] == str(user.pk)
    assert span.attributes["tenant.id"] == "acme"


def test_annotate_span_reads_the_current_context_and_skips_a_non_recording_span(provider, spans):
    tracer = provider.get_tracer("tests")
    otel.annotate_span({"tenant_id": "acme"})  # no span: nothing happens, nothing raised
    with tracer.start_as_current_span("task"):
        with tenancy.Context(tenant_id="acme", request_id="task-123456", user_id=7):
            otel.annotate_span()
        otel.annotate_span({"tenant_id": "acme"}, code="tenant_inactive")
    (span,) = spans.get_finished_spans()
    assert dict(span.attributes) == {
        "tenant.id": "acme",
        "request.id": "task-123456",
        "enduser.id": "7",
        "tenancy.denied": "tenant_inactive",
    }


def test_without_opentelemetry_nothing_is_imported_and_requests_still_work(tmp_path):
    """A fresh process where ``import opentelemetry`` fails, as when it is not installed."""
    script = """
import json, sys
sys.modules["opentelemetry"] = None  # import opentelemetry -> ImportError
import django
django.setup()
from django.test.utils import setup_test_environment
setup_test_environment()
from django.test import Client
from tenancy import otel
response = Client().get("/req/open", HTTP_X_REQUEST_ID="req-12345678")
print(json.dumps({
    "available": otel.AVAILABLE,
    "status": response.status_code,
    "request_id": response.headers["X-Request-ID"],
    "imported": sorted(m for m in sys.modules if m.startswith("opentelemetry") and sys.modules[m]),
}))
"""
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {
        "available": False,
        "status": 200,
        "request_id": "req-12345678",
        "imported": [],
    }


# -- baggage ------------------------------------------------------------------------------


BAGGAGE_ON = {"BAGGAGE": True, "BAGGAGE_HOSTS": ["billing.internal", ".svc.local"]}


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("https://billing.internal/api", True),
        ("http://billing.internal:8080/api", True),
        ("https://ledger.svc.local/x", True),
        ("https://svc.local/x", True),
        ("https://evil.example/api", False),
        ("https://billing.internal.evil.example/", False),
        (None, False),
    ],
)
def test_baggage_goes_only_to_allowed_hosts(url, sent):
    with override_settings(TENANCY=BAGGAGE_ON), tenancy.Context(tenant_id="acme"):
        headers = context_headers(url=url)
    assert headers.get("baggage") == ("tenant.id=acme" if sent else None)
    assert headers["X-Tenant-ID"] == "acme"


def test_baggage_is_off_by_default():
    with tenancy.Context(tenant_id="acme"):
        assert "baggage" not in context_headers(url="https://billing.internal/")


def test_baggage_joins_the_callers_baggage_members():
    with override_settings(TENANCY=BAGGAGE_ON), tenancy.Context(tenant_id="acme"):
        headers = add_context_to_headers(
            {"Baggage": "userId=alice"}, url="https://billing.internal/"
        )
        assert headers["Baggage"] == "userId=alice,tenant.id=acme"
        kept = add_context_to_headers(
            {"baggage": "tenant.id=other"}, url="https://billing.internal/"
        )
        assert kept["baggage"] == "tenant.id=other"
        assert "baggage" not in add_context_to_headers(url="https://evil.example/")


def test_the_http_clients_send_baggage_to_allowed_hosts_only():
    import httpx
    import requests

    from tenancy.contrib.httpx import add_context_hook
    from tenancy.contrib.requests import ContextAdapter

    with override_settings(TENANCY=BAGGAGE_ON), tenancy.Context(tenant_id="acme"):
        for url, expected in (
            ("https://billing.internal/x", "a=1,tenant.id=acme"),
            ("https://evil.example/x", "a=1"),
        ):
            request = httpx.Request("GET", url, headers={"baggage": "a=1"})
            add_context_hook(request)
            assert request.headers["baggage"] == expected
            prepared = requests.Request("GET", url, headers={"baggage": "a=1"}).prepare()
            ContextAdapter().add_headers(prepared)
            assert prepared.headers["baggage"] == expected
            assert prepared.headers["X-Tenant-ID"] == "acme"
