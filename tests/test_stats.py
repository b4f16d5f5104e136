"""The in-memory counters and the end-of-request flush hook."""

from __future__ import annotations

import os
import time

import pytest
from django.test import override_settings

import tenancy
from tenancy.models import TenantStatsBucket
from tenancy.stats.counters import Counters, Pending, counters
from tenancy.stats.flush import flush_if_due, read_consistently, scheduler


def current_hour() -> int:
    return int(time.time() // 3600) * 3600


@pytest.fixture(autouse=True)
def _fresh_counters():
    counters.take_pending()
    scheduler.next_due = 0.0
    yield
    counters.take_pending()
    scheduler.stop()


def test_switch_counts_per_tenant_and_hour(tenants, hour):
    with tenancy.switch("acme"), tenancy.switch("globex"):
        pass
    with tenancy.switch("acme"):
        pass
    pending = counters.peek_pending()
    assert pending[("acme", hour)].switches == 2
    assert pending[("globex", hour)].switches == 1
    assert pending[("acme", hour)].last_activity <= time.time()


def test_switch_and_request_count_make_no_query(tenants, django_assert_num_queries):
    with tenancy.switch("acme"):
        pass  # warm the tenant cache
    with django_assert_num_queries(0):
        for _ in range(50):
            with tenancy.switch("acme"):
                counters.request_done("acme")
        counters.request_done("globex", denied=True)
    pending = counters.peek_pending()
    assert sum(p.switches for p in pending.values()) == 51
    assert sum(p.requests for p in pending.values()) == 51
    assert sum(p.denied_requests for p in pending.values()) == 1


def test_each_tenant_is_dated_by_the_last_fold_that_counted_its_own_switches(monkeypatch):
    import tenancy.stats.counters as module

    hour = 1_800_000 * 3600
    clock = [hour + 60.0]
    monkeypatch.setattr(module, "time", type("Clock", (), {"time": staticmethod(lambda: clock[0])}))
    local = Counters()
    local.record_switch("acme")
    local.record_switch(None)
    local.fold()  # acme at one minute past the hour
    clock[0] = hour + 3480.0
    local.record_switch("globex")
    local.record_switch(None)
    local.fold()  # globex 57 minutes later, in the same hour
    pending = local.take_pending()
    assert pending[("acme", hour)].last_activity == hour + 60.0
    assert pending[("globex", hour)].last_activity == hour + 3480.0
    assert local.total_switches == 2 and local.active_switches == 0


def test_peek_leaves_pending_and_take_forgets():
    local = Counters()
    local.request_done("acme", denied=True)
    copy = local.peek_pending()
    copy[next(iter(copy))].requests = 99  # a copy: the counters are untouched
    assert local.peek_pending()[next(iter(copy))].requests == 1
    taken = local.take_pending()
    assert sum(p.requests for p in taken.values()) == 1
    assert not local.has_pending()
    assert local.take_pending() == {}


def test_restore_adds_to_what_came_since():
    local = Counters()
    local.restore_pending({("acme", 3600): Pending(2, 3, 1, 10.0)})
    local.restore_pending({("acme", 3600): Pending(1, 1, 0, 5.0)})
    assert local.peek_pending() == {("acme", 3600): Pending(3, 4, 1, 10.0)}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_inherit_pending_counts():
    local_pending = counters
    local_pending.request_done("acme")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether it still holds the parent's counts
        os.close(read)
        os.write(write, b"1" if counters.has_pending() else b"0")
        os._exit(0)
    os.close(write)
    child_has_pending = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert child_has_pending == b"0"
    assert counters.has_pending()  # the parent keeps them, and writes them once
    counters.take_pending()  # a made-up count with no database to go to


@pytest.mark.django_db
def test_flush_if_due_is_a_no_op_until_the_interval_passes(tenants):
    with override_settings(TENANCY={"STATS_AUTO_FLUSH": True, "STATS_FLUSH_INTERVAL": 3600}):
        with tenancy.switch("acme"):
            pass
        flush_if_due()  # due at start: writes
        assert TenantStatsBucket.objects.get(tenant_id="acme").switches == 1
        with tenancy.switch("acme"):
            pass
        flush_if_due()  # not due for an hour
        assert TenantStatsBucket.objects.get(tenant_id="acme").switches == 1
        # pending: in this process, or (with Redis) already in the shared cache
        assert read_consistently(lambda: None)[1][("acme", current_hour())].switches == 1
        scheduler.next_due = 0.0  # the hour has passed
        flush_if_due()
        assert TenantStatsBucket.objects.get(tenant_id="acme").switches == 2
        assert not counters.has_pending()
        assert read_consistently(lambda: None)[1] == {}


@pytest.mark.django_db
def test_flush_if_due_writes_nothing_without_auto_flush(tenants):
    with tenancy.switch("acme"):
        pass
    flush_if_due()  # tests/settings.py turns STATS_AUTO_FLUSH off
    assert not TenantStatsBucket.objects.exists()
    assert counters.has_pending()


@pytest.mark.django_db
def test_disabled_statistics_are_dropped_not_written(tenants):
    with override_settings(TENANCY={"STATS_ENABLED": False, "STATS_AUTO_FLUSH": True}):
        with tenancy.switch("acme"):
            pass
        flush_if_due()
    assert not counters.has_pending()
    assert not TenantStatsBucket.objects.exists()


@pytest.mark.parametrize("key", ["STATS_ENABLED", "STATS_AUTO_FLUSH"])
def test_statistics_switches_must_be_booleans(key):
    from tenancy.checks import check_settings

    with override_settings(TENANCY={key: "yes"}):
        errors = [e for e in check_settings() if e.id == "tenancy.E011"]
    assert len(errors) == 1 and key in errors[0].msg
    with override_settings(TENANCY={key: False}):
        assert not [e for e in check_settings() if e.id == "tenancy.E011"]


def test_lock_free_recording_loses_nothing_under_many_threads():
    """Eight recording threads and a thread taking the counts: every event is counted once."""
    import threading

    mine = Counters()
    per_thread, threads_n = 20_000, 8
    taken: list[dict] = []
    stop = threading.Event()
    start = threading.Barrier(threads_n + 1)

    def record(n: int) -> None:
        tenant_id = f"t{n % 3}"
        start.wait(timeout=10)
        for i in range(per_thread):
            mine.switch_opened(tenant_id)
            mine.request_done(tenant_id, denied=i % 10 == 0)
            mine.switch_closed()

    def take() -> None:
        start.wait(timeout=10)
        while not stop.is_set():
            taken.append(mine.take_pending())
            assert mine.active_switches >= 0

    workers = [threading.Thread(target=record, args=(n,)) for n in range(threads_n)]
    taker = threading.Thread(target=take)
    for thread in [*workers, taker]:
        thread.start()
    for thread in workers:
        thread.join(60)
    stop.set()
    taker.join(60)
    taken.append(mine.take_pending())
    totals = Pending()
    for batch in taken:
        for counts in batch.values():
            totals.switches += counts.switches
            totals.requests += counts.requests
            totals.denied_requests += counts.denied_requests
    assert totals.switches == totals.requests == per_thread * threads_n
    assert totals.denied_requests == per_thread * threads_n // 10
    assert mine.total_switches == per_thread * threads_n
    assert mine.active_switches == 0
    assert len(taken) > 2  # the taker really ran while the threads recorded


def test_switches_folded_in_two_hours_land_in_their_own_buckets(monkeypatch):
    from tenancy.stats import counters as module

    local = Counters()
    hour = 1_800_000_000 // 3600 * 3600
    clock = iter([hour + 10.0, hour + 3600 + 20.0, hour + 3600 + 30.0])
    monkeypatch.setattr(module.time, "time", lambda: next(clock))
    for tenant_id in ("acme", "acme", "globex"):
        local.record_switch(tenant_id)
        local.record_switch(None)
    local.fold()  # hour + 10 s
    local.record_switch("acme")
    local.record_switch(None)
    local.request_done("acme")
    local.fold()  # the next hour, + 20 s
    pending = local.take_pending()  # + 30 s: nothing left to fold
    assert pending[("acme", hour)] == Pending(2, 0, 0, hour + 10.0)
    assert pending[("globex", hour)] == Pending(1, 0, 0, hour + 10.0)
    assert pending[("acme", hour + 3600)] == Pending(1, 1, 0, hour + 3600 + 20.0)
    assert local.total_switches == 4 and local.active_switches == 0
    assert not local.has_pending()
