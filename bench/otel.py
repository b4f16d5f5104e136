"""Benchmark 5: what the OpenTelemetry hook costs the middleware, with the package absent.

The middleware of this tree is compared, called alone on a fresh request in
front of a bare view (as in 2c), with the middleware of a git ref from before
the hook (``--baseline``, default ``main``): its source is read with ``git show``
and run as a module of ``tenancy``, so both use the same registry, resolvers and
counters and differ only by the middleware's own code. With ``opentelemetry``
importable, one more variant runs the current middleware inside a recording
span (the SDK, spans dropped), to show what the attributes cost when wanted.
"""

from __future__ import annotations

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


def run(rounds: int, ref: str = "main") -> list[report.Check]:
    from django.core.handlers.wsgi import WSGIRequest
    from django.http import HttpResponse
    from django.test import RequestFactory

    from tenancy import otel
    from tenancy.middleware import TenantContextMiddleware

    environ = RequestFactory().get("/hello", **TENANT).environ

    def view(request: Any) -> HttpResponse:
        return HttpResponse(b"hello")

    def runner(handler: Callable[[Any], Any]) -> timing.Runner:
        def run(n: int) -> int:
            t0 = now()
            for _ in range(n):
                handler(WSGIRequest(dict(environ)))
            return now() - t0

        return run

    report.section(
        "5. The OpenTelemetry hook: the middleware alone, against the middleware at "
        f"{ref!r} (no hook)"
    )
    imported = sorted(m for m in sys.modules if m.startswith("opentelemetry") and sys.modules[m])
    report.line("opentelemetry importable", str(otel.AVAILABLE))
    baseline = baseline_middleware(ref)
    if baseline is None:
        report.line(f"middleware at {ref!r}", "not readable with git: skipped")
        return []
    variants: dict[str, timing.Runner] = {
        "bare": runner(view),
        "baseline": runner(baseline(view)),
        "current": runner(TenantContextMiddleware(view)),
    }
    if otel.AVAILABLE:
        from opentelemetry.sdk.trace import TracerProvider

        tracer = TracerProvider().get_tracer("bench")
        current = TenantContextMiddleware(view)

        def in_span(request: Any) -> Any:
            with tracer.start_as_current_span("GET /hello"):
                return current(request)

        def bare_span(request: Any) -> Any:
            with tracer.start_as_current_span("GET /hello"):
                return view(request)

        variants["span_bare"] = runner(bare_span)
        variants["span_current"] = runner(in_span)
    samples = timing.interleave(variants, rounds=rounds * 3, batch_ms=5.0)
    us = {label: [v / 1000 for v in values] for label, values in samples.items()}

    def added(label: str, base: str = "bare") -> float:
        return timing.paired_difference(us[label], us[base])

    report.line("", "   µs/request        added µs")
    report.row("no middleware (WSGIRequest + view)", us["bare"], "us")
    report.row(
        f"tenancy middleware at {ref!r}", us["baseline"], "us", note=f"{added('baseline'):+7.2f}"
    )
    report.row("tenancy middleware now", us["current"], "us", note=f"{added('current'):+7.2f}")
    hook = added("current", "baseline")
    report.line("now - before (the hook, package absent)", f"{hook:+8.2f} us")
    if otel.AVAILABLE:
        report.row("no middleware, in a recording span", us["span_bare"], "us")
        report.row(
            "tenancy middleware now, in a recording span",
            us["span_current"],
            "us",
            note=f"{added('span_current', 'span_bare'):+7.2f}",
        )
        return []
    # Within the noise of a shared machine: a tenth of a µs either way.
    return [
        report.Check(
            "without opentelemetry, the middleware costs what it did before the hook",
            f"{hook:+.2f} µs, nothing imported: {imported == []}",
            abs(hook) <= 0.1 and not imported,
        )
    ]
