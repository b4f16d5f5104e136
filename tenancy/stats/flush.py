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
import math
import os
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import timedelta
from typing import TypeVar

from django.db import IntegrityError, connections, router, transaction
from django.db.models import Q
from django.utils import timezone

from ..conf import tenancy_settings
from .counters import Pending, counters
from .rollup import roll_up
from .shared import Batch, Snapshot, shared_counts
from .upsert import add_counts

__all__ = [
    "FlushScheduler",
    "flush_if_due",
    "flush_stats",
    "push_counts",
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
# Taken while this process's counts move out of it (to Redis, or straight to the
# database): a read under it sees each count in this process or where it went.
_push_lock = threading.Lock()


def _stats_db() -> str:
    from ..models import TenantStatsBucket

    return router.db_for_write(TenantStatsBucket)


def flush_stats(*, using: str | None = None, timeout: float = -1) -> int:
    """Write pending counts now; return how many buckets were written.

    Without a shared cache, this process's counts. With one (see
    :mod:`tenancy.stats.shared`), this process's counts go to it first, then
    every count there (from any process, killed ones included) is claimed and
    folded in. Waits up to *timeout* seconds (forever by default) for a flush
    already running in another thread. On a database error the counts are
    kept for the next flush and the error is raised.
    """
    if not _lock.acquire(timeout=timeout):
        return 0
    try:
        db = using or _stats_db()
        if shared_counts.enabled and push_counts():
            written = 0
            for batch in shared_counts.claim():
                try:
                    written += write_pending(
                        batch.pending, using=db, batch=(batch.epoch, batch.seq)
                    )
                except BaseException:
                    # The batch stays in Redis for the next flush (or, if this process
                    # dies first, for any flush once its lease has run out).
                    _release_logged(batch)
                    raise
                shared_counts.forget(batch)
            return written
        # No shared cache, or it is unreachable: this process's counts, straight in.
        with _push_lock:
            pending = counters.take_pending()
            if not pending:
                return 0
            try:
                return write_pending(pending, using=db)
            except BaseException:
                counters.restore_pending(pending)
                raise
    finally:
        _lock.release()


# After a failed push, the shared cache is not tried again before this moment: a
# hung Redis then costs one request per TENANCY["CACHE_RETRY_INTERVAL"] its socket
# timeout, not every request.
_unshared_until = -math.inf


def forget_push_failure() -> None:
    """Try the shared cache again at the next push (test suites, after a simulated outage)."""
    global _unshared_until
    _unshared_until = -math.inf


def push_counts() -> bool:
    """Add this process's pending counts to the shared cache; False if it failed (kept).

    After a failure the counts stay in this process (and are written to the
    database directly by the next flush) for ``TENANCY["CACHE_RETRY_INTERVAL"]``
    seconds before the shared cache is tried again.
    """
    global _unshared_until
    if _monotonic() < _unshared_until:
        return False
    with _push_lock:
        pending = counters.take_pending()
        if not pending:
            return True
        try:
            shared_counts.add(pending)
        except Exception as error:
            counters.restore_pending(pending)
            _unshared_until = _monotonic() + float(tenancy_settings.CACHE_RETRY_INTERVAL)
            _warn_unshared(error)
            return False
    return True


def _release_logged(batch: Batch) -> None:
    try:
        shared_counts.release(batch)
    except Exception as error:
        _warn_unshared(error)


_warned_at = -math.inf


def _warn_unshared(error: Exception) -> None:
    global _warned_at
    now = _monotonic()
    if now - _warned_at >= 60:
        _warned_at = now
        logger.warning(
            "Could not add tenant statistics to the shared cache (%s: %r); "
            "they are kept in this process and written to the database directly.",
            type(error).__name__,
            str(error),
        )


def read_consistently(read: Callable[[], T]) -> tuple[T, dict[tuple[str, int], Pending]]:
    """Return ``read()`` and the counts not yet in the database, with none seen twice.

    ``read`` must evaluate fresh queries each time it is called (it may be
    called again when a flush ran meanwhile: ``list(queryset.all())``, not
    ``list(queryset)``, whose results are cached). Adding the returned counts to what it
    read counts every event exactly once: without a shared cache, this
    process's pending counts, read with no flush in between; with one, also the
    counts in Redis, less the batches that the database shows folded.
    """
    if not shared_counts.enabled:
        with _lock:
            pending = counters.peek_pending()
            return read(), pending
    for attempt in range(4):
        # The last attempt keeps this process's flushes out; other processes flush
        # once an interval, so an earlier attempt has found a quiet moment by then.
        with _lock if attempt == 3 else nullcontext():
            with _push_lock:
                local = counters.peek_pending()
                try:
                    snapshot = shared_counts.snapshot()
                except Exception as error:
                    _warn_unshared(error)
                    return read(), local
            # A batch folded while read() ran, or one claimed after the snapshot and
            # folded already, would be counted twice or not at all: read again.
            before = _folded(snapshot)
            result = read()
            folded = _folded(snapshot)
        if folded == before and all(seq <= snapshot.seq for seq in folded):
            break
    pending = local
    for counts in (
        snapshot.live,
        *(batch for seq, batch in snapshot.claimed.items() if seq not in folded),
    ):
        for key, value in counts.items():
            pending.setdefault(key, Pending()).add(value)
    return result, pending


def _folded(snapshot: Snapshot) -> set[int]:
    """The batches of *snapshot*'s epoch that the database shows folded, or claimed since."""
    from ..models import TenantStatsBatch

    return set(
        TenantStatsBatch.objects.using(_stats_db())
        .filter(epoch=snapshot.epoch)
        .filter(Q(seq__gt=snapshot.seq) | Q(seq__in=list(snapshot.claimed)))
        .values_list("seq", flat=True)
    )


def write_pending(
    pending: dict[tuple[str, int], Pending], *, using: str, batch: tuple[str, int] | None = None
) -> int:
    """Add *pending* to the buckets in one transaction; return how many were written.

    The buckets are written in a constant number of statements (see
    :mod:`tenancy.stats.upsert`), and so are the roll-ups the admin reads
    (:mod:`tenancy.stats.rollup`). With *batch* (a shared batch's ``(epoch, seq)``)
    the batch is recorded in the same transaction, and a batch recorded
    already writes nothing and returns 0: folding it again adds nothing.
    """
    from ..models import Tenant, TenantStatsBucket

    with transaction.atomic(using=using):
        if batch is not None and not _record_batch(batch, using):
            return 0
        written = add_counts(TenantStatsBucket, pending, using=using)
        known = pending
        if written < len(pending):  # deleted tenants: their counts were left out
            kept = set(
                Tenant.objects.using(using)
                .filter(tenant_id__in={tenant_id for tenant_id, _ in pending})
                .values_list("tenant_id", flat=True)
            )
            known = {key: counts for key, counts in pending.items() if key[0] in kept}
        roll_up(known, using=using)
    if written < len(pending):
        logger.info("Dropped %d statistics buckets of deleted tenants.", len(pending) - written)
    return written


#: How long a folded batch is remembered: far longer than any claim is retried after.
BATCH_RETENTION = timedelta(days=1)


def _record_batch(batch: tuple[str, int], using: str) -> bool:
    """Record *batch* as folded; False when it was already (by this or another process)."""
    from ..models import TenantStatsBatch

    epoch, seq = batch
    now = timezone.now()
    batches = TenantStatsBatch.objects.using(using)
    try:
        with transaction.atomic(using=using):  # a savepoint: a duplicate spares the transaction
            batches.create(epoch=epoch, seq=seq, applied_at=now)
    except IntegrityError:
        return False
    batches.filter(applied_at__lt=now - BATCH_RETENTION).delete()
    return True


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
                if counters.has_pending() or shared_counts.enabled:
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
            if not counters.has_pending() and (attempt or not shared_counts.enabled):
                return
            if attempt:
                time.sleep(0.2 * attempt)  # e.g. SQLite busy with another writer
            self._flush_logged(timeout=10)

    def _after_fork_in_child(self) -> None:
        global _lock, _push_lock
        _lock = threading.Lock()
        _push_lock = threading.Lock()
        self._thread = None
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._start_lock = threading.Lock()


scheduler = FlushScheduler()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=scheduler._after_fork_in_child)


def _push_each_request() -> bool:
    s = tenancy_settings
    return bool(s.STATS_ENABLED and s.STATS_AUTO_FLUSH and shared_counts.enabled)


def flush_if_due() -> None:
    """Persist pending counts when ``TENANCY["STATS_FLUSH_INTERVAL"]`` has passed.

    Called by the middleware at the end of each request: one clock read when
    not due. When due, sync code writes at once; code running in an event loop
    hands the write to the background flusher thread instead. With a shared
    cache, the request's counts are first added to it (one Lua call, made
    where the request runs, on the event loop under ASGI as the shared tenant
    lookup is), so that a process killed after answering loses none of them.
    """
    if _push_each_request():
        push_counts()
    if _monotonic() >= scheduler.next_due:
        scheduler.run_due()
