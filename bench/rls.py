"""Row-level security: the added cost per query and per request, wall on against wall off.

Run on PostgreSQL, as a superuser that may create roles and databases::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rls .venv/bin/python -m bench.rls

It makes a scratch database (the URL's name + ``_bench``) and the roles of
docs/rls.md, then alternates rounds with the wall off (no policies, setting off)
and on (policies, setting on), connected as the application role. Wall-clock
medians: the cost is a round trip's worth of server work, not Python CPU.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.rls_bench_settings")

QUERIES = 2000
REQUESTS = 300
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 9))


def main() -> None:
    import django

    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        sys.exit("bench.rls needs DATABASE_URL=postgres://... (a superuser)")
    os.environ["DATABASE_URL"] = base.rsplit("/", 1)[0] + "/" + base.rsplit("/", 1)[1] + "_bench"
    django.setup()
    from django.conf import settings
    from django.db import connection, connections
    from django.test import Client, override_settings
    from django.test.utils import setup_test_environment

    import tenancy
    from tenancy import rls
    from tests.rls_roles import app_alias, create_roles, drop_roles
    from tests.testapp.models import Project

    setup_test_environment()
    creation = connection.creation
    test_name = creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    owner_user = connection.settings_dict["USER"]
    try:
        for n in range(20):
            tenancy.register_tenant(f"bench-{n:02d}", f"Bench {n}")
            with tenancy.switch(f"bench-{n:02d}"):
                Project.objects.bulk_create([Project(name=f"p{i}") for i in range(25)])
        _app, bypass = create_roles()
        on = {**settings.TENANCY, "ROW_LEVEL_SECURITY": True, "RLS_BYPASS_ROLE": bypass}
        off = {**settings.TENANCY, "ROW_LEVEL_SECURITY": False}
        timings: dict[str, list[float]] = {
            f"{what} {label}": [] for what in ("query", "cpu", "request") for label in ("off", "on")
        }
        with app_alias("owner", USER=owner_user):
            # Requests and queries run as the application role; the owner moves the policies.
            connection.close()
            connection.settings_dict["USER"] = _app
            for round_ in range(ROUNDS):
                for label, tenancy_settings in (("off", off), ("on", on))[:: 1 - 2 * (round_ % 2)]:
                    with override_settings(TENANCY=tenancy_settings):
                        rls.sync_policies("owner")
                        connection.close()  # a new connection: the wrapper follows the setting
                        wall, cpu = per_query(connection)
                        timings[f"query {label}"].append(wall * 1e6)
                        timings[f"cpu {label}"].append(cpu * 1e6)
                        timings[f"request {label}"].append(per_request(Client()) * 1e6)
            for label, tenancy_settings in (("off", off), ("on", on)):
                with override_settings(TENANCY=tenancy_settings):
                    rls.sync_policies("owner")
                    connection.close()
                    show_statements(label, Client())
            connection.close()
            connection.settings_dict["USER"] = owner_user
            with override_settings(TENANCY=off):
                rls.sync_policies("owner")
        report(timings, test_name)
    finally:
        connections.close_all()
        connection.settings_dict["USER"] = owner_user
        drop_roles()
        creation.destroy_test_db(test_name, verbosity=0)


def per_query(app) -> tuple[float, float]:
    """Seconds (wall, this process's CPU) per raw ``SELECT`` of one tenant's 25 rows, autocommit.

    The statement carries the ORM's own condition, so both runs return the same rows.
    """
    import tenancy

    query = "SELECT id, name FROM testapp_project WHERE tenant_id = %s"
    with tenancy.switch("bench-07"), app.cursor() as cursor:
        cursor.execute(query, ["bench-07"])  # warm
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(QUERIES):
            cursor.execute(query, ["bench-07"])
            assert len(cursor.fetchall()) == 25
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        return wall / QUERIES, cpu / QUERIES


def per_request(client) -> float:
    """Seconds per request of a view: the middleware, two statements in ``atomic()``."""
    headers = {"X-Tenant-ID": "bench-07"}
    target = "/rls/rows-sync?atomic=1&where=1"
    assert client.get(target, headers=headers).status_code == 200
    started = time.perf_counter()
    for _ in range(REQUESTS):
        response = client.get(target, headers=headers)
    elapsed = time.perf_counter() - started
    assert len(response.json()["rows"]) == 25
    return elapsed / REQUESTS


def show_statements(label: str, client) -> None:
    """Print the statements one request sends, as psycopg sent them."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get("/rls/rows-sync?atomic=1&where=1", headers={"X-Tenant-ID": "bench-07"})
    with CaptureQueriesContext(connection) as captured:
        client.get("/rls/rows-sync?atomic=1&where=1", headers={"X-Tenant-ID": "bench-07"})
    print(f"\nOne request, wall {label}:")
    for query in captured.captured_queries:
        print("   ", query["sql"])


def report(timings: dict[str, list[float]], name: str) -> None:
    med = {k: statistics.median(v) for k, v in timings.items()}
    print(f"\nRow-level security on PostgreSQL ({name}): medians of {ROUNDS} interleaved rounds")
    print("| what | wall off | wall on | added (median of per-round differences) |")
    print("|---|---:|---:|---:|")
    rows = (
        ("query", "per query, wall (raw SELECT, autocommit)"),
        ("cpu", "per query, client CPU"),
        ("request", "per request, wall (middleware, 2 statements in atomic())"),
    )
    for what, label in rows:
        off, on = med[f"{what} off"], med[f"{what} on"]
        added = statistics.median(
            b - a for a, b in zip(timings[f"{what} off"], timings[f"{what} on"], strict=True)
        )
        print(f"| {label} | {off:.1f} µs | {on:.1f} µs | {added:+.1f} µs |")


if __name__ == "__main__":
    main()
