"""Benchmark 5: what the OpenTelemetry hook costs the middleware, with the package absent.

The middleware of this tree is compared, called alone on a fresh request in
front of a bare view (as in 2c), with the middleware of a git ref from before
the hook (``--baseline``, default ``main``): its source is read with ``git show``
and run as a module of ``tenancy``, so both use the same registry, resolvers and
counters and differ only by the middleware's own code. The two are called in
turn, request after request (which goes first alternates), so a slow spell of
the machine hits both; the ref's middleware against a second copy of itself
gives the noise floor. With ``opentelemetry`` importable, both also run inside
a recording span (the SDK, spans dropped): what the attributes cost when wanted.
"""

from __future__ import annotations

import contextvars
import gc
import statistics
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import report, timing
from .timing import now

ROOT = Path(__file__).resolve().parent.parent
TENANT = {"HTTP_X_TENANT_ID": "acme"}


def baseline_middleware(ref: str) -> type | None:
    """Return ``TenantContextMiddleware`` as it is at git *ref*, or None if git cannot say."""
    try:
        source = subprocess.run(
            ["git", "show", f"{ref}:tenancy/middleware.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("tenancy._bench_baseline_middleware")
    module.__package__ = "tenancy"
    module.__file__ = str(ROOT / "tenancy" / "middleware.py")
    sys.modules[module.__name__] = module
    exec(compile(source, f"{ref}:tenancy/middleware.py", "exec"), module.__dict__)
    return module.TenantContextMiddleware


def _paired(a: Callable[[Any], Any], b: Callable[[Any], Any], make: Callable[[], Any], n: int):
    """Call *a* and *b* in turn, *n* times each, alternating which goes first; ns per call."""
    spent_a = spent_b = 0
    for i in range(n):
        request_a, request_b = make(), make()
        if i & 1:
            t0 = now()
            a(request_a)
            t1 = now()
            b(request_b)
            t2 = now()
            spent_a += t1 - t0
            spent_b += t2 - t1
        else:
            t0 = now()
            b(request_b)
            t1 = now()
            a(request_a)
            t2 = now()
            spent_b += t1 - t0
            spent_a += t2 - t1
    return spent_a / n, spent_b / n


def _difference(a: Any, b: Any, make: Callable[[], Any], rounds: int, n: int = 300) -> list[float]:
    """Per round, µs per call of *b* minus *a*, each round in a fresh context, gc off."""
    diffs = []
    contextvars.Context().run(_paired, a, b, make, n // 10)  # warm-up
    for _ in range(rounds):
        gc.disable()
        try:
            spent_a, spent_b = contextvars.Context().run(_paired, a, b, make, n)
        finally:
            gc.enable()
        diffs.append((spent_b - spent_a) / 1000)
    return diffs


def run(rounds: int, ref: str = "main") -> list[report.Check]:
    from django.core.handlers.wsgi import WSGIRequest
    from django.http import HttpResponse
    from django.test import RequestFactory

    from tenancy import otel
    from tenancy.middleware import TenantContextMiddleware

    environ = RequestFactory().get("/hello", **TENANT).environ

    def make() -> WSGIRequest:
        return WSGIRequest(dict(environ))

    def view(request: Any) -> HttpResponse:
        return HttpResponse(b"hello")

    report.section(
        f"5. The OpenTelemetry hook: the middleware alone, against the middleware at {ref!r}"
    )
    imported = sorted(m for m in sys.modules if m.startswith("opentelemetry") and sys.modules[m])
    report.line("opentelemetry importable", str(otel.AVAILABLE))
    baseline = baseline_middleware(ref)
    if baseline is None:
        report.line(f"middleware at {ref!r}", "not readable with git: skipped")
        return []
    before, again, now_ = baseline(view), baseline(view), TenantContextMiddleware(view)
    rounds *= 3
    cost = _difference(view, now_, make, rounds)
    noise = _difference(before, again, make, rounds)
    hook = _difference(before, now_, make, rounds)
    report.line("", "  median µs   ± half IQR")
    report.line("the middleware now (vs no middleware)", _us(cost))
    report.line(f"{ref!r} against itself (the noise floor)", _us(noise))
    state = "present, no span" if otel.AVAILABLE else "package absent"
    report.line(f"now against {ref!r} (the hook, {state})", _us(hook))
    if otel.AVAILABLE:
        from opentelemetry.sdk.trace import TracerProvider

        tracer = TracerProvider().get_tracer("bench")

        def spanned(handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
            def call(request: Any) -> Any:
                with tracer.start_as_current_span("GET /hello"):
                    return handler(request)

            return call

        recording = _difference(spanned(before), spanned(now_), make, rounds)
        report.line(f"in a recording span: now against {ref!r}", _us(recording))
        return []
    floor = abs(statistics.median(noise))
    measured = statistics.median(hook)
    return [
        report.Check(
            "without opentelemetry, the middleware costs what it did before the hook "
            "(within the noise floor + 0.1 µs), importing nothing of it",
            f"{measured:+.2f} µs (noise floor {floor:.2f} µs), imported: {imported or 'nothing'}",
            abs(measured) <= floor + 0.1 and not imported,
        )
    ]


def _us(samples: list[float]) -> str:
    return f"{statistics.median(samples):+8.2f}   ±{timing.spread_abs(samples):5.2f}"
