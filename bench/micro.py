"""Benchmark 1: switching and reading the context against bare ``contextvars`` and django-scopes."""

from __future__ import annotations

import asyncio
import contextvars
from contextvars import ContextVar

from django_scopes import scope

import tenancy
from tenancy.stats.counters import counters

from . import report, timing
from .timing import now

_BARE: ContextVar[str | None] = ContextVar("bench_bare", default=None)


def empty_loop(n: int) -> int:
    t0 = now()
    for _ in range(n):
        pass
    return now() - t0


def bare_pair(n: int) -> int:
    var = _BARE
    t0 = now()
    for _ in range(n):
        token = var.set("acme")
        var.reset(token)
    return now() - t0


def warm_switch(n: int) -> int:
    switch = tenancy.switch
    t0 = now()
    for _ in range(n):
        with switch("acme"):
            pass
    return now() - t0


def scopes_scope(n: int) -> int:
    """django-scopes' ``scope()``: a with-block that binds a dict and validates nothing."""
    t0 = now()
    for _ in range(n):
        with scope(tenant="acme"):
            pass
    return now() - t0


def nested_switch(n: int) -> int:
    """A switch inside a bound context (a request's), so a new snapshot is built each time."""
    with tenancy.Context(request_id="0f8fad5b-d9cb-469f-a165-70867728950e", user_id=42):
        return warm_switch(n)


def stats_counters(n: int) -> int:
    record = counters.record_switch
    t0 = now()
    for _ in range(n):
        record("acme")
        record(None)
    elapsed = now() - t0
    counters.fold()  # what a switch does every few thousand entries, outside the timing
    return elapsed


def bare_get(n: int) -> int:
    get = _BARE.get
    t0 = now()
    for _ in range(n):
        get()
    return now() - t0


def tenant_get(n: int) -> int:
    get = tenancy.get_current_tenant_id
    t0 = now()
    for _ in range(n):
        get()
    return now() - t0


def _on_loop(loop: asyncio.AbstractEventLoop, make_coro: object) -> object:
    def run(n: int) -> int:
        return loop.run_until_complete(make_coro(n))  # type: ignore[operator,no-any-return]

    return run


async def _async_empty(n: int) -> int:
    t0 = now()
    for _ in range(n):
        pass
    return now() - t0


async def _async_bare_pair(n: int) -> int:
    var = _BARE
    t0 = now()
    for _ in range(n):
        token = var.set("acme")
        var.reset(token)
    return now() - t0


async def _async_warm_switch(n: int) -> int:
    aswitch = tenancy.aswitch
    t0 = now()
    for _ in range(n):
        async with aswitch("acme"):
            pass
    return now() - t0


class _MinimalBlock:
    """The least a with-block can do to bind a value: set on enter, reset on exit."""

    __slots__ = ("_token", "_value")

    def __init__(self, value: str) -> None:
        self._value = value

    def __enter__(self) -> None:
        self._token = _BARE.set(self._value)

    def __exit__(self, *exc_info: object) -> None:
        _BARE.reset(self._token)


def minimal_block(n: int) -> int:
    block = _MinimalBlock
    t0 = now()
    for _ in range(n):
        with block("acme"):
            pass
    return now() - t0


def _view_context() -> contextvars.Context:
    """Return the context a Django view runs in (what asgiref and Django bind there)."""
    from django.test import Client

    from .urls import captured

    Client().get("/context")
    return captured.pop()


def _measure(rounds: int, context: timing.ContextFactory) -> dict[str, list[float]]:
    loop = asyncio.new_event_loop()
    try:
        samples = timing.interleave(
            {
                "empty": empty_loop,
                "bare": bare_pair,
                "minimal": minimal_block,
                "switch": warm_switch,
                "scopes": scopes_scope,
                "counters": stats_counters,
                "nested": nested_switch,
                "bare_get": bare_get,
                "tenant_get": tenant_get,
                "aempty": _on_loop(loop, _async_empty),
                "abare": _on_loop(loop, _async_bare_pair),
                "aswitch": _on_loop(loop, _async_warm_switch),
            },
            rounds=rounds,
            context=context,
        )
    finally:
        loop.close()
    net = {name: timing.subtract(values, samples["empty"]) for name, values in samples.items()}
    for name in ("abare", "aswitch"):
        net[name] = timing.subtract(samples[name], samples["aempty"])
    return net


def run(rounds: int) -> list[report.Check]:
    """Run benchmark 1 and print its tables; return the targets it checks."""
    with tenancy.switch("acme"):  # warm the registry
        pass
    checks = []
    view_context = _view_context()
    for title, context in (
        ("in an empty context", contextvars.Context),
        ("in the context a Django view runs in", view_context.copy),
    ):
        net = _measure(rounds, context)
        report.section(f"1. Context switching {title} (ns per operation, loop overhead subtracted)")
        report.row("ContextVar.set + reset (bare pair)", net["bare"], "ns")
        report.row(
            "  the least a with-block can do: set + reset",
            net["minimal"],
            "ns",
            against=net["bare"],
        )
        report.row("switch() enter+exit, warm tenant", net["switch"], "ns", against=net["bare"])
        report.row("  the switch's two counter appends", net["counters"], "ns", against=net["bare"])
        report.row("django_scopes.scope() enter+exit", net["scopes"], "ns", against=net["bare"])
        report.row(
            "switch() with a request's context bound", net["nested"], "ns", against=net["bare"]
        )
        report.row("async: ContextVar.set + reset", net["abare"], "ns")
        report.row("aswitch() enter+exit, warm tenant", net["aswitch"], "ns", against=net["abare"])
        report.row("ContextVar.get()", net["bare_get"], "ns")
        report.row("get_current_tenant_id()", net["tenant_get"], "ns", against=net["bare_get"])
        checks += [
            report.ratio_check(
                f"warm switch() no slower than django_scopes.scope(), {title}",
                net["switch"],
                net["scopes"],
                1.0,
            ),
            report.ratio_check(
                f"warm aswitch() within 1.2x of switch(), {title}",
                net["aswitch"],
                net["switch"],
                1.2,
            ),
            report.ratio_check(
                f"warm switch() <= 4x bare set/reset, {title}", net["switch"], net["bare"], 4.0
            ),
            report.ratio_check(
                f"warm aswitch() <= 4x bare set/reset, {title}", net["aswitch"], net["abare"], 4.0
            ),
        ]
    return checks
