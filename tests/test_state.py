"""The stores of tenant state: the bounded LRU, and the local copy in front of a shared cache."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

import tenancy
from tenancy.conf import DEFAULTS
from tenancy.registry import tenant_context
from tenancy.state import MISS, CoherentStore, LocalStore, SharedStore, TenantInfo

LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def info(tenant_id: str) -> TenantInfo:
    return TenantInfo(tenant_id, tenant_id.title(), True, {}, None)


# -- the LRU -----------------------------------------------------------------------------


def test_the_default_size_holds_a_hundred_thousand_tenants():
    assert DEFAULTS["LOCAL_CACHE_SIZE"] == 100_000


def test_the_least_recently_used_entry_goes_first_one_at_a_time():
    store = LocalStore(timeout=60, size=3)
    for name in ("a", "b", "c"):
        store.set(name, info(name))
    assert store.get("a").tenant_id == "a"  # used: spared once by the hand
    store.set("d", info("d"))
    assert set(store.data) == {"a", "c", "d"}  # b, the coldest, went; nobody else
    store.set("e", info("e"))
    assert set(store.data) == {"a", "d", "e"}
    assert store.get("b") is MISS and store.get("c") is MISS


def test_a_hot_set_smaller_than_the_bound_never_misses():
    store = LocalStore(timeout=60, size=100)
    hot = [f"hot-{n}" for n in range(20)]
    for name in hot:
        store.set(name, info(name))
    for round_ in range(50):  # a sweep of cold tenants between every use of the hot set
        for name in hot:
            assert store.get(name) is not MISS, (round_, name)
        for n in range(60):
            cold = f"cold-{round_}-{n}"
            if store.get(cold) is MISS:
                store.load(cold, lambda cold=cold: info(cold))
    assert len(store.data) == 100


def test_an_entry_used_since_the_hand_passed_is_spared_once_then_evicted_if_unused():
    store = LocalStore(timeout=60, size=2)
    store.set("a", info("a"))
    store.set("b", info("b"))
    store.get("a")  # a's bit is set
    store.set("c", info("c"))  # the hand spares a (clearing its bit, to the back) and evicts b
    assert set(store.data) == {"a", "c"}
    store.set("d", info("d"))  # a was not used again since it was spared: it goes
    assert set(store.data) == {"c", "d"}


def test_what_is_stored_is_never_the_entry_evicted_to_make_room():
    store = LocalStore(timeout=60, size=3)
    for name in ("a", "b", "c"):
        store.set(name, info(name))
        store.get(name)  # every entry used: the hand goes round once
    fresh = TenantInfo("d", "D", False, {}, None)  # say, an invalidation's fresh state
    store.set("d", fresh)
    assert store.get("d") is fresh
    assert len(store.data) == 3


def test_an_infinite_timeout_never_expires():
    import math

    store = LocalStore(timeout=math.inf, size=2)
    store.set("a", info("a"))
    assert store.get("a").tenant_id == "a"


def test_a_forked_child_can_write_though_a_parent_thread_held_the_store_lock():
    import os
    import signal

    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    store = LocalStore(timeout=60, size=2)
    with store._lock:  # held by the forking thread, as by any thread of a parent
        pid = os.fork()
        if pid == 0:  # the child: a deadlock ends in SIGALRM, a write in exit code 0
            signal.alarm(5)
            store.set("a", info("a"))
            os._exit(0 if store.get("a") is not MISS else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_entries_stored_in_one_tick_share_their_expiry_which_is_at_most_a_tick_early():
    import time

    store = LocalStore(timeout=256, size=10)
    before = time.monotonic()
    store.set("a", info("a"))
    store.set("b", info("b"))
    after = time.monotonic()
    a, b = store.data["a"], store.data["b"]
    assert before + 256 - 1 <= a._expires <= after + 256  # a tick is 1/256 of the timeout
    if a._expires == b._expires:  # stored in the same tick (almost always)
        assert a._expires is b._expires  # one float for both: no memory of its own to read


def test_concurrent_lookups_and_evictions_never_answer_another_tenants_state():
    import threading

    store = LocalStore(timeout=60, size=64)
    names = [f"t{n}" for n in range(400)]
    wrong: list[tuple[str, str]] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            for name in names:
                found = store.get(name)
                if found is not MISS and found.tenant_id != name:
                    wrong.append((name, found.tenant_id))

    def write(offset: int) -> None:
        for _ in range(40):
            for name in names[offset::2]:
                store.set(name, info(name))

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    for thread in readers:
        thread.join()
    assert wrong == []
    assert len(store.data) == 64  # the bound held under concurrent inserts


def test_unknown_ids_have_their_own_smaller_lru():
    store = LocalStore(timeout=60, size=200)
    store.set("acme", info("acme"))
    for n in range(1000):
        store.set(f"ghost-{n}", None)
    assert store.get("acme").tenant_id == "acme"
    assert len(store.absent) == 20
    assert store.get("ghost-999") is None  # the recent absences are known
    assert store.get("ghost-0") is MISS  # the old ones were evicted


def test_set_overwrites_load_does_not():
    store = LocalStore(timeout=60, size=10)
    store.set("acme", info("acme"))
    assert store.load("acme", lambda: None) is None  # the fetched value is returned ...
    assert store.get("acme").tenant_id == "acme"  # ... but fresher state is kept
    store.set("acme", None)
    assert store.get("acme") is None and "acme" not in store.data


@pytest.mark.django_db(transaction=True)
def test_the_registry_keeps_its_hot_set_and_evicts_the_coldest():
    names = [f"t{n:03d}" for n in range(60)]
    for name in names:
        tenancy.register_tenant(name, name)
    tenancy_settings = {"STATS_AUTO_FLUSH": False, "LOCAL_CACHE_SIZE": 20}
    with override_settings(CACHES=LOCMEM, TENANCY=tenancy_settings):
        hot, cold = names[:10], names[10:]
        for round_ in range(5):
            with CaptureQueriesContext(connection) as queries:
                for name in hot:
                    with tenancy.switch(name):
                        pass
            assert len(queries) == (10 if round_ == 0 else 0)  # the hot set never misses
            for name in cold[round_ * 9 : round_ * 9 + 9]:  # fewer than the room left
                with tenancy.switch(name):
                    pass
        assert len(tenant_context.store.data) == 20
        last = cold[36:45]  # the last cold tenants are warm, the older ones went first
        with CaptureQueriesContext(connection) as queries:
            for name in last:
                with tenancy.switch(name):
                    pass
        assert len(queries) == 0
        with CaptureQueriesContext(connection) as queries:
            with tenancy.switch(cold[0]):
                pass
        assert len(queries) == 1


@pytest.mark.django_db(transaction=True)
def test_random_unknown_ids_never_push_real_tenants_out_of_the_cache(acme):
    tenancy_settings = {"STATS_AUTO_FLUSH": False, "LOCAL_CACHE_SIZE": 50}
    with override_settings(CACHES=LOCMEM, TENANCY=tenancy_settings):
        assert tenancy.is_tenant_active("acme")  # cached
        for n in range(200):  # an unauthenticated client sending random well-formed ids
            assert not tenancy.is_tenant_registered(f"ghost-{n}")
        store = tenant_context.store
        assert len(store.data) + len(store.absent) <= 50 + 16
        with CaptureQueriesContext(connection) as queries:
            with tenancy.switch("acme"):
                pass
        assert len(queries) == 0  # acme is still warm


# -- the coherent local copy -------------------------------------------------------------


class FailingCache:
    """A shared cache whose every call raises, as a Redis that went away does."""

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise ConnectionError("cache down")

        return fail


def coherent(cache, interval=0.5) -> CoherentStore:
    return CoherentStore(
        SharedStore(cache, "test:tenant:", 60), LocalStore(60, 100, "test:tenant:"), interval
    )


def test_a_local_copy_is_dropped_when_the_shared_version_moves():
    from django.core.cache.backends.locmem import LocMemCache

    cache = LocMemCache("coherent", {})
    here, there = coherent(cache), coherent(cache)
    for store in (here, there):
        store.recheck()
    there.set("acme", info("acme"))
    assert here.get("acme").active  # read from the shared cache, copied locally
    there.set("acme", TenantInfo("acme", "Acme", False, {}, None))
    assert here.get("acme").active  # the local copy, until the next recheck
    assert there.get("acme").active is False  # the process that changed it: at once
    here.recheck()
    assert "acme" not in here.data
    assert here.get("acme").active is False
    there.recheck()  # its own change moved the version by one: its copy is kept
    assert "acme" in there.data


def test_a_value_read_before_a_drop_is_not_kept_after_it():
    from django.core.cache.backends.locmem import LocMemCache

    store = coherent(LocMemCache("coherent-race", {}))
    store.recheck()

    def fetch():
        store.clear()  # the version moved while the database was read
        return info("acme")

    assert store.load("acme", fetch).tenant_id == "acme"
    assert "acme" not in store.data


def test_a_failing_shared_cache_is_a_miss_and_drops_the_local_copy(caplog):
    store = coherent(FailingCache())
    store.local.set("acme", info("acme"))
    store.recheck()  # the version cannot be read: the local copy is not trusted
    assert "acme" not in store.data
    assert store.get("acme") is MISS
    assert store.load("acme", lambda: info("acme")).tenant_id == "acme"
    store.set("acme", None)
    store.delete("acme")
    assert "The shared cache failed" in caplog.text


class Counting:
    """Counts the calls made to a cache (every one is a round trip with Redis or Memcached)."""

    def __init__(self, cache):
        self.cache = cache
        self.calls = []

    def __getattr__(self, name):
        method = getattr(self.cache, name)

        def call(*args, **kwargs):
            self.calls.append((name, args[0] if args else None))
            return method(*args, **kwargs)

        return call


@pytest.fixture
def shared_cache(tmp_path):
    """A shared (not process-local) cache backend, the file-based one, with its calls counted."""
    shared = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
        }
    }
    with override_settings(CACHES=shared, TENANCY={"STATS_AUTO_FLUSH": False}):
        store = tenant_context.store
        assert isinstance(store, CoherentStore)
        counting = store.shared_store.cache = Counting(store.shared_store.cache)
        yield counting


@pytest.mark.django_db(transaction=True)
def test_a_warm_switch_with_a_shared_cache_makes_no_round_trip(acme, shared_cache, monkeypatch):
    from tenancy import registry, state

    now = [1000.0]
    for module in (registry, state):
        monkeypatch.setattr(module, "_monotonic", lambda: now[0])
    with tenancy.switch("acme"):  # cold: the version, the shared cache, the database
        pass
    shared_cache.calls.clear()
    with CaptureQueriesContext(connection) as queries:
        for _ in range(100):
            with tenancy.switch("acme"):
                pass
            tenancy.get_tenant("acme")
    assert shared_cache.calls == [] and len(queries) == 0
    now[0] += 0.6  # past the recheck interval: one read of the version, nothing else
    for _ in range(100):
        with tenancy.switch("acme"):
            pass
    assert [name for name, _key in shared_cache.calls] == ["get"]
    assert shared_cache.calls[0][1].endswith("!version")


@pytest.mark.django_db(transaction=True)
def test_with_a_shared_cache_a_deactivation_here_is_refused_here_at_once(acme, shared_cache):
    with tenancy.switch("acme"):
        pass
    tenancy.deactivate_tenant("acme")
    with pytest.raises(tenancy.TenantInactiveError):
        with tenancy.switch("acme"):
            pass
    other = coherent(shared_cache.cache)  # what another process reads from the shared cache
    other.shared_store.prefix = tenant_context.store.shared_store.prefix
    assert other.get("acme").active is False
