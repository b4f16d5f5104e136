"""One statement that adds a whole batch of counts to the hourly buckets.

The batch is one JSON document, read by ``jsonb_array_elements`` on PostgreSQL
(``jsonb``: parsed once, where ``json`` parses each element again for every
field read from it) and ``json_each`` on SQLite; both insert every bucket with
``ON CONFLICT DO UPDATE`` adding the counts to the row already there, and skip
the counts of tenants that no longer exist (a join on the tenant table). The
rows are fed in key order, so two writers lock the buckets they share in the
same order and never deadlock.
Other databases get :func:`add_one_by_one`: an ``UPDATE`` with ``F()``
increments per bucket and an ``INSERT`` where none existed yet.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce, Greatest

from .counters import Pending

__all__ = ["add_counts", "add_one_by_one"]

_COUNTS = ("switches", "requests", "denied_requests")

# The batch travels as one JSON array of [tenant id, hour, switches, requests, denials,
# last activity] rows, times as epoch seconds: one parameter that json.dumps() writes
# in C, where psycopg would adapt 60,000 list items one by one in Python.
_POSTGRESQL = """
INSERT INTO {bucket} (tenant_id, hour, switches, requests, denied_requests, last_activity)
SELECT p.tenant_id, to_timestamp(p.hour), p.switches, p.requests, p.denied_requests,
       CASE WHEN p.last_activity > 0 THEN to_timestamp(p.last_activity) END
FROM (
    SELECT e->>0 AS tenant_id, (e->>1)::bigint AS hour, (e->>2)::bigint AS switches,
           (e->>3)::bigint AS requests, (e->>4)::bigint AS denied_requests,
           (e->>5)::float8 AS last_activity
    FROM jsonb_array_elements(%s::jsonb) AS e
) AS p
WHERE p.tenant_id IN (SELECT t.tenant_id FROM {tenant} t)
ORDER BY p.tenant_id, p.hour
ON CONFLICT (tenant_id, hour) DO UPDATE SET
    switches = {bucket}.switches + EXCLUDED.switches,
    requests = {bucket}.requests + EXCLUDED.requests,
    denied_requests = {bucket}.denied_requests + EXCLUDED.denied_requests,
    last_activity = GREATEST({bucket}.last_activity, EXCLUDED.last_activity)
"""

# max() of SQLite returns NULL when either side is NULL, hence the CASE.
_SQLITE = """
INSERT INTO {bucket} (tenant_id, hour, switches, requests, denied_requests, last_activity)
SELECT json_extract(p.value, '$[0]'), json_extract(p.value, '$[1]'),
       json_extract(p.value, '$[2]'), json_extract(p.value, '$[3]'),
       json_extract(p.value, '$[4]'), json_extract(p.value, '$[5]')
FROM json_each(%s) AS p
WHERE json_extract(p.value, '$[0]') IN (SELECT t.tenant_id FROM {tenant} t)
ORDER BY p.key
ON CONFLICT (tenant_id, hour) DO UPDATE SET
    switches = switches + excluded.switches,
    requests = requests + excluded.requests,
    denied_requests = denied_requests + excluded.denied_requests,
    last_activity = CASE
        WHEN excluded.last_activity IS NULL THEN last_activity
        WHEN last_activity IS NULL OR excluded.last_activity > last_activity
            THEN excluded.last_activity
        ELSE last_activity END
"""


def _moment(epoch: float) -> datetime | None:
    return datetime.fromtimestamp(epoch, tz=UTC) if epoch else None


def add_counts(model: Any, pending: dict[tuple[str, int], Pending], *, using: str) -> int:
    """Add *pending* to *model*'s buckets; return how many buckets were written.

    One statement on PostgreSQL and SQLite, whatever the size of the batch.
    Call it inside a transaction: on another database it writes bucket by bucket.
    """
    connection = connections[using]
    rows = sorted(pending.items())
    tables = {
        "bucket": connection.ops.quote_name(model._meta.db_table),
        "tenant": connection.ops.quote_name(
            model._meta.get_field("tenant").related_model._meta.db_table
        ),
    }
    adapt = connection.ops.adapt_datetimefield_value
    params: list[Any]
    if connection.vendor == "postgresql":
        document = [
            [
                tenant_id,
                hour,
                counts.switches,
                counts.requests,
                counts.denied_requests,
                counts.last_activity,
            ]
            for (tenant_id, hour), counts in rows
        ]
        sql, params = _POSTGRESQL.format(**tables), [json.dumps(document)]
    elif connection.vendor == "sqlite":
        document = [
            [
                tenant_id,
                adapt(_moment(hour)),
                counts.switches,
                counts.requests,
                counts.denied_requests,
                adapt(_moment(counts.last_activity)),
            ]
            for (tenant_id, hour), counts in rows
        ]
        sql, params = _SQLITE.format(**tables), [json.dumps(document)]
    else:
        return add_one_by_one(model, pending, using=using)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def add_one_by_one(model: Any, pending: dict[tuple[str, int], Pending], *, using: str) -> int:
    """Add *pending* bucket by bucket with ``F()`` increments (any database Django supports)."""
    from ..models import Tenant

    known = set(
        Tenant.objects.using(using)
        .filter(tenant_id__in={tenant_id for tenant_id, _ in pending})
        .values_list("tenant_id", flat=True)
    )
    written = 0
    for (tenant_id, hour), counts in sorted(pending.items()):
        if tenant_id in known:
            _add(model, using, tenant_id, hour, counts)
            written += 1
    return written


def _add(model: Any, using: str, tenant_id: str, hour: int, counts: Pending) -> None:
    hour_start = _moment(hour)
    last = _moment(counts.last_activity)
    bucket = model.objects.using(using).filter(tenant_id=tenant_id, hour=hour_start)
    changes: dict[str, Any] = {name: F(name) + getattr(counts, name) for name in _COUNTS}
    if last is not None:
        value = Value(last, output_field=DateTimeField())
        changes["last_activity"] = Greatest(Coalesce("last_activity", value), value)
    if bucket.update(**changes):
        return
    try:
        with transaction.atomic(using=using):  # a savepoint: a failed insert spares the rest
            model.objects.using(using).create(
                tenant_id=tenant_id,
                hour=hour_start,
                last_activity=last,
                **{name: getattr(counts, name) for name in _COUNTS},
            )
    except IntegrityError:
        # Another process created this bucket since our update: add to theirs.
        if not bucket.update(**changes):
            raise
