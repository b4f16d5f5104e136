"""Benchmarks 2 and 3: whole requests through each middleware stack, and their queries.

In process, each stack has a Django test ``Client`` of its own (the middleware
chain is loaded at its first request) and the variants run interleaved. Under
uvicorn, each stack is a server process of its own on a free 127.0.0.1 port and
concurrent httpx clients load them in turn, round after round.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from . import report, timing
from .stacks import ACCESS_LOGGER, STACKS
from .timing import now

ROOT = Path(__file__).resolve().parent.parent
TENANT = {"HTTP_X_TENANT_ID": "acme"}

# (label, stack, access log on, path)
VARIANTS = [
    ("bare", "bare", False, "/hello"),
    ("bare_logged", "bare", False, "/hello-logged"),
    ("tenancy", "tenancy", False, "/hello"),
    ("tenancy_log", "tenancy", True, "/hello"),
    ("django_guid", "django_guid", False, "/hello"),
    ("log_request_id", "log_request_id", False, "/hello"),
]


@contextmanager
def _access_log(enabled: bool) -> Iterator[None]:
    logger = logging.getLogger(ACCESS_LOGGER)
    level = logger.level
    logger.setLevel(logging.INFO if enabled else logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _client(stack: str) -> Client:
    client = Client(**TENANT)
    with override_settings(MIDDLEWARE=STACKS[stack]):
        client.get("/hello")  # loads this stack's middleware chain, warms the registry
    return client


def own_receivers(stack: str) -> None:
    """Connect django-log-request-id's request_finished receiver for its own stack only.

    Importing its middleware connects it for every request of the process; in
    front of another stack it raises and catches an AttributeError per request,
    a cost that belongs to its stack, not to the others.
    """
    from django.core.signals import request_finished
    from log_request_id.middleware import _clear_request_id

    if stack == "log_request_id":
        request_finished.connect(_clear_request_id)
    else:
        request_finished.disconnect(_clear_request_id)


def _runner(client: Client, path: str, access_log: bool, stack: str) -> timing.Runner:
    def run(n: int) -> int:
        own_receivers(stack)
        get = client.get
        with _access_log(access_log):
            t0 = now()
            for _ in range(n):
                get(path)
            return now() - t0

    return run


def _check_responses(clients: dict[str, Client]) -> None:
    for label, stack, _, path in VARIANTS:
        response = clients[stack].get(path)
        assert response.status_code == 200, (label, response.status_code)
        if stack != "bare":
            assert response.headers.get("X-Request-ID"), (label, "no X-Request-ID")


def in_process(rounds: int) -> list[report.Check]:
    """Benchmark 2, in process: µs per request through each stack (Django test client)."""
    clients = {stack: _client(stack) for stack in STACKS}
    _check_responses(clients)
    samples = timing.interleave(
        {label: _runner(clients[stack], path, log, stack) for label, stack, log, path in VARIANTS},
        # Short batches, ten times as many rounds: a variant and the baseline
        # run milliseconds apart, so a slow spell of the machine hits both.
        rounds=rounds * 10,
        batch_ms=2.0,
    )
    own_receivers("log_request_id")  # as it was: connected
    us = {label: [v / 1000 for v in values] for label, values in samples.items()}

    def added(label: str, base: str = "bare") -> float:
        return timing.paired_difference(us[label], us[base])

    report.section("2a. A request through each middleware stack, in process (test client)")
    report.line("", "   µs/request        added µs")
    report.row("no middleware (DRF view)", us["bare"], "us")
    for label, text in (
        ("tenancy", "tenancy: request id + tenant + context"),
        ("tenancy_log", "  the same + access log line"),
        ("django_guid", "django-guid"),
        ("log_request_id", "django-log-request-id"),
        ("bare_logged", "no middleware, view writes 1 logger.info"),
    ):
        report.row(text, us[label], "us", note=f"{added(label):+7.1f}")
    access_line = timing.paired_difference(us["tenancy_log"], us["tenancy"])
    ordinary_line = added("bare_logged")
    report.line("access log line (tenancy_log - tenancy)", f"{access_line:8.1f} us")
    report.line("one ordinary logger.info in the view", f"{ordinary_line:8.1f} us")
    return [
        report.Check(
            "access log line costs no more than one ordinary logger.info",
            f"{access_line:.1f} µs vs {ordinary_line:.1f} µs",
            access_line <= ordinary_line,
        ),
    ]


# Benchmark 2d: (endpoint, path of each stack). The logging endpoint logs one line
# through a handler carrying the stack's own log filter (bench.settings); its
# baseline ("bare") logs the same line with neither product installed, and
# "bare_own"/"bare_peer" show each product's filter without its middleware.
ENDPOINTS = {
    "plain": {stack: "/plain" for stack in ("bare", "tenancy", "log_request_id")},
    "DRF": {stack: "/hello" for stack in ("bare", "tenancy", "log_request_id")},
    "logging": {
        "bare": "/logged/none",
        "bare_own": "/logged/tenancy",
        "bare_peer": "/logged/log_request_id",
        "tenancy": "/logged/tenancy",
        "log_request_id": "/logged/log_request_id",
    },
}


# The logging endpoint's filters without their middleware: (label, stack, name).
FILTERS_ALONE = (
    ("bare_own", "tenancy", "tenancy"),
    ("bare_peer", "log_request_id", "django-log-request-id"),
)


def by_endpoint(rounds: int) -> list[report.Check]:
    """Benchmark 2d: whole requests through Django's WSGI handler, by endpoint.

    The handler Django serves with (middleware chain, URL resolving, the view,
    the request_started/finished signals), called directly: no test client and
    its instrumentation around it, so a few µs of middleware stand out of the noise.
    Each stack is compared with no middleware on the same endpoint. On the logging
    endpoint a stack is what a user installs (the middleware and its log filter),
    compared with the same line logged with neither; each product's filter alone,
    without its middleware, is shown as well (django-log-request-id's filter is
    slower without its middleware than with it, tenancy's the other way round).
    """
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.signals import request_finished
    from django.test import RequestFactory
    from log_request_id.middleware import _clear_request_id

    def handler(stack: str) -> WSGIHandler:
        with override_settings(MIDDLEWARE=STACKS[stack]):
            return WSGIHandler()  # loads the middleware chain now

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        return None

    handlers = {stack: handler(stack) for stack in ("bare", "tenancy", "log_request_id")}
    variants: dict[str, timing.Runner] = {}
    for endpoint, paths in ENDPOINTS.items():
        for label, path in paths.items():
            stack = "bare" if label.startswith("bare") else label
            serve = handlers[stack]
            environ = RequestFactory().get(path, **TENANT).environ

            def run(
                n: int, serve: WSGIHandler = serve, environ: dict = environ, stack: str = stack
            ) -> int:
                own_receivers(stack)
                t0 = now()
                for _ in range(n):
                    serve(dict(environ), start_response).close()
                return now() - t0

            response = serve(dict(environ), start_response)
            assert response.status_code == 200, (endpoint, label, response.status_code)
            response.close()
            variants[f"{endpoint}:{label}"] = run
    try:
        samples = timing.interleave(variants, rounds=rounds * 5, batch_ms=5.0)
    finally:
        request_finished.connect(_clear_request_id)
    us = {label: [v / 1000 for v in values] for label, values in samples.items()}

    report.section("2d. Whole requests through Django's WSGI handler, by endpoint (access log off)")
    report.line("", "   µs/request        added µs")
    checks = []
    for endpoint in ENDPOINTS:
        base = us[f"{endpoint}:bare"]
        ours = timing.paired_difference(us[f"{endpoint}:tenancy"], base)
        theirs = timing.paired_difference(us[f"{endpoint}:log_request_id"], base)
        report.row(f"{endpoint} view, no middleware", base, "us")
        for alone_label, stack, name in FILTERS_ALONE if endpoint == "logging" else ():
            alone = us[f"{endpoint}:{alone_label}"]
            on_top = timing.paired_difference(us[f"{endpoint}:{stack}"], alone)
            added = timing.paired_difference(alone, base)
            report.row(
                f"  {name} filter alone",
                alone,
                "us",
                note=f"{added:+7.1f}  (+{on_top:.1f} with mw)",
            )
        report.row("  tenancy", us[f"{endpoint}:tenancy"], "us", note=f"{ours:+7.1f}")
        report.row(
            "  django-log-request-id",
            us[f"{endpoint}:log_request_id"],
            "us",
            note=f"{theirs:+7.1f}",
        )
        checks.append(
            report.Check(
                f"tenancy stack adds no more µs than django-log-request-id, {endpoint} endpoint",
                f"+{ours:.1f} µs vs +{theirs:.1f} µs",
                ours <= theirs,
            )
        )
    return checks


def middleware_alone(rounds: int) -> list[report.Check]:
    """Benchmark 2c: each middleware called on a fresh request, in front of a bare view.

    No handler, no URL resolving, no DRF: what the middleware adds, with much
    less noise around it than a whole request has.
    """
    from django.core.handlers.wsgi import WSGIRequest
    from django.http import HttpResponse
    from django.test import RequestFactory
    from django.utils.module_loading import import_string

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

    chains = {stack: import_string(paths[0])(view) for stack, paths in STACKS.items() if paths}
    samples = timing.interleave(
        {
            "bare": runner(view),
            **{stack: runner(chain) for stack, chain in chains.items()},
        },
        rounds=rounds * 3,
        batch_ms=5.0,
    )
    us = {label: [v / 1000 for v in values] for label, values in samples.items()}

    def added(label: str) -> float:
        return timing.paired_difference(us[label], us["bare"])

    report.section("2c. The middleware alone: called on a fresh request in front of a bare view")
    report.line("", "   µs/request        added µs")
    report.row("no middleware (WSGIRequest + view)", us["bare"], "us")
    for label, text in (
        ("tenancy", "tenancy: request id + tenant + context"),
        ("django_guid", "django-guid"),
        ("log_request_id", "django-log-request-id"),
    ):
        report.row(text, us[label], "us", note=f"{added(label):+7.1f}")
    return [
        report.Check(
            "tenancy middleware alone adds fewer µs than django-log-request-id's",
            f"+{added('tenancy'):.1f} µs vs +{added('log_request_id'):.1f} µs",
            added("tenancy") < added("log_request_id"),
        )
    ]


def queries(rounds: int) -> list[report.Check]:
    """Benchmark 3: database queries of one request, warm and cold tenant."""
    from tenancy.registry import reset_all_caches

    client = _client("tenancy")

    def count(path: str, tenant: str, cold: bool) -> tuple[int, int]:
        if cold:
            reset_all_caches()
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path, HTTP_X_TENANT_ID=tenant)
        return len(captured), response.status_code

    report.section("3. Database queries per request (tenancy stack, TenantRequired view)")
    checks = []
    for tenant, what in (
        ("acme", "active tenant"),
        ("retired", "inactive tenant"),
        ("ghost", "unknown tenant"),
    ):
        cold, cold_status = count("/guarded", tenant, cold=True)
        warm_counts = {count("/guarded", tenant, cold=False) for _ in range(3)}
        warm, warm_status = max(warm_counts)
        report.line(
            f"{what} ({tenant})", f"cold {cold} query, warm {warm} queries, HTTP {warm_status}"
        )
        checks.append(report.Check(f"0 queries per warm request, {what}", str(warm), warm == 0))
        assert cold_status == warm_status
    return checks


# -- under uvicorn ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A uvicorn process serving one stack of the benchmark project."""

    def __init__(self, stack: str, access_log: bool, database: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "BENCH_DATABASE": database,
            "BENCH_STACK": stack,
            "BENCH_ACCESS_LOG": "1" if access_log else "0",
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.asgi:application",
                "--host=127.0.0.1",
                f"--port={self.port}",
                "--lifespan=off",
                "--log-level=warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait_ready(self, get: Callable[[str], Any], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited: {self.process.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                get(self.url + "/hello")
                return
            except Exception:
                time.sleep(0.2)
        raise RuntimeError("uvicorn did not start in time")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


async def _load(url: str, requests: int, concurrency: int) -> tuple[float, list[float]]:
    """Send *requests* GETs from *concurrency* clients; return req/s and latencies (ms)."""
    import httpx

    latencies: list[float] = []
    remaining = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, headers={"X-Tenant-ID": "acme"}) as client:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                t0 = time.perf_counter()
                response = await client.get(url)
                latencies.append((time.perf_counter() - t0) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{url} answered {response.status_code}")

        remaining = concurrency * 4  # open the connections first
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        remaining = requests
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return requests / elapsed, latencies


def under_uvicorn(rounds: int, database: str, requests: int = 400, concurrency: int = 16) -> None:
    """Benchmark 2, under uvicorn: req/s and p99 of each stack, loaded in turn."""
    import httpx

    served = ("bare", "tenancy", "tenancy_log", "django_guid", "log_request_id")
    variants = [v for v in VARIANTS if v[0] in served]
    servers = {label: Server(stack, log, database) for label, stack, log, _ in variants}
    try:
        with httpx.Client(headers={"X-Tenant-ID": "acme"}) as client:
            for server in servers.values():
                server.wait_ready(client.get)
        throughput: dict[str, list[float]] = {label: [] for label in servers}
        p99: dict[str, list[float]] = {label: [] for label in servers}
        p50: dict[str, list[float]] = {label: [] for label in servers}
        labels = list(servers)
        for round_no in range(rounds):
            for label in labels if round_no % 2 == 0 else labels[::-1]:
                rate, latencies = asyncio.run(
                    _load(servers[label].url + "/hello", requests, concurrency)
                )
                throughput[label].append(rate)
                cuts = statistics.quantiles(latencies, n=100)
                p50[label].append(cuts[49])
                p99[label].append(cuts[98])
    finally:
        for server in servers.values():
            server.stop()

    report.section(
        f"2b. Under uvicorn: 1 worker per stack, {concurrency} concurrent httpx clients, "
        f"{requests} requests a round"
    )
    report.line("", "     req/s   vs bare     p50 ms    p99 ms")
    for label, text in (
        ("bare", "no middleware (DRF view)"),
        ("tenancy", "tenancy: request id + tenant + context"),
        ("tenancy_log", "  the same + access log line"),
        ("django_guid", "django-guid"),
        ("log_request_id", "django-log-request-id"),
    ):
        ratio = timing.paired_ratio(throughput[label], throughput["bare"])
        report.line(
            text,
            f"{statistics.median(throughput[label]):10.0f}   {ratio:6.3f}x"
            f"   {statistics.median(p50[label]):8.2f}  {statistics.median(p99[label]):8.2f}",
        )
