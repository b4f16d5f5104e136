"""Statistics costs: counting each request in Redis, and one flush of 10,000 tenant-hours.

    DATABASE_URL=postgres://... CACHE_URL=redis://... python -m bench.stats
    python -m bench.stats --only request      # or --only flush; --tenants 10000

Run by hand, like the other benchmarks (it needs only the test extra). It
creates the tables it needs in the database DATABASE_URL names (default: a
throwaway SQLite file) and deletes its tenants when done.

- **request**: the wall time of a request through ``TenantContextMiddleware`` and
  Django's test client, counted in this process only (``STATS_SHARED`` off) and
  added to Redis at the end of the request (on); interleaved rounds, medians.
  Wall time, not CPU time: the Redis round trip is the cost.
- **flush**: ``write_pending()`` of one batch of ``--tenants`` tenant-hours, into
  new buckets and into buckets that exist (the usual case), and, for
  comparison, the bucket-by-bucket writer used before (``add_one_by_one``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

ROUNDS = 15
REQUESTS = 300


def configure(tmpdir: str) -> None:
    import django
    import environ
    from django.conf import settings

    env = environ.Env()
    database = env.db("DATABASE_URL", default=f"sqlite:///{tmpdir}/bench-stats.sqlite3")
    caches = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    if os.environ.get("CACHE_URL", "").startswith("redis"):
        caches["redis"] = env.cache("CACHE_URL")
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only",
        ALLOWED_HOSTS=["*"],
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "tenancy"],
        MIDDLEWARE=["tenancy.middleware.TenantContextMiddleware"],
        ROOT_URLCONF="bench.stats",
        DATABASES={"default": database},
        CACHES=caches,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        TENANCY={"STATS_FLUSH_INTERVAL": 3600, "ACCESS_LOG": False, "STATS_SHARED": False},
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", "tenancy", verbosity=0, interactive=False)


def view(request):  # type: ignore[no-untyped-def]
    from django.http import HttpResponse

    return HttpResponse("ok")


def _urls():  # type: ignore[no-untyped-def]
    from django.urls import path

    return [path("count", view)]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name == "urlpatterns":  # read once Django is set up
        return _urls()
    raise AttributeError(name)


def bench_request() -> None:
    from django.conf import settings
    from django.test import Client, override_settings

    import tenancy
    from tenancy.stats.flush import flush_stats, scheduler

    if "redis" not in settings.CACHES:
        print("request: skipped (set CACHE_URL=redis://...)")
        return
    tenancy.register_tenant("bench-acme", "Bench Acme")
    variants = {
        "counted in this process": {"STATS_SHARED": False},
        "added to Redis per request": {"STATS_SHARED": True, "STATS_CACHE_ALIAS": "redis"},
    }
    base = {"STATS_FLUSH_INTERVAL": 3600, "ACCESS_LOG": False}
    client = Client()
    headers = {"X-Tenant-ID": "bench-acme"}
    timings: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for r in range(ROUNDS):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                with override_settings(TENANCY={**base, **variants[name]}):
                    scheduler.next_due = float("inf")  # no database write inside a round
                    for _ in range(20):  # warm-up
                        client.get("/count", headers=headers)
                    t0, c0 = time.perf_counter(), time.thread_time()
                    for _ in range(REQUESTS):
                        client.get("/count", headers=headers)
                    timings[name].append((time.perf_counter() - t0) / REQUESTS * 1e6)
                    cpu[name].append((time.thread_time() - c0) / REQUESTS * 1e6)
                    flush_stats()
    finally:
        from tenancy.models import Tenant

        Tenant.objects.filter(tenant_id="bench-acme").delete()
    print(f"request: {ROUNDS} rounds of {REQUESTS} requests (Django test client), medians")
    print(f"  {'':<32} {'wall':>8}    {'CPU':>8}")
    for name in variants:
        wall, used = statistics.median(timings[name]), statistics.median(cpu[name])
        print(f"  {name:<32} {wall:8.1f} µs {used:8.1f} µs")
    added = [
        statistics.median(b - a for a, b in zip(*(series[n] for n in variants), strict=True))
        for series in (timings, cpu)
    ]
    print(f"  {'added by the Redis write':<32} {added[0]:8.1f} µs {added[1]:8.1f} µs")
    with override_settings(TENANCY={**base, **variants["added to Redis per request"]}):
        push, ping = push_and_ping_us()
    print(f"  {'the Redis write alone':<32} {push:8.1f} µs (count + push_counts(), in a loop)")
    print(f"  {'reference: one Redis PING':<32} {ping:8.1f} µs (this machine's round trip)")


def push_and_ping_us() -> tuple[float, float]:
    from django.core.cache import caches

    from tenancy.stats.counters import counters
    from tenancy.stats.flush import push_counts
    from tenancy.stats.shared import shared_counts

    client = caches["redis"]._cache.get_client(None, write=True)
    pushes, pings = [], []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for _ in range(REQUESTS):
            counters.request_done("bench-acme")
            push_counts()
        pushes.append((time.perf_counter() - t0) / REQUESTS * 1e6)
        t0 = time.perf_counter()
        for _ in range(REQUESTS):
            client.ping()
        pings.append((time.perf_counter() - t0) / REQUESTS * 1e6)
    shared_counts.clear()
    return statistics.median(pushes), statistics.median(pings)


def bench_flush(tenants: int) -> None:
    from django.db import connection, transaction
    from django.db.models import F, Sum

    from tenancy.models import Tenant, TenantStatsBucket
    from tenancy.stats.counters import Pending
    from tenancy.stats.flush import write_pending
    from tenancy.stats.upsert import add_one_by_one

    ids = [f"bench-{i:06d}" for i in range(tenants)]
    Tenant.objects.bulk_create([Tenant(tenant_id=i, name=i) for i in ids], batch_size=5000)
    hour = int(time.time() // 3600) * 3600 - 3600 * 24 * 400  # an hour nobody else writes

    def batch() -> dict[tuple[str, int], Pending]:
        now = time.time()
        return {(i, hour): Pending(3, 2, 1, now) for i in ids}

    def timed(label: str, write) -> None:  # type: ignore[no-untyped-def]
        pending = batch()
        t0 = time.perf_counter()
        written = write(pending)
        elapsed = time.perf_counter() - t0
        print(f"  {label:<44} {elapsed * 1000:9.1f} ms  ({written} buckets)")

    def plain_update(pending):  # type: ignore[no-untyped-def]
        # What this database takes to change 10,000 rows at all: the floor of any writer.
        with transaction.atomic():
            return TenantStatsBucket.objects.filter(tenant_id__in=ids, hour__isnull=False).update(
                requests=F("requests") + 0
            )

    def one_by_one(pending):  # type: ignore[no-untyped-def]
        with transaction.atomic():
            return add_one_by_one(TenantStatsBucket, pending, using="default")

    print(f"flush: one batch of {tenants:,} tenant-hours on {connection.vendor}")
    try:
        timed("write_pending, new buckets", lambda p: write_pending(p, using="default"))
        timed("write_pending, existing buckets", lambda p: write_pending(p, using="default"))
        timed(
            "write_pending, existing, as a shared batch",
            lambda p: write_pending(p, using="default", batch=("bench", 1)),
        )
        timed("before: bucket by bucket, existing buckets", one_by_one)
        timed("reference: one plain UPDATE of those rows", plain_update)
        total = TenantStatsBucket.objects.filter(hour__isnull=False, tenant_id__in=ids[:1])
        assert total.aggregate(s=Sum("switches"))["s"] == 12, "each write added once"
    finally:
        TenantStatsBucket.objects.filter(tenant_id__in=ids).delete()
        Tenant.objects.filter(tenant_id__in=ids).delete()
        from tenancy.models import TenantStatsBatch

        TenantStatsBatch.objects.filter(epoch="bench").delete()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["request", "flush"])
    parser.add_argument("--tenants", type=int, default=10_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmpdir:
        configure(tmpdir)
        print(f"python {sys.version.split()[0]}")
        if args.only in (None, "request"):
            bench_request()
        if args.only in (None, "flush"):
            bench_flush(args.tenants)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
