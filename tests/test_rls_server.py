"""Row-level security under load: uvicorn, PgBouncer in transaction mode, 50 clients, 20 tenants.

Views read with raw SQL and no tenant condition (tests/rls_views.py), as the
application role, through a PgBouncer pool of 3 server connections shared by
16 database connections. Every response must hold its own tenant's rows and
no other's, and PostgreSQL must report its own tenant, never one of an
earlier request that ran on the same server connection.
"""

import asyncio
import json
import random
from collections import Counter

import pytest
from django.db import connection

import tenancy
from tests.rls_roles import find_pgbouncer, pgbouncer, role_names, walled_database
from tests.test_server import Connection, run_server
from tests.testapp.models import Project

pytestmark = [
    pytest.mark.server,
    pytest.mark.slow,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="row-level security is PostgreSQL's: run with DATABASE_URL=postgres://...",
    ),
]

TENANTS = [f"rls-{n:02d}" for n in range(20)]
CLIENTS = 50
REQUESTS_PER_CLIENT = 40  # 2,000 requests in all
POOL_SIZE = 3


def projects_of(tenant_id):
    return TENANTS.index(tenant_id) % 4 + 1  # 1 to 4 rows, so counts tell tenants apart


async def load(port):
    rng = random.Random(11)
    plan = []
    for _ in range(CLIENTS * REQUESTS_PER_CLIENT):
        plan.append(
            {
                # One request in ten carries no tenant: it must see no rows at all.
                "tenant": None if rng.random() < 0.1 else rng.choice(TENANTS),
                "atomic": rng.random() < 0.5,
            }
        )
    results = []

    async def client(items):
        async with Connection(port) as conn:
            for item in items:
                headers = {"X-Tenant-ID": item["tenant"]} if item["tenant"] else {}
                target = "/rls/rows" + ("?atomic=1" if item["atomic"] else "")
                status, _headers, body = await conn.get(target, headers)
                results.append((item, status, json.loads(body) if status == 200 else body))

    await asyncio.gather(*(client(plan[n::CLIENTS]) for n in range(CLIENTS)))
    return results


def test_2000_requests_through_pgbouncer_see_only_their_own_tenant(transactional_db, tmp_path):
    if find_pgbouncer() is None:
        pytest.skip("pgbouncer is not installed: run 'make pgbouncer' (apt-get install pgbouncer)")
    for tenant_id in TENANTS:
        tenancy.register_tenant(tenant_id, tenant_id.title())
        with tenancy.switch(tenant_id):
            for n in range(projects_of(tenant_id)):
                Project.objects.create(name=f"{tenant_id} {n}")
    app_role, _bypass = role_names()
    with walled_database() as bypass_role, pgbouncer(pool_size=POOL_SIZE) as (_host, port):
        env = {
            "TENANCY_RLS_DB_PORT": str(port),
            "TENANCY_RLS_DB_USER": app_role,
            "TENANCY_RLS_BYPASS_ROLE": bypass_role,
        }
        with run_server(tmp_path / "server.log", "tests.rls_server_settings", env) as (
            _url,
            server_port,
            _process,
        ):
            results = asyncio.run(load(server_port))

    assert len(results) == CLIENTS * REQUESTS_PER_CLIENT == 2000
    foreign_rows = 0
    stale_tenant = 0
    last_tenant_of_pid = {}
    reused_by_another = 0
    for item, status, body in results:
        assert status == 200, (item, status, body)
        expected = item["tenant"] or ""
        assert body["tenant"] == item["tenant"]
        foreign_rows += sum(1 for tenant_id, _name in body["rows"] if tenant_id != expected)
        stale_tenant += body["setting"] != expected
        if item["tenant"]:
            assert len(body["rows"]) == projects_of(item["tenant"]), (item, body)
        else:
            assert body["rows"] == []
        previous = last_tenant_of_pid.get(body["pid"])
        reused_by_another += previous is not None and previous != expected
        last_tenant_of_pid[body["pid"]] = expected
    print(
        f"\n{len(results)} requests, {CLIENTS} clients, {len(TENANTS)} tenants: "
        f"{foreign_rows} foreign rows, {stale_tenant} requests seeing another tenant; "
        f"{len(last_tenant_of_pid)} server connections, {reused_by_another} hand-overs "
        "between tenants"
    )
    assert foreign_rows == 0
    assert stale_tenant == 0
    # The pool was shared: few server connections, each serving many tenants in turn.
    assert len(last_tenant_of_pid) <= POOL_SIZE, Counter(b["pid"] for _i, _s, b in results)
    assert reused_by_another > 1000
