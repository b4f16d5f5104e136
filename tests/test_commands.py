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


# -- list and stats: --limit, --active/--inactive, --since; list_tenants pages ----------


@pytest.fixture
def population(db):
    """Five tenants: t1..t5, t2 and t4 inactive; t1 used now, t3 used 3 days ago, t5 denied only."""
    for i in range(1, 6):
        tenancy.register_tenant(f"t{i}", f"Tenant {i}")
    for i in (2, 4):
        tenancy.deactivate_tenant(f"t{i}")
    now = time.time()
    hour = int(now // 3600) * 3600
    old = hour - 3 * 24 * 3600
    write_pending(
        {
            ("t1", hour): Pending(10, 5, 0, now),
            ("t3", old): Pending(20, 0, 0, old + 60.0),
            ("t5", hour): Pending(0, 3, 3, 0.0, now),
        },
        using="default",
    )


def ids(output: str) -> list[str]:
    return [
        line.split()[0] for line in output.splitlines() if line[:2] in {f"t{i}" for i in range(6)}
    ]


@pytest.mark.django_db
def test_list_options(population):
    assert ids(run("list")) == ["t1", "t2", "t3", "t4", "t5"]
    assert ids(run("list", "--limit", "2")) == ["t1", "t2"]
    assert ids(run("list", "--active")) == ["t1", "t3", "t5"]
    assert ids(run("list", "--inactive")) == ["t2", "t4"]
    assert ids(run("list", "--since", "24h")) == ["t1"]  # denied requests are not activity
    assert ids(run("list", "--since", "7d")) == ["t1", "t3"]
    assert "No tenants match." in run("list", "--inactive", "--since", "7d")
    data = json.loads(run("list", "--json", "--active", "--limit", "2"))
    assert [t["tenant_id"] for t in data] == ["t1", "t3"]
    assert json.loads(run("list", "--json", "--since", "1h", "--inactive")) == []


@pytest.mark.django_db
def test_stats_options(population):
    data = json.loads(run("stats", "--json"))
    assert [t["tenant_id"] for t in data["tenants"]][:2] == ["t3", "t1"]  # top first
    assert data["total_tenants"] == 5 and data["total_switches"] == 30
    t5 = next(t for t in data["tenants"] if t["tenant_id"] == "t5")
    assert t5["last_activity"] is None and t5["last_denied"] is not None
    limited = json.loads(run("stats", "--json", "--limit", "1"))
    assert [t["tenant_id"] for t in limited["tenants"]] == ["t3"]
    active = json.loads(run("stats", "--json", "--inactive"))
    assert {t["tenant_id"] for t in active["tenants"]} == {"t2", "t4"}
    recent = json.loads(run("stats", "--json", "--since", "24h", "--order", "requests"))
    assert [t["tenant_id"] for t in recent["tenants"]] == ["t1"]
    text = run("stats", "--limit", "2", "--active")
    assert ids(text) == ["t3", "t1"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, message",
    [
        (("list", "--limit", "0"), "must be at least 1"),
        (("list", "--limit", "x"), "must be a whole number"),
        (("stats", "--since", "yesterday"), "must be like 24h"),
        (("list", "--active", "--inactive"), "not allowed with argument"),
    ],
)
def test_bad_list_and_stats_options(args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)


@pytest.mark.django_db
def test_list_tenants_pages_and_iter_tenants_streams(population):
    assert [t.tenant_id for t in tenancy.list_tenants()] == ["t1", "t2", "t3", "t4", "t5"]
    assert [t.tenant_id for t in tenancy.list_tenants(limit=2, offset=1)] == ["t2", "t3"]
    assert tenancy.list_tenants(offset=10) == []
    with pytest.raises(ValueError):
        tenancy.list_tenants(offset=-1)
    assert [t.tenant_id for t in tenancy.iter_tenants()] == ["t1", "t2", "t3", "t4", "t5"]
    assert [t.tenant_id for t in tenancy.iter_tenants(active=False)] == ["t2", "t4"]
    from tenancy.registry import tenant_context

    chunks = list(tenant_context.iter_tenants(active=True, chunk_size=2))
    assert [t.tenant_id for t in chunks] == ["t1", "t3", "t5"]


@pytest.mark.django_db
def test_the_paging_example_of_docs_admin_runs(population):
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "admin.md").read_text()
    blocks = [b.split("```")[0] for b in text.split("```python\n")[1:]]
    block = next(b for b in blocks if "iter_tenants" in b)
    namespace: dict = {"__name__": "docs"}
    exec(compile(block, "docs/admin.md", "exec"), namespace)
    assert [t.tenant_id for t in namespace["first_page"]] == ["t1", "t2", "t3", "t4", "t5"]
    assert namespace["inactive"] == ["t2", "t4"]
