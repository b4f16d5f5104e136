"""Run every benchmark and print the ratios: ``make bench`` (or ``python -m bench.run``).

Options: ``--rounds N`` (interleaved rounds per benchmark, default 21; the
uvicorn benchmark runs a third as many), ``--quick`` (7 rounds: a smoke run, not
numbers to quote), ``--only NAME`` (switch, requests, uvicorn, queries, logs, otel),
``--baseline REF`` (the git ref whose middleware benchmark 5 compares with, default main).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile


def setup(tmpdir: str) -> None:
    """Point Django at a throwaway database in *tmpdir*, migrate it, register tenants."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    os.environ["BENCH_DATABASE"] = os.path.join(tmpdir, "bench.sqlite3")
    import django

    django.setup()
    from django.core.management import call_command

    import tenancy

    call_command("migrate", verbosity=0, interactive=False)
    for n in range(1, 21):
        tenancy.register_tenant(f"tenant-{n:02d}", f"Tenant {n}")
    tenancy.register_tenant("acme", "Acme Corporation")
    tenancy.register_tenant("retired", "Retired Inc")
    tenancy.deactivate_tenant("retired")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--only",
        choices=["switch", "requests", "uvicorn", "queries", "logs", "otel"],
        action="append",
        help="run only these benchmarks (repeatable)",
    )
    parser.add_argument("--baseline", default="main")
    args = parser.parse_args(argv)
    rounds = 7 if args.quick else args.rounds
    only = set(args.only or ["switch", "requests", "uvicorn", "queries", "logs", "otel"])

    with tempfile.TemporaryDirectory(prefix="tenancy-bench-") as tmpdir:
        setup(tmpdir)
        import django

        from . import logs, micro, otel, report, web

        print(
            f"tenancy benchmarks: Python {platform.python_version()}, "
            f"Django {django.get_version()}, {platform.system()} {platform.machine()}, "
            f"{os.cpu_count()} CPUs"
        )
        print(f"{rounds} interleaved rounds per benchmark; medians, ± half the interquartile range")
        checks: list[report.Check] = []
        if "switch" in only:
            checks += micro.run(rounds)
        if "requests" in only:
            checks += web.in_process(rounds)
            checks += web.by_endpoint(rounds)
            checks += web.middleware_alone(rounds)
        if "uvicorn" in only:
            web.under_uvicorn(max(3, rounds // 3), os.environ["BENCH_DATABASE"])
        if "queries" in only:
            checks += web.queries(rounds)
        if "logs" in only:
            checks += logs.run(rounds)
        if "otel" in only:
            checks += otel.run(rounds, args.baseline)
        ok = report.summary(checks)
        # Write the statistics now, while the throwaway database still exists.
        from tenancy.stats.flush import flush_stats, scheduler

        scheduler.stop()
        flush_stats()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
