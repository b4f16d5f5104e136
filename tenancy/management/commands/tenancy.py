"""``manage.py tenancy``: manage tenants and read their statistics from the command line."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, time, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections, router
from django.db.models import Max
from django.db.models.functions import Length
from django.utils import timezone

from ...conf import tenancy_settings
from ...exceptions import TenancyError
from ...registry import tenant_context
from ...rls import table_states
from ...runtime import cleanup_inactive_user_contexts
from ...state import TenantInfo
from ...stats.report import ORDERS, TenantUsage, hourly_usage, iter_usage, window_totals
from ...stats.rollup import WINDOW_DAYS, rebase_windows
from ..run import active_tenant_ids, run_for_tenants

_RELATIVE = re.compile(r"(\d{1,6})([hd])")


def _whole_number(example: str) -> Callable[[str], int]:
    """An argparse type: a whole number of at least 1, the error naming *example*."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number{example}") from None
        if number < 1:
            raise argparse.ArgumentTypeError("must be at least 1")
        return number

    return parse


_positive_int = _whole_number(" of hours, like 24")
_count = _whole_number(", like 20")


def _since(value: str) -> datetime:
    """``24h``, ``7d``, or an ISO 8601 date or date and time (local unless it has an offset)."""
    relative = _RELATIVE.fullmatch(value)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return timezone.now() - (timedelta(hours=amount) if unit == "h" else timedelta(days=amount))
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "must be like 24h, 7d, 2030-05-17 or 2030-05-17T14:00"
        ) from None
    if len(value) <= 10:  # a date: from its start
        moment = datetime.combine(moment.date(), time.min)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _add_filters(parser: CommandParser) -> None:
    parser.add_argument("--limit", type=_count, help="Print at most this many tenants.")
    state = parser.add_mutually_exclusive_group()
    state.add_argument(
        "--active", dest="active", action="store_const", const=True, help="Active tenants only."
    )
    state.add_argument(
        "--inactive", dest="active", action="store_const", const=False, help="Inactive only."
    )
    parser.add_argument(
        "--since",
        type=_since,
        help="Only tenants used (switches, served requests) since: 24h, 7d or an ISO date.",
    )


def _json_object(value: str) -> dict[str, Any]:
    try:
        data = json.loads(value)
    except ValueError:
        raise argparse.ArgumentTypeError('must be valid JSON, like \'{"plan": "pro"}\'') from None
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError('must be a JSON object, like \'{"plan": "pro"}\'')
    return data


class Command(BaseCommand):
    help = (
        "Manage tenants: register, list, activate, deactivate, unregister; show usage "
        "statistics; remove stale per-user runtime settings; run a command per tenant; "
        "report row-level security."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        register = sub.add_parser("register", help="Create a tenant (active unless --inactive).")
        register.add_argument("tenant_id", help="Lowercase slug, e.g. acme.")
        register.add_argument("name", help="Display name.")
        register.add_argument("--metadata", type=_json_object, help="A JSON object.")
        register.add_argument("--inactive", action="store_true", help="Create it deactivated.")

        listing = sub.add_parser("list", help="List tenants, ordered by id (streamed).")
        listing.add_argument("--json", action="store_true", help="Print JSON.")
        _add_filters(listing)

        for name, text in (
            ("activate", "Let new switches and requests use a tenant."),
            ("deactivate", "Refuse new switches and requests for a tenant."),
            ("unregister", "Delete a tenant (refused while it owns data)."),
        ):
            sub.add_parser(name, help=text).add_argument("tenant_id")

        stats = sub.add_parser("stats", help="Usage summed over every process.")
        stats.add_argument("--json", action="store_true", help="Print JSON.")
        stats.add_argument(
            "--hours", type=_positive_int, default=24, help="Hours of the hourly series (24)."
        )
        stats.add_argument(
            "--order", choices=ORDERS, default="switches", help="Rank tenants by (switches)."
        )
        _add_filters(stats)

        rls = sub.add_parser(
            "rls", help="Row-level security of each tenant-scoped table (PostgreSQL)."
        )
        rls.add_argument("--json", action="store_true", help="Print JSON.")
        rls.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias (default).")

        cleanup = sub.add_parser(
            "cleanup-contexts", help="Remove per-user runtime settings not used for a while."
        )
        cleanup.add_argument(
            "--max-age-hours", type=_positive_int, default=24, help="Age limit (24)."
        )

        run = sub.add_parser(
            "run",
            help="Run a management command inside each tenant, one after another.",
            description="Run COMMAND [ARGS...] inside switch(tenant) for each tenant given.",
        )
        target = run.add_mutually_exclusive_group(required=True)
        target.add_argument(
            "--tenant",
            action="append",
            metavar="TENANT_ID",
            help="A tenant to run the command in (repeat for several).",
        )
        target.add_argument(
            "--all-active", action="store_true", help="Every active tenant, in id order."
        )
        run.add_argument("command_name", metavar="COMMAND", help="The management command.")
        run.add_argument("command_args", nargs=argparse.REMAINDER, metavar="ARGS")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"].replace("-", "_")
        try:
            getattr(self, f"do_{action}")(options)
        except TenancyError as exc:
            raise CommandError(exc.message) from exc

    # -- actions ----------------------------------------------------------------

    def do_register(self, options: dict[str, Any]) -> None:
        try:
            info = tenant_context.register_tenant(
                options["tenant_id"], options["name"], options["metadata"]
            )
        except ValueError as exc:  # an empty name
            raise CommandError(str(exc)) from exc
        if options["inactive"]:
            info = tenant_context.deactivate_tenant(info.tenant_id)
        state = "active" if info.active else "inactive"
        self.stdout.write(self.style.SUCCESS(f"Registered tenant {info.tenant_id} ({state})."))

    def _write_json_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        """Write a JSON array one element at a time (constant memory)."""
        self.stdout.write("[", ending="")
        first = True
        for row in rows:
            self.stdout.write(("\n  " if first else ",\n  ") + json.dumps(row), ending="")
            first = False
        self.stdout.write("\n]" if not first else "]")

    @staticmethod
    def _tenants(options: dict[str, Any]) -> tuple[int, Iterator[TenantInfo]]:
        """The width of the id column (one aggregate) and the tenants, streamed."""
        from ...models import Tenant

        rows = Tenant.objects.order_by("tenant_id")
        if options["active"] is not None:
            rows = rows.filter(active=options["active"])
        if options["since"] is not None:
            rows = rows.filter(stats_window__last_activity__gte=options["since"])
        if options["limit"] is not None:
            rows = rows[: options["limit"]]
        if options["limit"] is None:
            width = rows.aggregate(w=Max(Length("tenant_id")))["w"] or 0
        else:  # the longest id among the first rows only
            ids = Tenant.objects.filter(pk__in=rows.values("pk"))
            width = ids.aggregate(w=Max(Length("tenant_id")))["w"] or 0
        return width, (TenantInfo.from_model(t) for t in rows.iterator(chunk_size=2000))

    def do_list(self, options: dict[str, Any]) -> None:
        width, tenants = self._tenants(options)
        if options["json"]:
            self._write_json_rows(
                {
                    "tenant_id": t.tenant_id,
                    "name": t.name,
                    "active": t.active,
                    "metadata": dict(t.metadata),
                    "created_at": t.created_at.isoformat() if t.created_at else None,
                }
                for t in tenants
            )
            return
        printed = 0
        for t in tenants:
            state = "active" if t.active else "inactive"
            self.stdout.write(f"{t.tenant_id:<{width}}  {state:<8}  {t.name}")
            printed += 1
        if not printed:
            filtered = options["active"] is not None or options["since"] is not None
            self.stdout.write(
                "No tenants match."
                if filtered
                else "No tenants. Create one with: manage.py tenancy register ID NAME"
            )

    def do_activate(self, options: dict[str, Any]) -> None:
        tenant_context.activate_tenant(options["tenant_id"])
        self.stdout.write(self.style.SUCCESS(f"Tenant {options['tenant_id']} is active."))

    def do_deactivate(self, options: dict[str, Any]) -> None:
        tenant_context.deactivate_tenant(options["tenant_id"])
        self.stdout.write(self.style.SUCCESS(f"Tenant {options['tenant_id']} is inactive."))

    def do_unregister(self, options: dict[str, Any]) -> None:
        tenant_context.unregister_tenant(options["tenant_id"])
        self.stdout.write(self.style.SUCCESS(f"Unregistered tenant {options['tenant_id']}."))

    def do_stats(self, options: dict[str, Any]) -> None:
        from ...models import TenantStatsWindow

        # The windows of tenants idle today still start before the current window.
        rebase_windows(using=router.db_for_write(TenantStatsWindow))
        totals = window_totals(hourly_usage(WINDOW_DAYS * 24))
        usage = iter_usage(
            order=options["order"],
            active=options["active"],
            since=options["since"],
            limit=options["limit"],
        )
        if options["json"]:
            self._stats_json(totals, usage, hourly_usage(options["hours"]))
            return
        self.stdout.write(
            "{total_tenants} tenants ({active_tenants} active); last 30 days: {total_switches} "
            "switches, {total_requests} requests, {total_denied_requests} denied.".format(**totals)
        )
        header = f"{'tenant':<20}  {'state':<8}  {'members':>7}  {'switches':>9}  "
        self.stdout.write(header + f"{'requests':>9}  {'denied':>7}  last activity     last denied")
        for u in usage:
            state = "active" if u.active else "inactive"
            self.stdout.write(
                f"{u.tenant_id:<20}  {state:<8}  {u.members:>7}  {u.switches:>9}  "
                f"{u.requests:>9}  {u.denied_requests:>7}  {_moment(u.last_activity):<16}  "
                f"{_moment(u.last_denied)}"
            )

    def _stats_json(
        self, totals: dict[str, int], usage: Iterator[TenantUsage], hours: list[Any]
    ) -> None:
        head = json.dumps({**totals, "window_days": WINDOW_DAYS})
        self.stdout.write(head[:-1] + ', "tenants": ', ending="")
        self._write_json_rows(
            {
                "tenant_id": u.tenant_id,
                "name": u.name,
                "active": u.active,
                "members": u.members,
                "switches": u.switches,
                "requests": u.requests,
                "denied_requests": u.denied_requests,
                "last_activity": u.last_activity.isoformat() if u.last_activity else None,
                "last_denied": u.last_denied.isoformat() if u.last_denied else None,
            }
            for u in usage
        )
        hourly = [
            {
                "hour": h.hour.isoformat(),
                "switches": h.switches,
                "requests": h.requests,
                "denied_requests": h.denied_requests,
            }
            for h in hours
        ]
        self.stdout.write(', "hourly": ' + json.dumps(hourly) + "}")

    def do_rls(self, options: dict[str, Any]) -> None:
        alias = options["database"]
        if alias not in connections:
            raise CommandError(f"No database alias {alias!r} in DATABASES.")
        if connections[alias].vendor != "postgresql":
            raise CommandError(
                f"Row-level security needs PostgreSQL; database {alias!r} is "
                f"{connections[alias].vendor}."
            )
        on = bool(tenancy_settings.ROW_LEVEL_SECURITY)
        states = table_states(alias)
        missing = [s.table for s in states if not s.walled]
        if options["json"]:
            data = {
                "row_level_security": on,
                "database": alias,
                "tables": [s.as_dict() for s in states],
            }
            self.stdout.write(json.dumps(data, indent=2))
        else:
            self.stdout.write(
                f"ROW_LEVEL_SECURITY is {'on' if on else 'off'}; "
                f"{len(states) - len(missing)} of {len(states)} scoped tables walled "
                f"in database {alias!r}."
            )
            width = max([len("table"), *(len(s.table) for s in states)])
            self.stdout.write(f"{'table':<{width}}  enabled  forced  policy  model")
            for s in states:
                marks = [("yes" if flag else "NO") for flag in (s.enabled, s.forced, s.policy)]
                if not s.exists:
                    marks = ["-", "-", "-"]
                self.stdout.write(
                    f"{s.table:<{width}}  {marks[0]:<7}  {marks[1]:<6}  {marks[2]:<6}  {s.model}"
                )
        if on and missing:
            raise CommandError(
                f"Scoped tables without row-level security: {', '.join(missing)}. "
                f"Run 'python manage.py migrate --database {alias}' as the tables' owner."
            )

    def do_run(self, options: dict[str, Any]) -> None:
        tenant_ids = active_tenant_ids() if options["all_active"] else options["tenant"]
        if not tenant_ids:
            self.stdout.write("No active tenants: nothing to run.")
            return
        command = options["command_name"]
        failed = run_for_tenants(
            tenant_ids, command, options["command_args"], stdout=self.stdout, stderr=self.stderr
        )
        if failed:
            raise CommandError(
                f"{command} failed for {len(failed)} of {len(tenant_ids)} tenants: "
                + ", ".join(failed)
            )
        self.stdout.write(self.style.SUCCESS(f"{command} ran for {len(tenant_ids)} tenants."))

    def do_cleanup_contexts(self, options: dict[str, Any]) -> None:
        removed = cleanup_inactive_user_contexts(max_age_hours=options["max_age_hours"])
        self.stdout.write(
            self.style.SUCCESS(
                f"Removed {removed} runtime contexts unused for {options['max_age_hours']} hours."
            )
        )


def _moment(moment: datetime | None) -> str:
    """The admin's format (local time, to the minute), or "-"."""
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else "-"
