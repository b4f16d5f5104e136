"""Scale: 100, 10,000 and 100,000 tenants with 30 days of hourly statistics, on PostgreSQL.

Run by hand (it rebuilds the database it is given, and 100,000 tenants take a
while and several GB)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/scale CACHE_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python -m bench.scale --sizes 100,10000,100000

With ``{size}`` in the database name (``.../scale_{size}``) each size gets a
database of its own, created when missing, and ``--reuse`` measures a database
built by an earlier run again without rebuilding it (the 100,000-tenant build
takes about half an hour)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/scale_{size} \\
        .venv/bin/python -m bench.scale --sizes 100,10000,100000 --reuse

For each size it fills the tables with ``generate_series`` (tenants, one
membership each, a bucket per tenant and hour for 30 days except the last two
days of every third tenant, and the roll-ups derived from the buckets), then
prints one column per size:

- a warm ``switch()`` of a random tenant of a 10,000-tenant hot set (the whole
  population when smaller) and of a 100-tenant hot set: the median of 9
  rounds of 30,000 switches each (mean µs per switch in each round), the two
  hot sets taking turns round by round, their ratio, and the queries of all
  of them; then the 10,000-tenant hot set with Redis as
  ``TENANCY["CACHE_ALIAS"]`` and its ratio to the local cache. The population
  does not change the cost of a switch (only the hot set is cached); the size
  of the hot set does, as what it touches outgrows the CPU's caches;
- the admin pages through Django's test client, logged in as a superuser:
  median ms of 5 loads and the queries of one;
- ``manage.py tenancy stats --limit 20`` and ``tenancy list --json`` (seconds);
- one flush of 10,000 tenant-hours (``write_pending``, existing buckets: the update path).

Wall time (``time.perf_counter``) throughout: these figures include the
database and Redis round trips, which the CPU time of this thread would not.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from urllib.parse import urlparse

import django
from django.conf import settings

HOT_SET = 10_000
SWITCHES = 30_000
ROUNDS = 9
LOADS = 5
HOURS = 30 * 24


def configure() -> None:
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/scale")
    db = urlparse(url)
    if db.scheme not in ("postgres", "postgresql"):
        sys.exit("bench.scale needs PostgreSQL: DATABASE_URL=postgres://...")
    settings.configure(
        SECRET_KEY="bench-only",
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        USE_TZ=True,
        TIME_ZONE="UTC",
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "tenancy",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        ROOT_URLCONF="bench.scale_urls",
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": db.path.lstrip("/"),
                "USER": db.username or "postgres",
                "PASSWORD": db.password or "",
                "HOST": db.hostname or "127.0.0.1",
                "PORT": db.port or 5432,
            }
        },
        CACHES={
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "redis": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": os.environ.get("CACHE_URL", "redis://127.0.0.1:6379/5"),
            },
        },
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        # No write lands in a measurement: the flush is measured on its own.
        TENANCY={"STATS_AUTO_FLUSH": False, "STATS_FLUSH_INTERVAL": 3600},
    )
    django.setup()


def use_database(size: int) -> None:
    """Point the default connection at the database of *size* when the URL names one per size."""
    from django.core.management import call_command
    from django.db import connection

    template = urlparse(os.environ.get("DATABASE_URL", "")).path.lstrip("/")
    if "{size}" in template:
        name = template.format(size=size)
        connection.close()
        connection.settings_dict["NAME"] = "postgres"
        with connection.cursor() as c:
            c.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if c.fetchone() is None:
                c.execute(f'CREATE DATABASE "{name}"')
        connection.close()
        connection.settings_dict["NAME"] = name
    call_command("migrate", "--noinput", verbosity=0)


def populate(size: int) -> None:
    """Fill every table for *size* tenants (truncating what was there)."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from tenancy.stats.rollup import window_start

    with connection.cursor() as c:
        # Bulk load: no foreign-key trigger per row (the rows are consistent by construction).
        c.execute("SET session_replication_role = replica")
        c.execute(
            "TRUNCATE tenancy_tenantstatsbucket, tenancy_tenantstatsday, "
            "tenancy_tenantstatshourtotal, tenancy_tenantstatswindow, "
            "tenancy_tenantmembership, tenancy_tenant CASCADE"
        )
        c.execute(
            "INSERT INTO tenancy_tenant "
            "(tenant_id, name, active, metadata, created_at, updated_at) "
            "SELECT 't' || lpad(i::text, 6, '0'), 'Tenant ' || i, i %% 10 <> 0, '{}', now(), now() "
            "FROM generate_series(1, %s) i",
            [size],
        )
        user = get_user_model().objects.get(username="scale-admin")
        c.execute(
            "INSERT INTO tenancy_tenantmembership (tenant_id, user_id, role, created_at) "
            "SELECT tenant_id, %s, 'member', now() FROM tenancy_tenant",
            [user.pk],
        )
        # Hourly buckets: 30 days per tenant, but every third tenant idle for two days.
        c.execute(
            "INSERT INTO tenancy_tenantstatsbucket "
            "(tenant_id, hour, switches, requests, denied_requests, last_activity) "
            "SELECT t.tenant_id, h, (t.id + k) %% 13, (t.id * 3 + k) %% 11, "
            "CASE WHEN (t.id + k) %% 5 = 0 THEN 1 ELSE 0 END, h + interval '59 minutes' "
            "FROM tenancy_tenant t "
            "CROSS JOIN generate_series(0, %s) k "
            "CROSS JOIN LATERAL (SELECT date_trunc('hour', now()) - k * interval '1 hour' AS h) x "
            "WHERE NOT (t.id %% 3 = 0 AND k < 48)",
            [HOURS - 1],
        )
        c.execute(
            "INSERT INTO tenancy_tenantstatsday "
            "(tenant_id, day, switches, requests, denied_requests) "
            "SELECT tenant_id, (hour AT TIME ZONE 'UTC')::date, sum(switches), sum(requests), "
            "sum(denied_requests) FROM tenancy_tenantstatsbucket GROUP BY 1, 2"
        )
        c.execute(
            "INSERT INTO tenancy_tenantstatshourtotal (hour, switches, requests, denied_requests) "
            "SELECT hour, sum(switches), sum(requests), sum(denied_requests) "
            "FROM tenancy_tenantstatsbucket GROUP BY hour"
        )
        start = window_start()
        c.execute(
            "INSERT INTO tenancy_tenantstatswindow "
            "(tenant_id, since, switches, requests, denied_requests, last_activity, last_denied) "
            "SELECT d.tenant_id, %s, sum(switches), sum(requests), sum(denied_requests), "
            "(SELECT max(last_activity) FROM tenancy_tenantstatsbucket b "
            " WHERE b.tenant_id = d.tenant_id), NULL "
            "FROM tenancy_tenantstatsday d WHERE day >= %s GROUP BY d.tenant_id",
            [start, start],
        )
        c.execute("SET session_replication_role = DEFAULT")
    connection.cursor().execute("VACUUM ANALYZE")


def timed(action: Callable[[], object], loads: int = LOADS) -> tuple[float, int]:
    """Median ms of *loads* runs of *action*, and the queries of the last one."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    action()  # warm: templates compiled, connection open
    times = []
    for _ in range(loads):
        with CaptureQueriesContext(connection) as queries:
            begin = time.perf_counter()
            action()
            times.append((time.perf_counter() - begin) * 1000)
    return statistics.median(times), len(queries)


def warm_switch(alias: str) -> tuple[dict[int, float], int]:
    """Median µs per warm switch of a random tenant of each hot set, and the queries of all.

    ROUNDS rounds of SWITCHES switches per hot set (HOT_SET tenants, or the
    whole population when smaller, and 100 of them), the two hot sets taking
    turns round by round, so that both medians come from the same minutes of
    the machine's life and their ratio is not a drift between two phases.
    """
    from django.db import connection
    from django.test import override_settings
    from django.test.utils import CaptureQueriesContext

    import tenancy
    from tenancy.models import Tenant
    from tenancy.registry import reset_all_caches
    from tenancy.stats.counters import counters

    active = Tenant.objects.filter(active=True).order_by("tenant_id")
    hot = list(active.values_list("tenant_id", flat=True)[:HOT_SET])
    hot_sets = {HOT_SET: hot, 100: hot[:100]}
    rounds: dict[int, list[float]] = {size: [] for size in hot_sets}
    with override_settings(TENANCY={**settings.TENANCY, "CACHE_ALIAS": alias}):
        reset_all_caches()
        for tenant_id in hot:  # warm every tenant of the hot set
            with tenancy.switch(tenant_id):
                pass
        switch = tenancy.switch
        with CaptureQueriesContext(connection) as queries:
            for _ in range(ROUNDS):
                for size, tenants in hot_sets.items():
                    picks = [random.choice(tenants) for _ in range(SWITCHES)]
                    begin = time.perf_counter()
                    for tenant_id in picks:
                        with switch(tenant_id):
                            pass
                    rounds[size].append((time.perf_counter() - begin) / SWITCHES * 1e6)
        reset_all_caches()
    counters.take_pending()  # not measured: nothing of it is written
    return {size: statistics.median(times) for size, times in rounds.items()}, len(queries)


def command(*args: str) -> float:
    from django.core.management import call_command

    begin = time.perf_counter()
    call_command("tenancy", *args, stdout=io.StringIO())
    return time.perf_counter() - begin


def flush(size: int) -> tuple[float, float]:
    """Seconds of one flush of 10,000 tenant-hours (buckets that exist), and of its roll-up alone.

    10,000 tenants in one hour, or every tenant in as many recent hours as make 10,000.
    The roll-up is then timed again on its own, in a transaction rolled back.
    """
    from datetime import UTC, datetime

    from django.db import transaction

    from tenancy.models import TenantStatsBucket
    from tenancy.stats.counters import Pending
    from tenancy.stats.flush import write_pending
    from tenancy.stats.rollup import roll_up

    tenants = min(size, 10_000)
    hours = 10_000 // tenants
    last = int(time.time() // 3600) * 3600 - 3 * 24 * 3600  # hours every tenant has buckets for
    pending = {
        (f"t{i:06d}", last - k * 3600): Pending(1, 1, 0, last + 30.0)
        for i in range(1, tenants + 1)
        for k in range(hours)
    }
    # As in a running process, the hour's first flush inserts its buckets (one
    # after another on the table's pages) and the next flushes update them.
    moments = {datetime.fromtimestamp(last - k * 3600, tz=UTC) for k in range(hours)}
    TenantStatsBucket.objects.filter(hour__in=moments).delete()
    write_pending({key: Pending(1) for key in pending}, using="default")  # warm: plans, rebase
    begin = time.perf_counter()
    write_pending(pending, using="default")
    whole = time.perf_counter() - begin
    with transaction.atomic():
        begin = time.perf_counter()
        roll_up(pending, using="default")
        rollup = time.perf_counter() - begin
        transaction.set_rollback(True)
    return whole, rollup


def measure(size: int) -> dict[str, str]:
    from django.test import Client

    from tenancy.models import Tenant

    client = Client()
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(username="scale-admin"))
    figures: dict[str, str] = {}
    local, queries = warm_switch("default")
    figures["warm switch, 10k hot set (µs, queries)"] = f"{local[HOT_SET]:.2f} µs, {queries} q"
    figures["warm switch, 100-tenant hot set (µs, queries)"] = f"{local[100]:.2f} µs, {queries} q"
    figures["  10k hot set / 100-tenant hot set"] = f"{local[HOT_SET] / local[100]:.2f}x"
    shared, queries = warm_switch("redis")
    figures["warm switch, 10k hot set, Redis (µs, q)"] = f"{shared[HOT_SET]:.2f} µs, {queries} q"
    figures["  with Redis / local cache"] = f"{shared[HOT_SET] / local[HOT_SET]:.2f}x"
    per_page = 50  # TenantAdmin.list_per_page
    last_page = max(1, (size + per_page - 1) // per_page)
    change = Tenant.objects.get(tenant_id="t000002").pk
    pages = {
        "statistics page": "/admin/tenancy/tenant/statistics/",
        "statistics page, 30 days, page 2": "/admin/tenancy/tenant/statistics/?window=30d&p=2",
        "tenant list, page 1": "/admin/tenancy/tenant/",
        "tenant list, page 500 (or the last)": f"/admin/tenancy/tenant/?p={min(500, last_page)}",
        "tenant list, sorted by usage": "/admin/tenancy/tenant/?o=5",
        "tenant list, active in 24 h": "/admin/tenancy/tenant/?activity=24h",
        "change page": f"/admin/tenancy/tenant/{change}/change/",
    }
    for label, url in pages.items():

        def load(url: str = url) -> None:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)

        ms, queries = timed(load)
        figures[f"{label} (ms, queries)"] = f"{ms:.0f} ms, {queries} q"
    figures["tenancy stats --limit 20 (s)"] = f"{command('stats', '--limit', '20'):.2f} s"
    figures["tenancy list --json, all (s)"] = f"{command('list', '--json'):.2f} s"
    whole, rollup = flush(size)
    figures["flush of 10,000 tenant-hours (s)"] = f"{whole:.3f} s"
    figures["  the roll-up alone, timed again (s)"] = f"{rollup:.3f} s"
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", default="100,10000,100000", help="Comma-separated (100,10000,100000)."
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="Measure the tenants already there when they are as many as the size asked.",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    configure()
    from django.contrib.auth import get_user_model

    from tenancy.models import Tenant

    random.seed(16)
    columns: dict[int, dict[str, str]] = {}
    for size in sizes:
        use_database(size)
        users = get_user_model().objects
        if not users.filter(username="scale-admin").exists():
            users.create_superuser("scale-admin", "admin@example.com", "x")
        if not (args.reuse and Tenant.objects.count() == size):
            begin = time.perf_counter()
            populate(size)
            print(f"{size:,} tenants built in {time.perf_counter() - begin:.0f} s", file=sys.stderr)
        columns[size] = measure(size)
    labels = list(next(iter(columns.values())))
    width = max(len(label) for label in labels)
    print(f"{'':<{width}}  " + "  ".join(f"{f'{s:,} tenants':>18}" for s in sizes))
    for label in labels:
        print(f"{label:<{width}}  " + "  ".join(f"{columns[s][label]:>18}" for s in sizes))


if __name__ == "__main__":
    main()
