"""Interleaved A/B timing: every variant runs once per round, rounds alternate order.

Each variant is a callable ``run(n) -> elapsed_ns`` (measured with :data:`now`,
this thread's CPU time) that performs its operation
``n`` times in its own loop (so the operation is inlined, as a user would write
it). Batches are sized to take about ``batch_ms`` each; the garbage collector is
off while a batch runs, as in :mod:`timeit`, and every batch runs in a fresh
:class:`contextvars.Context` (empty, or a copy of a given one): a
``ContextVar.set`` costs more the more variables the context already holds, so
what Django's setup or an earlier batch left behind must not weigh on the next
batch. A round runs every variant once, in
forward order on even rounds and backward on odd ones, so a slow phase of the
machine hits every variant alike; each batch follows an untimed warm-up run
of the same variant. Results are medians over rounds; a ratio or a
difference is taken per round (A and B of the same round) and its median kept.
"""

from __future__ import annotations

import contextvars
import gc
import statistics
import time
from collections.abc import Callable

#: The clock of every in-process benchmark: CPU time of this thread. Wall time
#: would also count the time other processes of a shared machine take from this
#: one, which is most of the noise there; CPU time only counts our own work.
now = time.thread_time_ns

Runner = Callable[[int], int]
ContextFactory = Callable[[], contextvars.Context]


def calibrate(run: Runner, batch_ms: float, context: ContextFactory) -> int:
    """Return how many operations of *run* take about *batch_ms* milliseconds."""
    n = 16
    while True:
        elapsed = context().run(run, n)
        if elapsed >= batch_ms * 1e6 / 8:
            return max(1, int(n * batch_ms * 1e6 / elapsed))
        n *= 4


def interleave(
    variants: dict[str, Runner],
    *,
    rounds: int,
    batch_ms: float = 20.0,
    context: ContextFactory = contextvars.Context,
) -> dict[str, list[float]]:
    """Run *variants* in interleaved rounds; return each one's ns per operation, per round.

    Each batch runs in a fresh context made by *context* (empty by default).
    """
    names = list(variants)
    sizes = {name: calibrate(variants[name], batch_ms, context) for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_no in range(rounds):
        order = names if round_no % 2 == 0 else names[::-1]
        for name in order:
            n = sizes[name]
            run = variants[name]
            # Untimed first: caches and branch predictors then hold this variant's
            # code, not the one of the variant before it.
            context().run(run, max(1, n // 10))
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                elapsed = context().run(run, n)
            finally:
                if gc_was_enabled:
                    gc.enable()
            samples[name].append(elapsed / n)
    return samples


def subtract(samples: list[float], overhead: list[float]) -> list[float]:
    """Subtract a per-round overhead (an empty loop) from per-round samples."""
    return [max(value - base, 0.0) for value, base in zip(samples, overhead, strict=True)]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a/b, each round's A against the same round's B."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True) if y > 0)


def paired_difference(a: list[float], b: list[float]) -> float:
    """Median over rounds of a - b."""
    return statistics.median(x - y for x, y in zip(a, b, strict=True))


def spread(samples: list[float]) -> float:
    """Interquartile range relative to the median: how noisy the rounds were."""
    if len(samples) < 4:
        return 0.0
    q1, _, q3 = statistics.quantiles(samples, n=4)
    mid = statistics.median(samples)
    return (q3 - q1) / mid if mid else 0.0


def spread_abs(samples: list[float]) -> float:
    """Half the interquartile range, in the samples' own unit."""
    if len(samples) < 4:
        return 0.0
    q1, _, q3 = statistics.quantiles(samples, n=4)
    return (q3 - q1) / 2
