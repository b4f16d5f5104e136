"""In-memory switch and request counters of this process.

Every switch and request records an event here with one ``deque.append`` (a
single C call: atomic, no lock, no clock read, no I/O). The events are folded
into per-tenant, per-hour counts under a lock whenever somebody reads them
(``get_stats()``, the admin, the flusher every ``STATS_FLUSH_INTERVAL``
seconds) and when too many pile up, so memory stays bounded. An event is dated
when it is folded, that is at most one flush interval after it happened.

``total_switches`` and ``active_switches`` are this process's figures for
``get_stats()``; ``take_pending()`` hands the per-tenant, per-hour counts over
to whoever persists them (and forgets them, so nothing is counted twice).
The batched writer that persists them is :mod:`tenancy.stats.flush`.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, replace
from itertools import repeat as _repeat
from itertools import starmap as _starmap
from typing import Any

__all__ = ["Counters", "Pending", "counters"]

# Fold the events when this many are waiting, whoever is recording.
_FOLD_AT = 4096


@dataclass(slots=True)
class Pending:
    """Counts of one tenant in one hour, not yet persisted."""

    switches: int = 0
    requests: int = 0
    denied_requests: int = 0
    #: Epoch seconds of the last switch or served request (denied ones do not count).
    last_activity: float = 0.0
    #: Epoch seconds of the last denied request, kept apart from ``last_activity``.
    last_denied: float = 0.0

    def add(self, other: Pending) -> None:
        """Add *other*'s counts to these; the later of each pair of moments stays."""
        self.switches += other.switches
        self.requests += other.requests
        self.denied_requests += other.denied_requests
        self.last_activity = max(self.last_activity, other.last_activity)
        self.last_denied = max(self.last_denied, other.last_denied)


def _drain(events: deque[Any]) -> list[Any]:
    """Pop the events present now; appends made meanwhile stay for the next fold.

    One C-level loop of ``popleft`` calls: only the folder pops (under the
    lock), others only append, so the first ``len(events)`` pops always succeed.
    """
    return list(_starmap(events.popleft, _repeat((), len(events))))


class Counters:
    """The process's counters. One instance, :data:`counters`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # The tenant id of each switch opened, None for each switch closed: one
        # deque, so an open is always drained with (or before) its close.
        self._switches: deque[str | None] = deque()
        #: What a switch calls on entry (with its tenant id) and on exit (with
        #: None): the deque's own C method, no Python frame (see tenancy.registry).
        self.record_switch = self._switches.append
        self._requests: deque[str] = deque()  # tenant id of each request counted
        self._denied: deque[str] = deque()  # tenant id of each request denied
        self._total_opened = 0
        self._total_closed = 0
        # (tenant_id, hour start as epoch seconds) -> Pending
        self._pending: defaultdict[tuple[str, int], Pending] = defaultdict(Pending)
        # The switches of the hour being counted, per tenant, and when each tenant
        # was last folded: kept by C-level dict operations (no Python step per
        # switch or per tenant, which a fold over thousands of tenants would pay
        # thousands of times) and settled into _pending when the counts are read
        # or the hour ends.
        self._live_hour = 0
        self._live_switches: Counter[str | None] = Counter()
        self._live_moments: dict[str | None, float] = {}

    # -- the hot path: one append, no lock -------------------------------------------

    def switch_opened(self, tenant_id: str) -> None:
        self.record_switch(tenant_id)
        self.fold_if_full()

    def switch_closed(self) -> None:
        self.record_switch(None)

    def fold_if_full(self) -> None:
        """Fold when too many switch events wait (a switch calls it on entry)."""
        if len(self._switches) > _FOLD_AT:
            self.fold()

    def request_done(self, tenant_id: str, *, denied: bool = False) -> None:
        requests = self._requests
        requests.append(tenant_id)
        if denied:
            self._denied.append(tenant_id)
        if len(requests) > _FOLD_AT:
            self.fold()

    # -- folding and reading ---------------------------------------------------------

    def fold(self) -> None:
        """Fold the recorded events into the per-tenant, per-hour counts."""
        with self._lock:
            self._fold()

    def _fold(self) -> None:
        # A close is recorded after its open, in the same deque: every close
        # folded has its open folded too, so open switches never read below zero.
        switches = _drain(self._switches)
        requests = _drain(self._requests)
        denied = _drain(self._denied)
        if not (switches or requests or denied):
            return
        now = time.time()
        hour = int(now // 3600) * 3600
        if switches:
            if hour != self._live_hour:
                self._settle()
                self._live_hour = hour
            live = self._live_switches
            live.update(switches)  # opens by tenant id, closes under None
            closed = live.pop(None, 0)
            self._total_closed += closed
            if len(switches) > closed:
                self._total_opened += len(switches) - closed
                moments = self._live_moments
                moments.update(dict.fromkeys(switches, now))
                moments.pop(None, None)
        pending = self._pending
        refused = Counter(denied)
        for tenant_id, count in Counter(requests).items():
            entry = pending[(tenant_id, hour)]
            entry.requests += count
            if count > refused[tenant_id]:  # at least one was served
                entry.last_activity = now
        for tenant_id, count in refused.items():
            entry = pending[(tenant_id, hour)]
            entry.denied_requests += count
            entry.last_denied = now

    def _settle(self) -> None:
        """Move the live switch counts into the per-tenant, per-hour counts (lock held)."""
        switches = self._live_switches
        if not switches:
            return
        hour, moments, pending = self._live_hour, self._live_moments, self._pending
        for tenant_id, count in switches.items():
            entry = pending[(tenant_id, hour)]  # type: ignore[index]  # None never stays
            entry.switches += count
            moment = moments[tenant_id]
            if moment > entry.last_activity:
                entry.last_activity = moment
        self._live_switches = Counter()
        self._live_moments = {}

    @property
    def total_switches(self) -> int:
        """Switches opened in this process since it started."""
        with self._lock:
            self._fold()
            return self._total_opened

    @property
    def active_switches(self) -> int:
        """Switches open right now in this process."""
        with self._lock:
            self._fold()
            return self._total_opened - self._total_closed

    def peek_pending(self) -> dict[tuple[str, int], Pending]:
        """Return a copy of the unpersisted counts, leaving them pending."""
        with self._lock:
            self._fold()
            self._settle()
            return {key: replace(value) for key, value in self._pending.items()}

    def take_pending(self) -> dict[tuple[str, int], Pending]:
        """Return the unpersisted counts and start afresh."""
        with self._lock:
            self._fold()
            self._settle()
            pending, self._pending = self._pending, defaultdict(Pending)
        return dict(pending)

    def restore_pending(self, pending: dict[tuple[str, int], Pending]) -> None:
        """Put counts back after a failed write, adding to whatever came since."""
        with self._lock:
            for key, value in pending.items():
                self._pending[key].add(value)

    def has_pending(self) -> bool:
        # Closes alone are nothing to write, but iterating the deque here could
        # race appends from other threads: a fold that finds nothing is cheap.
        return bool(
            self._switches or self._requests or self._denied or self._pending or self._live_switches
        )

    def _after_fork_in_child(self) -> None:
        # A forked worker starts with the parent's pending counts, which the
        # parent still owns and flushes: forgetting them here is what keeps them
        # from being counted twice. The lock may have been held at fork time.
        # Switches open in the forking thread stay open in the child: keep the totals.
        self._lock = threading.Lock()
        opened = sum(1 for event in self._switches if event is not None)
        self._total_opened += opened
        self._total_closed += len(self._switches) - opened
        for events in (self._switches, self._requests, self._denied):
            events.clear()
        self._pending = defaultdict(Pending)
        self._live_switches = Counter()
        self._live_moments = {}


counters = Counters()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=counters._after_fork_in_child)
