"""The roll-ups kept by the flush: per tenant-day, per hour, and each tenant's 30-day window."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext

import tenancy
from tenancy.models import (
    TenantStatsDay,
    TenantStatsHourTotal,
    TenantStatsWindow,
)
from tenancy.stats.counters import Pending, counters
from tenancy.stats.flush import flush_stats, write_pending
from tenancy.stats.rollup import WINDOW_DAYS, rebase_windows, window_start


@pytest.fixture(autouse=True)
def _fresh_counters():
    counters.take_pending()
    yield
    counters.take_pending()


def window(tenant_id: str) -> TenantStatsWindow:
    return TenantStatsWindow.objects.get(tenant_id=tenant_id)


@pytest.mark.django_db
def test_flushes_add_to_days_hours_and_windows_exactly_once(hour, tenants):
    write_pending(
        {
            ("acme", hour): Pending(2, 3, 1, hour + 10.0, hour + 20.0),
            ("globex", hour): Pending(5, 0, 0, hour + 5.0),
        },
        using="default",
    )
    write_pending({("acme", hour): Pending(1, 1, 0, hour + 1.0)}, using="default")
    today = datetime.fromtimestamp(hour, tz=UTC).date()
    day = TenantStatsDay.objects.get(tenant_id="acme", day=today)
    assert (day.switches, day.requests, day.denied_requests) == (3, 4, 1)
    total = TenantStatsHourTotal.objects.get(hour=datetime.fromtimestamp(hour, tz=UTC))
    assert (total.switches, total.requests, total.denied_requests) == (8, 4, 1)
    acme = window("acme")
    assert (acme.switches, acme.requests, acme.denied_requests) == (3, 4, 1)
    # The later moment stays; denied requests are kept apart from activity.
    assert acme.last_activity == datetime.fromtimestamp(hour + 10, tz=UTC)
    assert acme.last_denied == datetime.fromtimestamp(hour + 20, tz=UTC)
    assert window("globex").last_denied is None


@pytest.mark.django_db
def test_roll_up_costs_three_statements_for_any_number_of_tenants(hour, tenants):
    write_pending({("acme", hour): Pending(1)}, using="default")  # today's rebase done
    for i in range(30):
        tenancy.register_tenant(f"t{i}", f"T{i}")
    pending = {
        (f"t{i}", hour - k * 3600): Pending(1, 1, 0, hour + 1.0)
        for i in range(30)
        for k in range(3)
    }
    with CaptureQueriesContext(connection) as queries:
        write_pending(pending, using="default")
    upserts = [q["sql"] for q in queries if "ON CONFLICT" in q["sql"]]
    rollups = [sql for sql in upserts if "tenantstatsbucket" not in sql.split("(")[0]]
    assert len(rollups) == 3 and len(upserts) == 4  # and the buckets' one
    assert (
        sum(w.switches for w in TenantStatsWindow.objects.filter(tenant__tenant_id__startswith="t"))
        == 90
    )


@pytest.mark.django_db
def test_counts_older_than_the_window_move_only_the_moments(hour, tenants):
    old = hour - (WINDOW_DAYS + 2) * 24 * 3600
    write_pending({("acme", old): Pending(9, 9, 9, old + 1.0)}, using="default")
    acme = window("acme")
    assert (acme.switches, acme.requests, acme.denied_requests) == (0, 0, 0)
    assert acme.last_activity == datetime.fromtimestamp(old + 1, tz=UTC)
    assert TenantStatsDay.objects.get(tenant_id="acme").switches == 9


@pytest.mark.django_db
def test_rebase_drops_the_days_that_left_the_window(hour, tenants):
    write_pending({("acme", hour): Pending(4)}, using="default")
    ten_days_ago = hour - 10 * 24 * 3600
    write_pending({("acme", ten_days_ago): Pending(6)}, using="default")
    assert window("acme").switches == 10
    # Eight days from now the window starts after the old day: a rebase drops it.
    later = datetime.fromtimestamp(hour, tz=UTC).date() + timedelta(days=WINDOW_DAYS - 8)
    assert rebase_windows(using="default", today=later) == 1
    acme = window("acme")
    assert (acme.since, acme.switches) == (window_start(later), 4)
    assert rebase_windows(using="default", today=later) == 0  # up to date: nothing to do


@pytest.mark.django_db
def test_denied_requests_do_not_count_as_activity(tenants):
    counters.request_done("globex", denied=True)
    flush_stats()
    globex = window("globex")
    assert globex.last_activity is None and globex.last_denied is not None
    counters.request_done("globex")
    flush_stats()
    assert window("globex").last_activity is not None


@pytest.mark.django_db(transaction=True)
def test_the_migration_rolls_up_existing_buckets(hour):
    executor = MigrationExecutor(connection)
    executor.migrate([("tenancy", "0001_initial")])
    try:
        apps = executor.loader.project_state([("tenancy", "0001_initial")]).apps
        Tenant = apps.get_model("tenancy", "Tenant")
        Bucket = apps.get_model("tenancy", "TenantStatsBucket")
        Tenant.objects.create(tenant_id="acme", name="Acme")
        now = datetime.fromtimestamp(hour, tz=UTC)
        for hours_ago, switches in ((0, 2), (1, 3), (24 * 40, 7)):
            Bucket.objects.create(
                tenant_id="acme",
                hour=now - timedelta(hours=hours_ago),
                switches=switches,
                requests=1,
                denied_requests=0,
                last_activity=now - timedelta(hours=hours_ago),
            )
        executor = MigrationExecutor(connection)
        executor.migrate([("tenancy", "0002_stats_windows")])
        apps = executor.loader.project_state([("tenancy", "0002_stats_windows")]).apps
        days = apps.get_model("tenancy", "TenantStatsDay").objects.filter(tenant_id="acme")
        assert sum(d.switches for d in days) == 12
        acme = apps.get_model("tenancy", "TenantStatsWindow").objects.get(tenant_id="acme")
        assert (acme.switches, acme.requests, acme.last_activity) == (5, 2, now)
        hours = apps.get_model("tenancy", "TenantStatsHourTotal").objects
        assert hours.count() == 3
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_window_start_counts_today():
    assert window_start(date(2030, 5, 30)) == date(2030, 5, 1)


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's own index")
def test_each_statistics_table_keeps_only_the_indexes_it_is_read_through():
    """A flush writes to every index of the three tables it updates: none is redundant."""
    expected = {
        "tenancy_tenantstatsbucket": {("id",), ("tenant_id", "hour"), ("hour",)},
        "tenancy_tenantstatsday": {("id",), ("tenant_id", "day")},
        "tenancy_tenantstatswindow": {
            ("id",),
            ("tenant_id",),
            ("switches",),
            ("requests",),
            ("denied_requests",),
            ("last_activity",),
        },
    }
    with connection.cursor() as cursor:
        for table, columns in expected.items():
            constraints = connection.introspection.get_constraints(cursor, table)
            indexed = [
                tuple(c["columns"])
                for c in constraints.values()
                if c["index"] or c["unique"] or c["primary_key"]
            ]
            assert sorted(indexed) == sorted(columns), table
