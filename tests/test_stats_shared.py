"""Counts kept in Redis: folded exactly once whoever flushes, whenever a process dies.

Every test runs against a redis-server of its own, started on a free port.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Sum
from django.test import Client, override_settings

import tenancy
from tenancy.models import (
    TenantStatsBatch,
    TenantStatsBucket,
    TenantStatsDay,
    TenantStatsHourTotal,
    TenantStatsWindow,
)
from tenancy.stats import shared
from tenancy.stats.counters import counters
from tenancy.stats.flush import (
    flush_stats,
    forget_push_failure,
    push_counts,
    read_consistently,
    scheduler,
    write_pending,
)
from tenancy.stats.report import tenant_usage
from tenancy.stats.shared import shared_counts
from tests.servers import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
REDIS = "django.core.cache.backends.redis.RedisCache"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture
def shared_stats(redis_url, tenants):
    """Tenant state in the test cache; statistics in the Redis of this module ("stats")."""
    from django.conf import settings

    caches = {**settings.CACHES, "stats": {"BACKEND": REDIS, "LOCATION": redis_url}}
    tenancy_settings = {"STATS_AUTO_FLUSH": False, "STATS_CACHE_ALIAS": "stats"}
    with override_settings(CACHES=caches, TENANCY=tenancy_settings):
        assert shared_counts.enabled
        shared_counts.clear()
        counters.take_pending()
        yield
        shared_counts.clear()
    counters.take_pending()
    scheduler.stop()


def stored(tenant_id: str) -> dict[str, int]:
    return TenantStatsBucket.objects.filter(tenant_id=tenant_id).aggregate(
        switches=Sum("switches"), requests=Sum("requests")
    )


def seen(tenant_id: str) -> int:
    return next(row.switches for row in tenant_usage() if row.tenant_id == tenant_id)


def switch(tenant_id: str, times: int = 1) -> None:
    for _ in range(times):
        with tenancy.switch(tenant_id):
            pass


@pytest.mark.django_db
def test_each_request_adds_its_counts_to_redis_with_one_call(shared_stats, monkeypatch):
    calls = []
    add = shared_counts.add
    monkeypatch.setattr(shared_counts, "add", lambda pending: calls.append(1) or add(pending))
    with override_settings(
        TENANCY={"STATS_CACHE_ALIAS": "stats", "STATS_FLUSH_INTERVAL": 3600}
    ):
        scheduler.next_due = float("inf")
        client = Client()
        for _ in range(3):
            assert client.get("/req/tenant", headers={"X-Tenant-ID": "acme"}).status_code == 200
    assert len(calls) == 3
    assert not counters.has_pending()  # nothing left in this process to lose
    snapshot = shared_counts.snapshot()
    assert sum(c.requests for (t, _h), c in snapshot.live.items() if t == "acme") == 3
    assert TenantStatsBucket.objects.count() == 0  # not in the database yet
    assert next(row.requests for row in tenant_usage() if row.tenant_id == "acme") == 3
    flush_stats()
    assert stored("acme")["requests"] == 3
    assert shared_counts.snapshot().live == {}


@pytest.mark.django_db(transaction=True)
def test_a_batch_claimed_by_a_process_that_died_is_folded_after_its_lease(
    shared_stats, monkeypatch
):
    switch("acme", 4)
    from tenancy.stats.flush import push_counts

    push_counts()
    (batch,) = shared_counts.claim()  # ... and the claiming process is killed here
    switch("acme")
    assert seen("acme") == 5  # the claimed batch is read from Redis, once
    assert flush_stats() == 1  # its lease runs: only the new count is folded
    assert stored("acme")["switches"] == 1
    assert seen("acme") == 5
    monkeypatch.setattr(shared, "CLAIM_LEASE", -1.0)
    assert flush_stats() == 1  # the lease is over: the next flush takes it over
    assert stored("acme")["switches"] == 5
    assert seen("acme") == 5
    assert shared_counts.snapshot().claimed == {}
    assert TenantStatsBatch.objects.filter(epoch=batch.epoch, seq=batch.seq).exists()


@pytest.mark.django_db(transaction=True)
def test_a_batch_folded_by_a_process_that_died_before_cleaning_up_is_not_added_twice(
    shared_stats, monkeypatch
):
    switch("acme", 3)
    from tenancy.stats.flush import push_counts

    push_counts()
    (batch,) = shared_counts.claim()
    write_pending(batch.pending, using="default", batch=(batch.epoch, batch.seq))
    # ... killed after the commit, before deleting the batch from Redis.
    assert shared_counts.snapshot().claimed  # still there
    assert seen("acme") == 3  # folded, and not read twice
    monkeypatch.setattr(shared, "CLAIM_LEASE", -1.0)
    assert flush_stats() == 0  # taken over, recognised as folded, deleted
    assert stored("acme")["switches"] == 3
    assert shared_counts.snapshot().claimed == {}
    assert seen("acme") == 3


@pytest.mark.django_db(transaction=True)
def test_a_failed_write_leaves_the_batch_for_the_next_flush(shared_stats, monkeypatch):
    switch("acme", 2)

    def fail(*args, **kwargs):
        raise RuntimeError("database down")

    monkeypatch.setattr("tenancy.stats.flush.add_counts", fail)
    with pytest.raises(RuntimeError):
        flush_stats()
    assert seen("acme") == 2
    monkeypatch.undo()
    assert flush_stats() == 1  # released at once, not after the lease
    assert stored("acme")["switches"] == 2
    assert read_consistently(lambda: None)[1] == {}


@pytest.mark.django_db
def test_an_unreachable_redis_keeps_the_counts_and_writes_them_directly(
    tenants, caplog, monkeypatch
):
    from django.conf import settings

    closed = f"redis://127.0.0.1:{free_port()}/0"
    caches = {
        **settings.CACHES,
        "stats": {
            "BACKEND": REDIS,
            "LOCATION": closed,
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        },
    }
    with override_settings(
        CACHES=caches, TENANCY={"STATS_AUTO_FLUSH": False, "STATS_CACHE_ALIAS": "stats"}
    ):
        counters.take_pending()
        switch("acme", 2)
        with caplog.at_level(logging.WARNING, logger="tenancy.stats"):
            assert seen("acme") == 2  # read from this process, Redis or not
            assert flush_stats() == 1
        assert stored("acme")["switches"] == 2
        assert not counters.has_pending()
        warnings = [r for r in caplog.records if "shared cache" in r.getMessage()]
        assert len(warnings) == 1  # once an interval, not once a call
        assert "ConnectionError" in warnings[0].getMessage()
        # Within TENANCY["CACHE_RETRY_INTERVAL"] of the failure, pushes skip Redis: a hung
        # server costs one request its socket timeout, not every request.
        calls = []
        monkeypatch.setattr(shared.shared_counts, "add", calls.append)
        try:
            switch("acme", 1)
            assert push_counts() is False and calls == []
            assert flush_stats() == 1 and stored("acme")["switches"] == 3
        finally:
            forget_push_failure()
    counters.take_pending()


def worker_env(redis_url: str) -> dict[str, str]:
    db = connection.settings_dict
    keys = ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")
    return {
        **os.environ,
        "TENANCY_TEST_DB": json.dumps({k: db[k] for k in keys}),
        "CACHE_URL": redis_url,
    }


@pytest.mark.django_db(transaction=True)
def test_two_processes_flushing_the_same_buckets_at_once_add_exactly(shared_stats, redis_url):
    # Interval 0: every switch is followed by a push and a claim-and-fold, in both processes.
    commands = [
        ["--interval", "0.000001", "acme:300", "globex:200"],
        ["--interval", "0.000001", "globex:250", "acme:150"],
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.stats_worker", *args],
            cwd=ROOT,
            env=worker_env(redis_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert "Could not" not in err, err
    assert stored("acme")["switches"] == 450
    assert stored("globex")["switches"] == 450
    assert TenantStatsBatch.objects.count() > 2  # many batches, each folded once
    assert seen("acme") == 450
    # The roll-ups written in the same transactions add up to the same counts.
    for tenant_id in ("acme", "globex"):
        days = TenantStatsDay.objects.filter(tenant_id=tenant_id).aggregate(s=Sum("switches"))
        assert days["s"] == 450, tenant_id
        assert TenantStatsWindow.objects.get(tenant_id=tenant_id).switches == 450, tenant_id
    assert TenantStatsHourTotal.objects.aggregate(s=Sum("switches"))["s"] == 900
