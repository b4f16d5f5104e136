"""``manage.py tenancy``: each action, its JSON output, and bad input as a CommandError."""

from __future__ import annotations

import json
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

import tenancy
from tenancy.models import Tenant
from tenancy.stats.counters import Pending, counters
from tenancy.stats.flush import write_pending
from tests.testapp.models import Project


def run(*args: str) -> str:
    out = StringIO()
    call_command("tenancy", *args, stdout=out)
    return out.getvalue()


@pytest.fixture(autouse=True)
def _fresh_counters():
    counters.take_pending()
    yield
    counters.take_pending()


@pytest.mark.django_db
def test_register_then_list():
    assert "Registered tenant acme (active)." in run(
        "register", "acme", "Acme", "--metadata", '{"plan": "pro"}'
    )
    assert "(inactive)" in run("register", "globex", "Globex", "--inactive")
    assert tenancy.get_tenant("acme").metadata == {"plan": "pro"}
    assert not tenancy.is_tenant_active("globex")
    lines = run("list").splitlines()
    assert lines == ["acme    active    Acme", "globex  inactive  Globex"]
    data = json.loads(run("list", "--json"))
    assert [(t["tenant_id"], t["active"], t["metadata"]) for t in data] == [
        ("acme", True, {"plan": "pro"}),
        ("globex", False, {}),
    ]
    assert data[0]["created_at"].endswith("+00:00")


@pytest.mark.django_db
def test_list_without_tenants():
    assert "No tenants" in run("list")
    assert json.loads(run("list", "--json")) == []


@pytest.mark.django_db
def test_activate_deactivate_unregister(tenants):
    assert "inactive" in run("deactivate", "acme")
    assert not tenancy.is_tenant_active("acme")
    assert "is active" in run("activate", "acme")
    assert tenancy.is_tenant_active("acme")
    assert "Unregistered tenant globex." in run("unregister", "globex")
    assert not Tenant.objects.filter(tenant_id="globex").exists()


@pytest.mark.django_db
def test_stats_json_sums_every_process(tenants):
    hour = int(time.time() // 3600) * 3600
    write_pending({("acme", hour - 3600): Pending(5, 4, 1, hour - 100.0)}, using="default")
    with tenancy.switch("acme"):  # pending in this process
        pass
    data = json.loads(run("stats", "--json", "--hours", "3"))
    assert data["total_tenants"] == 2 and data["active_tenants"] == 2
    assert (data["total_switches"], data["total_requests"], data["total_denied_requests"]) == (
        6,
        4,
        1,
    )
    acme = next(t for t in data["tenants"] if t["tenant_id"] == "acme")
    assert (acme["switches"], acme["requests"], acme["denied_requests"]) == (6, 4, 1)
    assert [h["switches"] for h in data["hourly"]] == [0, 5, 1]
    text = run("stats")
    assert "2 tenants (2 active); last 30 days: 6 switches, 4 requests, 1 denied." in text
    assert any(line.startswith("acme ") and " 6 " in line for line in text.splitlines())


@pytest.mark.parametrize(
    "args, message",
    [
        (("register", "Bad Id", "Name"), "Invalid tenant id"),
        (("register", "default", "Name"), "reserved"),
        (("register", "acme", "Again"), "already registered"),
        (("register", "newco", "  "), "non-empty name"),
        (("register", "newco", "New", "--metadata", "{oops"), "must be valid JSON"),
        (("register", "newco", "New", "--metadata", "[1]"), "must be a JSON object"),
        (("activate", "nobody"), "'nobody' is not registered"),
        (("deactivate", "UPPER"), "Invalid tenant id"),
        (("unregister", "nobody"), "not registered"),
        (("stats", "--hours", "0"), "must be at least 1"),
        (("cleanup-contexts", "--max-age-hours", "0"), "must be at least 1"),
        (("cleanup-contexts", "--max-age-hours", "-3"), "must be at least 1"),
        (("cleanup-contexts", "--max-age-hours", "soon"), "whole number of hours"),
        (("frobnicate",), "invalid choice"),
        ((), "the following arguments are required"),
    ],
)
@pytest.mark.django_db
def test_bad_input_is_a_command_error(acme, args, message):
    before = list(Tenant.objects.values_list("tenant_id", "name", "active"))
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert list(Tenant.objects.values_list("tenant_id", "name", "active")) == before


@pytest.mark.django_db
def test_unregister_refuses_a_tenant_with_data(acme):
    with tenancy.switch("acme"):
        Project.objects.create(name="Rocket")
    with pytest.raises(CommandError, match=r"still owns tenant-scoped rows \(testapp.Project\)"):
        run("unregister", "acme")
    assert Tenant.objects.filter(tenant_id="acme").exists()


@pytest.mark.django_db
def test_error_messages_never_repeat_a_malformed_id(acme):
    with pytest.raises(CommandError) as error:
        run("activate", "bad\x1b[31mid")
    assert "\x1b" not in str(error.value) and "length=" in str(error.value)


@pytest.mark.django_db
def test_cleanup_contexts_removes_exactly_the_contexts_older_than_the_limit():
    from datetime import timedelta

    from django.utils import timezone

    from tenancy import runtime
    from tenancy.models import UserRuntimeContext

    for user in ("old-user", "recent-user", "fresh-user"):
        runtime.set_user_provider("openai", user_uuid=user)
    now = timezone.now()
    UserRuntimeContext.objects.filter(user_uuid="old-user").update(
        last_access=now - timedelta(hours=49)
    )
    UserRuntimeContext.objects.filter(user_uuid="recent-user").update(
        last_access=now - timedelta(hours=47)
    )
    out = run("cleanup-contexts", "--max-age-hours", "48")
    assert "Removed 1 runtime contexts unused for 48 hours." in out
    assert sorted(UserRuntimeContext.objects.values_list("user_uuid", flat=True)) == [
        "fresh-user",
        "recent-user",
    ]
    assert "Removed 0 runtime contexts" in run("cleanup-contexts", "--max-age-hours", "48")
