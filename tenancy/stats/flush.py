"""The batched writer: this process's pending counts into hourly buckets, summed over processes.

:data:`tenancy.stats.counters.counters` keeps counts in memory; :func:`flush_stats` takes
them and adds them to :class:`~tenancy.models.TenantStatsBucket` rows with
``F()`` increments, one row per tenant and hour, in one transaction. Every
process adds its own counts, so the buckets hold the sum over all of them.
A failed write puts the counts back (nothing lost); a successful one has
already forgotten them (nothing counted twice). Counts of a tenant deleted
since are dropped, as its buckets were.

When ``TENANCY["STATS_AUTO_FLUSH"]`` is on, :data:`scheduler` writes by itself:
at the end of a request when ``STATS_FLUSH_INTERVAL`` has passed, from a daemon
thread on the same interval (so an idle process still writes its last counts),
and at interpreter exit (``atexit``: a normal exit, or a server's graceful
shutdown on SIGTERM/SIGINT).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from django.db import IntegrityError, connections, router, transaction
from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce, Greatest

from ..conf import tenancy_settings
from .counters import Pending, counters

__all__ = [
    "FlushScheduler",
    "flush_if_due",
    "flush_stats",
    "read_consistently",
    "scheduler",
    "write_pending",
]

logger = logging.getLogger("tenancy.stats")
_monotonic = time.monotonic
T = TypeVar("T")

# One flush, or one consistent read, at a time in this process: a read made
# under it sees each count either still pending or already in the database.
_lock = threading.Lock()


def _stats_db() -> str:
    from ..models import TenantStatsBucket

    return router.db_for_write(TenantStatsBucket)


def flush_stats(*, using: str | None = None, timeout: float = -1) -> int:
    """Write this process's pending counts now; return how many buckets were written.

    Waits up to *timeout* seconds (forever by default) for a flush already
    running in another thread. On a database error the counts are put back
    for the next flush and the error is raised.
    """
    if not _lock.acquire(timeout=timeout):
        return 0
    try:
        pending = counters.take_pending()
        if not pending:
            return 0
        try:
            return write_pending(pending, using=using or _stats_db())
        except BaseException:
            counters.restore_pending(pending)
            raise
    finally:
        _lock.release()


def read_consistently(read: Callable[[], T]) -> tuple[T, dict[tuple[str, int], Pending]]:
    """Return ``read()`` and a copy of the pending counts, with no flush in between.

    ``read`` must evaluate its queries. Adding the pending counts to what it
    read counts every event exactly once.
    """
    with _lock:
        pending = counters.peek_pending()
        return read(), pending


def write_pending(pending: dict[tuple[str, int], Pending], *, using: str) -> int:
    """Add *pending* to the buckets in one transaction; return how many were written."""
    from ..models import Tenant, TenantStatsBucket

    tenants = Tenant.objects.using(using).filter(
        tenant_id__in=sorted({tenant_id for tenant_id, _ in pending})
    )
    features = connections[using].features
    lock = features.has_select_for_update
    if not lock:
        # SQLite: read before the transaction, so that its first statement is a
        # write. A read first makes a busy database fail at once ("database is
        # locked") where a write first waits for the other writer.
        known = set(tenants.values_list("tenant_id", flat=True))
    written = dropped = 0
    with transaction.atomic(using=using):
        if lock:
            # Keeps the tenants from being deleted before commit (foreign keys
            # may be checked only then); ordered, so flushers never deadlock.
            locked = tenants.order_by("tenant_id").select_for_update(
                no_key=features.has_select_for_no_key_update
            )
            known = set(locked.values_list("tenant_id", flat=True))
        for (tenant_id, hour), counts in sorted(pending.items()):
            if tenant_id not in known:
                dropped += 1
                continue
            _add(TenantStatsBucket, using, tenant_id, hour, counts)
            written += 1
    if dropped:
        logger.info("Dropped %d statistics buckets of deleted tenants.", dropped)
    return written


def _add(model: Any, using: str, tenant_id: str, hour: int, counts: Pending) -> None:
    hour_start = datetime.fromtimestamp(hour, tz=UTC)
    last = datetime.fromtimestamp(counts.last_activity, tz=UTC) if counts.last_activity else None
    bucket = model.objects.using(using).filter(tenant_id=tenant_id, hour=hour_start)
    changes: dict[str, Any] = {
        "switches": F("switches") + counts.switches,
        "requests": F("requests") + counts.requests,
        "denied_requests": F("denied_requests") + counts.denied_requests,
    }
    if last is not None:
        value = Value(last, output_field=DateTimeField())
        changes["last_activity"] = Greatest(Coalesce("last_activity", value), value)
    if bucket.update(**changes):
        return
    try:
        with transaction.atomic(using=using):  # a savepoint: a failed insert spares the rest
            model.objects.using(using).create(
                tenant_id=tenant_id,
                hour=hour_start,
                switches=counts.switches,
                requests=counts.requests,
                denied_requests=counts.denied_requests,
                last_activity=last,
            )
    except IntegrityError:
        # Another process created this bucket since our update: add to theirs.
        # No bucket even now means the insert failed for another reason.
        if not bucket.update(**changes):
            raise


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class FlushScheduler:
    """Decides when this process flushes; one instance, :data:`scheduler`."""

    def __init__(self) -> None:
        #: ``time.monotonic()`` after which the next flush is due.
        self.next_due = 0.0
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._halt = threading.Event()  # the running thread's own stop signal
        self._exiting = False
        #: False in test runs (the pytest plugin): no flusher thread, no exit flush.
        #: A thread would write outside the test's transaction, and an exit flush
        #: would run after the test database is gone, into the one the settings name.
        self.background = True
        self._start_lock = threading.Lock()

    def run_due(self) -> None:
        """Flush now (sync code) or wake the flusher thread (event loop)."""
        self.next_due = time.monotonic() + tenancy_settings.STATS_FLUSH_INTERVAL
        if not tenancy_settings.STATS_ENABLED:
            counters.take_pending()  # keep memory bounded; nothing is written
            return
        if not tenancy_settings.STATS_AUTO_FLUSH:
            return
        self.start()
        if _in_event_loop():
            self._wake.set()  # the database is not to be used from the loop
        else:
            self._flush_logged(timeout=0)

    def start(self) -> None:
        """Start the daemon flusher thread unless it is running."""
        if self._thread is not None or self._exiting or not self.background:
            return
        with self._start_lock:
            if self._thread is None:
                self._halt = threading.Event()
                self._wake.clear()  # a wake-up meant for a stopped thread is stale
                thread = threading.Thread(
                    target=self._run, args=(self._halt,), name="tenancy-stats", daemon=True
                )
                thread.start()
                self._thread = thread

    def stop(self, timeout: float = 10) -> None:
        """Stop the flusher thread and wait for it; :meth:`start` may start a new one."""
        with self._start_lock:
            thread, self._thread = self._thread, None
            self._halt.set()
            self._wake.set()
        if thread is not None:
            thread.join(timeout)

    def _run(self, halt: threading.Event) -> None:
        while not halt.is_set():
            woken = self._wake.wait(max(0.0, self.next_due - time.monotonic()))
            self._wake.clear()
            if halt.is_set():
                break
            if woken or time.monotonic() >= self.next_due:
                self.next_due = time.monotonic() + tenancy_settings.STATS_FLUSH_INTERVAL
                if counters.has_pending():
                    self._flush_logged(timeout=-1)
                    # This thread's connections would otherwise stay open forever.
                    for conn in connections.all(initialized_only=True):
                        conn.close()

    def _flush_logged(self, timeout: float) -> bool:
        try:
            flush_stats(timeout=timeout)
        except Exception:
            logger.warning(
                "Could not write tenant statistics; they are kept for the next flush.",
                exc_info=True,
            )
            return False
        return True

    def shutdown(self, attempts: int = 5) -> None:
        """Stop the thread and write what is pending (registered with ``atexit``)."""
        self._exiting = True  # no thread is started again while the process exits
        self.stop()
        if not self.background:
            return
        if not (tenancy_settings.STATS_AUTO_FLUSH and tenancy_settings.STATS_ENABLED):
            return
        for attempt in range(attempts):
            if not counters.has_pending():
                return
            if attempt:
                time.sleep(0.2 * attempt)  # e.g. SQLite busy with another writer
            self._flush_logged(timeout=10)

    def _after_fork_in_child(self) -> None:
        global _lock
        _lock = threading.Lock()
        self._thread = None
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._start_lock = threading.Lock()


scheduler = FlushScheduler()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=scheduler._after_fork_in_child)


def flush_if_due() -> None:
    """Persist pending counts when ``TENANCY["STATS_FLUSH_INTERVAL"]`` has passed.

    Called by the middleware at the end of each request: one clock read when
    not due. When due, sync code writes at once; code running in an event loop
    hands the write to the background flusher thread instead.
    """
    if _monotonic() >= scheduler.next_due:
        scheduler.run_due()
