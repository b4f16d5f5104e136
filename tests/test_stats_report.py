"""Usage read back: flushed buckets plus this process's pending counts, each counted once."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model

import tenancy
from tenancy.models import Tenant, TenantMembership
from tenancy.stats.counters import Pending, counters
from tenancy.stats.flush import flush_stats, write_pending
from tenancy.stats.report import annotate_usage, hourly_usage, tenant_usage, usage_summary

NOW = datetime(2030, 5, 17, 14, 35, tzinfo=UTC)
THIS_HOUR = int(NOW.replace(minute=0).timestamp())


@pytest.fixture(autouse=True)
def _fresh_counters():
    counters.take_pending()
    yield
    counters.take_pending()


@pytest.fixture
def members(acme):
    users = get_user_model().objects
    for name in ("ann", "bob"):
        TenantMembership.objects.create(tenant_id="acme", user=users.create_user(name))


@pytest.mark.django_db
def test_annotated_totals_are_not_multiplied_by_memberships(tenants, members):
    for hours_ago in range(3):
        hour = THIS_HOUR - hours_ago * 3600
        write_pending({("acme", hour): Pending(10, 4, 1, hour + 60.0)}, using="default")
    acme, globex = annotate_usage(Tenant.objects.order_by("tenant_id"))
    assert (acme.usage_members, acme.usage_switches, acme.usage_requests) == (2, 30, 12)
    assert acme.usage_denied_requests == 3
    assert acme.usage_last_activity == datetime.fromtimestamp(THIS_HOUR + 60, tz=UTC)
    assert (globex.usage_members, globex.usage_switches, globex.usage_last_activity) == (0, 0, None)


@pytest.mark.django_db
def test_tenant_usage_adds_pending_counts_once(tenants, members):
    an_hour_ago = int(time.time() // 3600) * 3600 - 3600
    write_pending({("acme", an_hour_ago): Pending(5, 5, 0, an_hour_ago + 1.0)}, using="default")
    with tenancy.switch("acme"):
        counters.request_done("acme", denied=True)
    usage = {u.tenant_id: u for u in tenant_usage()}
    assert (usage["acme"].switches, usage["acme"].requests, usage["acme"].denied_requests) == (
        6,
        6,
        1,
    )
    assert usage["acme"].members == 2
    assert usage["acme"].last_activity > datetime.fromtimestamp(an_hour_ago + 1, tz=UTC)
    flush_stats()
    assert {u.tenant_id: u for u in tenant_usage()}["acme"] == usage["acme"]  # same after flush


@pytest.mark.django_db
def test_summary_totals(tenants):
    tenancy.deactivate_tenant("globex")
    write_pending(
        {("acme", THIS_HOUR): Pending(3, 2, 1, 0.0), ("globex", THIS_HOUR): Pending(1, 1, 1, 0.0)},
        using="default",
    )
    assert usage_summary(tenant_usage()) == {
        "total_tenants": 2,
        "active_tenants": 1,
        "total_switches": 4,
        "total_requests": 3,
        "total_denied_requests": 2,
    }


@pytest.mark.django_db
def test_hourly_usage_covers_the_window_oldest_first(tenants):
    write_pending(
        {
            ("acme", THIS_HOUR): Pending(2, 1, 0, 0.0),
            ("globex", THIS_HOUR): Pending(3, 0, 0, 0.0),
            ("acme", THIS_HOUR - 5 * 3600): Pending(7, 7, 7, 0.0),
            ("acme", THIS_HOUR - 24 * 3600): Pending(100, 0, 0, 0.0),  # outside the window
        },
        using="default",
    )
    counters.restore_pending({("acme", THIS_HOUR - 3600): Pending(4, 0, 0, 0.0)})
    hours = hourly_usage(24, now=NOW)
    assert len(hours) == 24
    assert hours[-1].hour == NOW.replace(minute=0)
    assert hours[0].hour == NOW.replace(minute=0) - timedelta(hours=23)
    by_hour = {h.hour: (h.switches, h.requests, h.denied_requests) for h in hours}
    assert by_hour[hours[-1].hour] == (5, 1, 0)
    assert by_hour[hours[-2].hour] == (4, 0, 0)  # pending, not yet flushed
    assert by_hour[hours[-6].hour] == (7, 7, 7)
    assert sum(h.switches for h in hours) == 16


def test_hourly_usage_needs_at_least_one_hour():
    with pytest.raises(ValueError, match="at least 1"):
        hourly_usage(0)


@pytest.mark.django_db
def test_get_stats_usage_is_the_statistics_page_totals(tenants, admin_client):
    for tenant_id in ("acme", "acme", "globex"):
        with tenancy.switch(tenant_id):
            counters.request_done(tenant_id, denied=tenant_id == "globex")
    flush_stats()
    with tenancy.switch("acme"):  # pending in this process
        pass
    usage = tenancy.get_stats()["usage"]
    assert usage == {"switches": 4, "requests": 3, "denied_requests": 1}
    totals = admin_client.get("/admin/tenancy/tenant/statistics/").context["totals"]
    assert usage["switches"] == totals["total_switches"]
    assert usage["requests"] == totals["total_requests"]
    assert usage["denied_requests"] == totals["total_denied_requests"]
