"""Usage figures read back for the admin and the ``tenancy stats`` command.

Each figure is the hourly buckets in the database (every process's flushed
counts) plus this process's pending counts, read under the flush lock so that
no count is seen twice or missed (see :func:`tenancy.stats.flush.read_consistently`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import BigIntegerField, Count, Max, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from .counters import Pending
from .flush import read_consistently

__all__ = [
    "HourUsage",
    "TenantUsage",
    "annotate_usage",
    "get_stats",
    "hourly_usage",
    "pending_by_tenant",
    "tenant_usage",
    "usage_summary",
    "usage_totals",
]


@dataclass(frozen=True)
class TenantUsage:
    """Usage of one tenant, summed over every process and every hour."""

    tenant_id: str
    name: str
    active: bool
    members: int
    switches: int
    requests: int
    denied_requests: int
    last_activity: datetime | None


@dataclass(frozen=True)
class HourUsage:
    """Usage of every tenant together during the hour starting at ``hour``."""

    hour: datetime
    switches: int
    requests: int
    denied_requests: int


def _bucket_total(field: str, function: Any = Sum) -> Any:
    from ..models import TenantStatsBucket

    per_tenant = (
        TenantStatsBucket.objects.filter(tenant_id=OuterRef("tenant_id"))
        .order_by()  # the model's ordering would split the GROUP BY per hour
        .values("tenant_id")
        .annotate(total=function(field))
        .values("total")
    )
    return Subquery(per_tenant)


def annotate_usage(queryset: QuerySet[Any]) -> QuerySet[Any]:
    """Annotate a ``Tenant`` queryset with its flushed usage, one query for any number of rows.

    Adds ``usage_members``, ``usage_switches``, ``usage_requests``,
    ``usage_denied_requests`` and ``usage_last_activity``. Correlated
    subqueries, not joins: a join over memberships and buckets would multiply
    one by the other.
    """
    from ..models import TenantMembership

    members = (
        TenantMembership.objects.filter(tenant_id=OuterRef("tenant_id"))
        .order_by()
        .values("tenant_id")
        .annotate(total=Count("pk"))
        .values("total")
    )
    zero_if_none = {"output_field": BigIntegerField()}
    return queryset.annotate(
        usage_members=Coalesce(Subquery(members), 0, **zero_if_none),
        usage_switches=Coalesce(_bucket_total("switches"), 0, **zero_if_none),
        usage_requests=Coalesce(_bucket_total("requests"), 0, **zero_if_none),
        usage_denied_requests=Coalesce(_bucket_total("denied_requests"), 0, **zero_if_none),
        usage_last_activity=_bucket_total("last_activity", Max),
    )


def pending_by_tenant(pending: dict[tuple[str, int], Pending]) -> dict[str, Pending]:
    """Sum pending counts over hours, per tenant."""
    totals: defaultdict[str, Pending] = defaultdict(Pending)
    for (tenant_id, _hour), counts in pending.items():
        totals[tenant_id].add(counts)
    return dict(totals)


def _latest(stored: datetime | None, pending: float) -> datetime | None:
    if not pending:
        return stored
    moment = datetime.fromtimestamp(pending, tz=UTC)
    return moment if stored is None or moment > stored else stored


def usage_of(tenant: Any, pending: Pending | None) -> TenantUsage:
    """Combine one ``annotate_usage`` row with its pending counts."""
    extra = pending or Pending()
    return TenantUsage(
        tenant_id=tenant.tenant_id,
        name=tenant.name,
        active=tenant.active,
        members=tenant.usage_members,
        switches=tenant.usage_switches + extra.switches,
        requests=tenant.usage_requests + extra.requests,
        denied_requests=tenant.usage_denied_requests + extra.denied_requests,
        last_activity=_latest(tenant.usage_last_activity, extra.last_activity),
    )


def tenant_usage(queryset: QuerySet[Any] | None = None) -> list[TenantUsage]:
    """Return the usage of every tenant (or of *queryset*'s), in the queryset's order."""
    from ..models import Tenant

    rows = annotate_usage(Tenant.objects.all() if queryset is None else queryset)
    tenants, pending = read_consistently(lambda: list(rows.all()))
    extra = pending_by_tenant(pending)
    return [usage_of(tenant, extra.get(tenant.tenant_id)) for tenant in tenants]


def _current_hour(now: datetime | None) -> datetime:
    now = now or timezone.now()
    return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hourly_usage(hours: int = 24, *, now: datetime | None = None) -> list[HourUsage]:
    """Return one :class:`HourUsage` per hour of the last *hours* hours, oldest first.

    The current hour is the last one; hours without activity are zeros.
    """
    from ..models import TenantStatsBucket

    if hours < 1:
        raise ValueError("hours must be at least 1.")
    end = _current_hour(now)
    start = end - timedelta(hours=hours - 1)
    rows = (
        TenantStatsBucket.objects.filter(hour__gte=start, hour__lte=end)
        .order_by()
        .values("hour")
        .annotate(s=Sum("switches"), r=Sum("requests"), d=Sum("denied_requests"))
    )
    stored, pending = read_consistently(lambda: list(rows.all()))
    sums: defaultdict[datetime, Pending] = defaultdict(Pending)
    for row in stored:
        sums[row["hour"].astimezone(UTC)].add(Pending(row["s"], row["r"], row["d"]))
    for (_tenant_id, hour), counts in pending.items():
        sums[datetime.fromtimestamp(hour, tz=UTC)].add(counts)
    series = (start + timedelta(hours=i) for i in range(hours))
    return [
        HourUsage(hour, total.switches, total.requests, total.denied_requests)
        for hour, total in ((hour, sums.get(hour, Pending())) for hour in series)
    ]


def usage_summary(usage: Iterable[TenantUsage]) -> dict[str, int]:
    """Totals over *usage*: tenants, active tenants, switches, requests, denied requests."""
    rows = list(usage)
    return {
        "total_tenants": len(rows),
        "active_tenants": sum(1 for row in rows if row.active),
        "total_switches": sum(row.switches for row in rows),
        "total_requests": sum(row.requests for row in rows),
        "total_denied_requests": sum(row.denied_requests for row in rows),
    }


def usage_totals() -> dict[str, int]:
    """Switches, requests and denied requests of every tenant, every process, every hour.

    The statistics page's totals, from one aggregate query plus what is not in
    the database yet (this process's counts, and the shared cache's).
    """
    from ..models import Tenant, TenantStatsBucket

    def read() -> dict[str, Any]:
        return TenantStatsBucket.objects.order_by().aggregate(
            switches=Sum("switches"),
            requests=Sum("requests"),
            denied_requests=Sum("denied_requests"),
        )

    stored, pending = read_consistently(read)
    extra = pending_by_tenant(pending)
    known = set(Tenant.objects.filter(tenant_id__in=extra).values_list("tenant_id", flat=True))
    totals = {name: int(value or 0) for name, value in stored.items()}
    for tenant_id, counts in extra.items():
        if tenant_id in known:  # a deleted tenant's counts are never written
            for name in totals:
                totals[name] += getattr(counts, name)
    return totals


def get_stats() -> dict[str, Any]:
    """Return the registry's figures and ``usage``: :func:`usage_totals`.

    ``total_tenants``, ``active_tenants``, ``total_switches`` and
    ``active_switches`` (this process), ``current_tenant``, as
    :meth:`tenancy.registry.TenantContext.get_stats` gives them; ``usage`` holds
    ``switches``, ``requests`` and ``denied_requests`` summed over every process,
    the same totals as the admin's statistics page, whether the counts were
    kept in a shared cache or in each process.
    """
    from ..registry import tenant_context

    return {**tenant_context.get_stats(), "usage": usage_totals()}
