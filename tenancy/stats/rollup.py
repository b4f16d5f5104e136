"""Roll-ups kept by the flush, so that reading usage costs a page, not the population.

The hourly buckets stay the record. Each flush also adds the same counts to
three smaller tables, in a constant number of upserts
(``INSERT ... ON CONFLICT DO UPDATE`` with increments, on PostgreSQL and SQLite):

- :class:`~tenancy.models.TenantStatsDay`: per tenant and UTC day;
- :class:`~tenancy.models.TenantStatsHourTotal`: every tenant together, per hour
  (the statistics page's totals and chart read at most 720 of these rows);
- :class:`~tenancy.models.TenantStatsWindow`: per tenant, the sums over the last
  :data:`WINDOW_DAYS` days and the moments of its last activity and of its last
  denied request (indexed: the admin sorts and filters on them).

A window's sums only grow between flushes; once a day (the first flush of a
UTC day in each process, or :func:`rebase_windows`) the windows that start
before the current window subtract the day rows that fell out of it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import connections, transaction

from .counters import Pending

__all__ = ["WINDOW_DAYS", "rebase_windows", "roll_up", "window_start"]

#: Days summed by :class:`~tenancy.models.TenantStatsWindow`, today included.
WINDOW_DAYS = 30
# Rows per INSERT statement: well under SQLite's limit of bound parameters.
_CHUNK = 500
# The UTC day this process last rebased the windows on, per database alias.
_rebased: dict[str, date] = {}


def window_start(today: date | None = None) -> date:
    """Return the first day of the current window (``WINDOW_DAYS`` days, today included)."""
    today = today or datetime.now(UTC).date()
    return today - timedelta(days=WINDOW_DAYS - 1)


def _moment(epoch: float) -> datetime | None:
    return datetime.fromtimestamp(epoch, tz=UTC) if epoch else None


def _upsert(
    cursor: Any,
    table: str,
    columns: Sequence[tuple[str, str]],
    conflict: Sequence[str],
    updates: Sequence[str],
    rows: list[tuple[Any, ...]],
) -> None:
    """``INSERT rows ... ON CONFLICT (conflict) DO UPDATE SET updates``.

    *columns* are (name, PostgreSQL type). On PostgreSQL one statement whatever
    the number of rows, the rows bound as one JSON document (``json.dumps``
    writes it in C, where psycopg would adapt each value of a list in Python),
    read as ``jsonb``: parsed once, where ``json`` parses an element again for
    each field read from it;
    elsewhere ``VALUES`` in chunks of 500 rows. Table and column names come
    from the models, never from input; values are bound.
    """
    names = ", ".join(name for name, _type in columns)
    tail = f" ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {', '.join(updates)}"
    if not rows:
        return
    if cursor.db.vendor == "postgresql":
        values = ", ".join(f"(e->>{i})::{sql_type}" for i, (_n, sql_type) in enumerate(columns))
        sql = (
            f"INSERT INTO {table} ({names}) SELECT {values} "  # noqa: S608 - names only
            "FROM jsonb_array_elements(%s::jsonb) AS e"
        )
        cursor.execute(sql + tail, [json.dumps(rows, default=_iso)])
        return
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    head = f"INSERT INTO {table} ({names}) VALUES "  # noqa: S608 - names only
    for i in range(0, len(rows), _CHUNK):
        chunk = rows[i : i + _CHUNK]
        params = [value for row in chunk for value in row]
        cursor.execute(head + ", ".join([placeholders] * len(chunk)) + tail, params)


def _iso(value: date) -> str:
    """Dates and aware datetimes in the JSON document: ISO 8601, read back by ``::date``."""
    return value.isoformat()


def _added(table: str, *fields: str) -> list[str]:
    return [f"{f} = {table}.{f} + excluded.{f}" for f in fields]


def _later(table: str, field: str) -> str:
    # Portable GREATEST ignoring NULLs (SQLite's max() returns NULL with a NULL).
    return (
        f"{field} = CASE WHEN {table}.{field} IS NULL OR excluded.{field} > {table}.{field} "
        f"THEN excluded.{field} ELSE {table}.{field} END"
    )


def roll_up(pending: dict[tuple[str, int], Pending], *, using: str) -> None:
    """Add *pending* (counts of existing tenants) to the roll-ups, in the flush's transaction.

    Three statements for any number of tenants (more only past 500 rows each),
    plus the daily rebase of the windows.
    """
    from ..models import TenantStatsDay, TenantStatsHourTotal, TenantStatsWindow

    if not pending:
        return
    connection = connections[using]
    ops = connection.ops
    days: defaultdict[tuple[str, date], Pending] = defaultdict(Pending)
    hours: defaultdict[int, Pending] = defaultdict(Pending)
    windows: defaultdict[str, Pending] = defaultdict(Pending)
    start = window_start()
    for (tenant_id, hour), counts in pending.items():
        day = datetime.fromtimestamp(hour, tz=UTC).date()
        days[(tenant_id, day)].add(counts)
        hours[hour].add(counts)
        window = windows[tenant_id]
        if day >= start:
            window.add(counts)
        else:  # counts kept back for a month: only their moments count
            window.add(Pending(last_activity=counts.last_activity, last_denied=counts.last_denied))

    counted = ("switches", "requests", "denied_requests")
    count_columns = [(name, "bigint") for name in counted]
    day_table = TenantStatsDay._meta.db_table
    hour_table = TenantStatsHourTotal._meta.db_table
    window_table = TenantStatsWindow._meta.db_table
    with connection.cursor() as cursor:
        _upsert(
            cursor,
            day_table,
            (("tenant_id", "text"), ("day", "date"), *count_columns),
            ("tenant_id", "day"),
            _added(day_table, *counted),
            [
                (t, ops.adapt_datefield_value(d), c.switches, c.requests, c.denied_requests)
                for (t, d), c in sorted(days.items())
            ],
        )
        _upsert(
            cursor,
            hour_table,
            (("hour", "timestamptz"), *count_columns),
            ("hour",),
            _added(hour_table, *counted),
            [
                (
                    ops.adapt_datetimefield_value(datetime.fromtimestamp(h, tz=UTC)),
                    c.switches,
                    c.requests,
                    c.denied_requests,
                )
                for h, c in sorted(hours.items())
            ],
        )
        _upsert(
            cursor,
            window_table,
            (
                ("tenant_id", "text"),
                ("since", "date"),
                *count_columns,
                ("last_activity", "timestamptz"),
                ("last_denied", "timestamptz"),
            ),
            ("tenant_id",),
            [
                *_added(window_table, *counted),
                _later(window_table, "last_activity"),
                _later(window_table, "last_denied"),
            ],
            [
                (
                    t,
                    ops.adapt_datefield_value(start),
                    c.switches,
                    c.requests,
                    c.denied_requests,
                    ops.adapt_datetimefield_value(_moment(c.last_activity)),
                    ops.adapt_datetimefield_value(_moment(c.last_denied)),
                )
                for t, c in sorted(windows.items())
            ],
        )
    if _rebased.get(using) != datetime.now(UTC).date():
        rebase_windows(using=using)


def rebase_windows(*, using: str, today: date | None = None) -> int:
    """Move the windows that start before the current one; return how many moved.

    One statement: each window subtracts the day rows that left it, read
    through their unique index. Runs once a day per process from :func:`roll_up`.
    """
    from ..models import TenantStatsDay, TenantStatsWindow

    today = today or datetime.now(UTC).date()
    start = window_start(today)
    window = TenantStatsWindow._meta.db_table
    day = TenantStatsDay._meta.db_table
    ops = connections[using].ops
    since = ops.adapt_datefield_value(start)

    # Subtract the days that left the window rather than summing those still in
    # it: a flush committing meanwhile adds to the row this statement then
    # updates (PostgreSQL re-reads it), so its increment is never lost. Never
    # below zero (counts kept back past the window were never added).
    # Table and column names come from the models; every value is bound.
    def drop(field: str) -> str:
        gone = (
            f"COALESCE((SELECT SUM(d.{field}) FROM {day} d "  # noqa: S608
            f"WHERE d.tenant_id = {window}.tenant_id AND d.day >= {window}.since "
            "AND d.day < %s), 0)"
        )
        return f"{field} = CASE WHEN {field} > {gone} THEN {field} - {gone} ELSE 0 END"

    totals = ", ".join(drop(f) for f in ("switches", "requests", "denied_requests"))
    sql = f"UPDATE {window} SET {totals}, since = %s WHERE since < %s"  # noqa: S608
    with connections[using].cursor() as cursor:
        cursor.execute(sql, [since] * 8)
        changed = cursor.rowcount
    if today == datetime.now(UTC).date():
        transaction.on_commit(lambda: _rebased.__setitem__(using, today), using=using)
    return changed
