"""The batched writer: hourly buckets summed over threads and processes, nothing lost or doubled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import IntegrityError, connection, connections
from django.db.models import Sum
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

import tenancy
from tenancy.models import TenantStatsBucket
from tenancy.stats.counters import Pending, counters
from tenancy.stats.flush import flush_stats, read_consistently, scheduler, write_pending
from tenancy.stats.report import tenant_usage
from tenancy.stats.shared import shared_counts

ROOT = Path(__file__).resolve().parent.parent
HOUR = 3600 * 480_000  # an hour start, as epoch seconds


@pytest.fixture(autouse=True)
def _fresh_counters():
    counters.take_pending()
    scheduler.next_due = 0.0
    scheduler.background = True  # the pytest plugin turns the thread off for test runs
    yield
    scheduler.stop()
    scheduler.background = False
    counters.take_pending()


def totals(tenant_id: str) -> dict[str, int]:
    return TenantStatsBucket.objects.filter(tenant_id=tenant_id).aggregate(
        switches=Sum("switches"), requests=Sum("requests"), denied=Sum("denied_requests")
    )


@pytest.mark.django_db
def test_flush_writes_one_bucket_per_tenant_and_hour(tenants):
    for _ in range(3):
        with tenancy.switch("acme"):
            counters.request_done("acme")
    counters.request_done("globex", denied=True)
    assert flush_stats() == 2
    acme = TenantStatsBucket.objects.get(tenant_id="acme")
    assert (acme.switches, acme.requests, acme.denied_requests) == (3, 3, 0)
    assert acme.hour.minute == acme.hour.second == 0
    assert acme.last_activity >= acme.hour
    globex = TenantStatsBucket.objects.get(tenant_id="globex")
    assert (globex.switches, globex.requests, globex.denied_requests) == (0, 1, 1)
    assert flush_stats() == 0  # nothing pending: nothing written twice


@pytest.mark.django_db
def test_flush_adds_to_existing_buckets_with_increments(tenants):
    write_pending({("acme", HOUR): Pending(5, 7, 2, HOUR + 10.0)}, using="default")
    with CaptureQueriesContext(connection) as queries:
        write_pending({("acme", HOUR): Pending(1, 2, 1, HOUR + 5.0)}, using="default")
    bucket = TenantStatsBucket.objects.get(tenant_id="acme")
    assert (bucket.switches, bucket.requests, bucket.denied_requests) == (6, 9, 3)
    # The later activity stays: an older batch never moves last_activity back.
    assert bucket.last_activity == datetime.fromtimestamp(HOUR + 10, tz=UTC)
    (upsert,) = [q["sql"] for q in queries if q["sql"].lstrip().startswith("INSERT")]
    assert "ON CONFLICT" in upsert and "switches + excluded.switches" in upsert.lower()


@pytest.mark.django_db
def test_a_batch_of_any_size_is_one_statement(tenants):
    more = [tenancy.register_tenant(f"t{i:04d}", f"T {i}") for i in range(300)]
    pending = {
        (tenant.tenant_id, HOUR + 3600 * h): Pending(h + 1, 1, 0, HOUR + 3600 * h + 1.0)
        for tenant in more
        for h in range(3)
    }
    with CaptureQueriesContext(connection) as queries:
        assert write_pending(pending, using="default") == 900
    writes = [q for q in queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    assert len(writes) == 1, [q["sql"][:60] for q in writes]
    assert TenantStatsBucket.objects.count() == 900
    with CaptureQueriesContext(connection) as queries:
        assert write_pending(pending, using="default") == 900  # every row exists now
    assert len([q for q in queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]) == 1
    assert totals("t0042") == {"switches": 12, "requests": 6, "denied": 0}


@pytest.mark.django_db
def test_a_batch_is_folded_once(tenants):
    pending = {("acme", HOUR): Pending(3, 2, 1, HOUR + 1.0)}
    assert write_pending(pending, using="default", batch=("e1", 7)) == 1
    assert write_pending(pending, using="default", batch=("e1", 7)) == 0  # already folded
    assert write_pending(pending, using="default", batch=("e2", 7)) == 1  # another epoch
    assert totals("acme") == {"switches": 6, "requests": 4, "denied": 2}


@pytest.mark.django_db
def test_many_switches_make_one_write_per_bucket(tenants):
    for _ in range(200):
        with tenancy.switch("acme"):
            pass
    with CaptureQueriesContext(connection) as queries:
        flush_stats()
    writes = [q["sql"] for q in queries if q["sql"].lstrip().startswith(("INSERT", "UPDATE"))]
    assert len([sql for sql in writes if "tenantstatsbucket" in sql]) == 1  # one upsert
    assert totals("acme")["switches"] == 200


@pytest.mark.django_db
def test_counts_of_a_deleted_tenant_are_dropped(tenants):
    with tenancy.switch("globex"):
        pass
    with tenancy.switch("acme"):
        pass
    tenancy.unregister_tenant("globex")
    assert flush_stats() == 1
    assert list(TenantStatsBucket.objects.values_list("tenant_id", flat=True)) == ["acme"]
    assert not counters.has_pending()


@pytest.mark.django_db
def test_a_failed_write_changes_nothing_and_keeps_the_counts(tenants):
    write_pending({("acme", HOUR): Pending(5, 0, 0, 0.0)}, using="default")
    # A negative count breaks the column's CHECK constraint: a real database error.
    bad = {("acme", HOUR): Pending(1, 0, 0, 0.0), ("globex", HOUR): Pending(-1, 0, 0, 0.0)}
    counters.restore_pending(bad)
    with pytest.raises(IntegrityError):
        flush_stats()
    assert totals("acme")["switches"] == 5  # the whole batch was rolled back
    # and nothing was lost: still in this process, or in the shared cache if there is one
    assert read_consistently(lambda: None)[1] == bad
    counters.take_pending()  # counts no database takes: not for the end-of-test write
    shared_counts.clear()


@pytest.mark.django_db(transaction=True)
def test_concurrent_switching_flushing_and_reading_count_each_switch_once(tenants):
    """A reader never sees a count both pending and flushed, nor neither."""
    done = reads = 0
    stop = threading.Event()
    errors: list[str] = []

    def switching() -> None:
        nonlocal done
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            with tenancy.switch("acme"):
                pass
            done += 1
            time.sleep(0)  # let the other threads in
        stop.set()

    def flushing() -> None:
        while not stop.is_set():
            flush_stats()
            time.sleep(0.001)  # locks are not fair: leave the reader a chance

    def reading() -> None:
        nonlocal reads
        while not stop.is_set():
            reads += 1
            before = done
            seen = tenant_usage()[0].switches
            after = done
            # A switch is counted when it opens: at most one is in flight.
            if not before <= seen <= after + 1:
                errors.append(f"saw {seen} with {before}..{after} done")

    def closing(work):
        def run() -> None:
            try:
                work()
            finally:
                connections.close_all()  # this thread's connections only

        return run

    threads = [threading.Thread(target=closing(f)) for f in (switching, flushing, reading)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    flush_stats()
    assert errors == []
    assert reads > 5  # the reads did interleave with the flushes
    assert totals("acme")["switches"] == done


@pytest.mark.django_db(transaction=True)
def test_flusher_thread_writes_on_the_interval_without_requests(tenants):
    with override_settings(TENANCY={"STATS_AUTO_FLUSH": True, "STATS_FLUSH_INTERVAL": 0.05}):
        scheduler.start()
        with tenancy.switch("acme"):
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not TenantStatsBucket.objects.exists():
            time.sleep(0.02)
    assert totals("acme")["switches"] == 1


@pytest.mark.django_db(transaction=True)
async def test_flush_if_due_in_an_event_loop_hands_the_write_to_the_thread(tenants):
    from asgiref.sync import sync_to_async

    from tenancy.stats.flush import flush_if_due

    with override_settings(TENANCY={"STATS_AUTO_FLUSH": True, "STATS_FLUSH_INTERVAL": 3600}):
        async with tenancy.aswitch("acme"):
            pass
        flush_if_due()  # no SynchronousOnlyOperation: the loop never touches the database
        assert scheduler._thread is not None
        deadline = time.monotonic() + 10
        count = sync_to_async(TenantStatsBucket.objects.count)
        while time.monotonic() < deadline and not await count():
            await sync_to_async(time.sleep)(0.02)
    assert (await sync_to_async(totals)("acme"))["switches"] == 1
    await sync_to_async(connections.close_all)()  # the worker thread's connection


def worker_env() -> dict[str, str]:
    """Environment for tests.stats_worker: the test database, as this process sees it."""
    db = connection.settings_dict
    keys = ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")
    return {**os.environ, "TENANCY_TEST_DB": json.dumps({k: db[k] for k in keys})}


def run_workers(*commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.stats_worker", *args],
            cwd=ROOT,
            env=worker_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "Could not write" not in err, err
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


@pytest.mark.django_db(transaction=True)
def test_exit_flush_writes_what_a_process_still_held(tenants):
    # An hour-long interval: only the flush at interpreter exit can write these.
    (result,) = run_workers(["--interval", "3600", "acme:40", "globex:15"])
    assert json.loads(result.stdout) == {"pending": True}  # still pending when work ended
    assert totals("acme") == {"switches": 40, "requests": 40, "denied": 8}
    assert totals("globex") == {"switches": 15, "requests": 15, "denied": 3}


@pytest.mark.django_db(transaction=True)
def test_two_processes_add_up_exactly_on_the_dashboard(tenants, admin_client):
    with tenancy.switch("acme"):  # and this process's own pending switch
        pass
    run_workers(
        ["--interval", "0.01", "acme:300", "globex:120"],
        ["--interval", "0.01", "globex:200", "acme:150"],
    )
    assert totals("acme")["switches"] == 450
    assert totals("globex")["switches"] == 320

    response = admin_client.get("/admin/tenancy/tenant/statistics/")
    assert response.status_code == 200
    rows = {row.tenant_id: row for row in response.context["tenants"]}
    assert (rows["acme"].switches, rows["acme"].requests) == (451, 450)
    assert (rows["globex"].switches, rows["globex"].requests) == (320, 320)
    assert rows["acme"].denied_requests == 60 + 30
    assert rows["globex"].denied_requests == 24 + 40
    assert response.context["totals"]["total_switches"] == 771
