"""Usage figures read back for the admin and the ``tenancy stats`` command.

Every reader costs a page, not the population (see :mod:`tenancy.stats.rollup`):

- per tenant, the sums over the last 30 days and the last activity come from
  its :class:`~tenancy.models.TenantStatsWindow` row, joined to the rows shown;
- totals and the hourly chart come from :class:`~tenancy.models.TenantStatsHourTotal`
  (at most one row per hour of the window shown);
- one tenant's last 24 hours come from its hourly buckets, its last 30 days
  from its day rows.

Each figure adds this process's pending counts, read under the flush lock so
that no count is seen twice or missed (:func:`tenancy.stats.flush.read_consistently`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, F, Q, QuerySet, Sum
from django.utils import timezone

from .counters import Pending
from .flush import read_consistently
from .rollup import WINDOW_DAYS, window_start

__all__ = [
    "ORDERS",
    "HourUsage",
    "TenantDetail",
    "TenantUsage",
    "get_stats",
    "hourly_usage",
    "iter_usage",
    "page_usage",
    "pending_by_tenant",
    "ranked_tenants",
    "tenant_detail",
    "tenant_usage",
    "usage_summary",
    "usage_totals",
    "window_totals",
    "with_usage",
]

#: Orders of :func:`iter_usage`, each "top first": the column of the window it sorts on.
ORDERS = ("switches", "requests", "denied_requests", "last_activity")


@dataclass(frozen=True)
class TenantUsage:
    """Usage of one tenant over the last 30 days, summed over every process."""

    tenant_id: str
    name: str
    active: bool
    members: int
    switches: int
    requests: int
    denied_requests: int
    #: The last switch or served request (any time, not only within the 30 days).
    last_activity: datetime | None
    #: The last denied request, apart: a refused request is not activity.
    last_denied: datetime | None = None


@dataclass(frozen=True)
class HourUsage:
    """Usage of every tenant together during the hour starting at ``hour``."""

    hour: datetime
    switches: int
    requests: int
    denied_requests: int


@dataclass(frozen=True)
class TenantDetail:
    """One tenant's usage for its change page: last 24 hours and last 30 days."""

    last_24h: Pending
    last_30d: Pending
    last_activity: datetime | None
    last_denied: datetime | None
    members: list[Any] = field(default_factory=list)


def _epoch_moment(stored: datetime | None, pending: float) -> datetime | None:
    if not pending:
        return stored
    moment = datetime.fromtimestamp(pending, tz=UTC)
    return moment if stored is None or moment > stored else stored


def _current_hour(now: datetime | None) -> datetime:
    now = now or timezone.now()
    return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def pending_by_tenant(
    pending: dict[tuple[str, int], Pending], *, since: datetime | None = None
) -> dict[str, Pending]:
    """Sum pending counts over hours, per tenant; hours before *since* add only their moments."""
    totals: defaultdict[str, Pending] = defaultdict(Pending)
    floor = since.timestamp() if since is not None else None
    for (tenant_id, hour), counts in pending.items():
        if floor is not None and hour < floor:
            counts = Pending(last_activity=counts.last_activity, last_denied=counts.last_denied)
        totals[tenant_id].add(counts)
    return dict(totals)


def _window_floor() -> datetime:
    return datetime.combine(window_start(), datetime.min.time(), tzinfo=UTC)


def with_usage(queryset: QuerySet[Any]) -> QuerySet[Any]:
    """Join each tenant's 30-day window (one query for a page of any size, no aggregation)."""
    return queryset.select_related("stats_window")


def _members(tenant_ids: list[str]) -> dict[str, int]:
    from ..models import TenantMembership

    rows = (
        TenantMembership.objects.filter(tenant_id__in=tenant_ids)
        .order_by()
        .values("tenant_id")
        .annotate(n=Count("pk"))
    )
    return {str(row["tenant_id"]): int(row["n"]) for row in rows}


def _usage_of(tenant: Any, members: int, extra: Pending | None) -> TenantUsage:
    window = tenant.stats_window if _has_window(tenant) else None
    extra = extra or Pending()
    return TenantUsage(
        tenant_id=tenant.tenant_id,
        name=tenant.name,
        active=tenant.active,
        members=members,
        switches=(window.switches if window else 0) + extra.switches,
        requests=(window.requests if window else 0) + extra.requests,
        denied_requests=(window.denied_requests if window else 0) + extra.denied_requests,
        last_activity=_epoch_moment(window.last_activity if window else None, extra.last_activity),
        last_denied=_epoch_moment(window.last_denied if window else None, extra.last_denied),
    )


def _has_window(tenant: Any) -> bool:
    from django.core.exceptions import ObjectDoesNotExist

    try:
        tenant.stats_window  # noqa: B018 - loaded by select_related: no query
    except ObjectDoesNotExist:
        return False
    return True


def page_usage(
    tenants: Iterable[Any], pending: dict[tuple[str, int], Pending]
) -> list[TenantUsage]:
    """Usage of *tenants* (read with :func:`with_usage`) plus *pending*; one query for members."""
    rows = list(tenants)
    members = _members([t.tenant_id for t in rows]) if rows else {}
    extra = pending_by_tenant(pending, since=_window_floor())
    return [_usage_of(t, members.get(t.tenant_id, 0), extra.get(t.tenant_id)) for t in rows]


def ranked_tenants(
    order: str = "switches",
    active: bool | None = None,
    since: datetime | None = None,
    queryset: QuerySet[Any] | None = None,
) -> QuerySet[Any]:
    """Tenants with their windows, top first by *order* (indexed), filtered by state, activity."""
    from ..models import Tenant

    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}.")
    rows = with_usage(Tenant.objects.all() if queryset is None else queryset)
    if active is not None:
        rows = rows.filter(active=active)
    if since is not None:
        rows = rows.filter(stats_window__last_activity__gte=since)
    return rows.order_by(F(f"stats_window__{order}").desc(nulls_last=True), "tenant_id")


def iter_usage(
    *,
    order: str = "switches",
    active: bool | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    offset: int = 0,
    chunk_size: int = 1000,
) -> Iterator[TenantUsage]:
    """Yield tenants' usage over the last 30 days, top first by *order*, in constant memory.

    *active* keeps active (``True``) or inactive (``False``) tenants only;
    *since* keeps tenants whose last activity is at or after it. Rows are read
    *chunk_size* at a time, each chunk with its own consistent pending counts.
    """
    rows = ranked_tenants(order, active, since)
    stop = None if limit is None else offset + limit
    start = offset
    while stop is None or start < stop:
        end = start + chunk_size if stop is None else min(start + chunk_size, stop)
        page, pending = read_consistently(_slice(rows, start, end))
        yield from page_usage(page, pending)
        if len(page) < end - start:
            return
        start = end


def _slice(rows: QuerySet[Any], start: int, end: int) -> Callable[[], list[Any]]:
    return lambda: list(rows[start:end])


def tenant_usage(queryset: QuerySet[Any] | None = None) -> list[TenantUsage]:
    """Return the usage of every tenant (or of *queryset*'s), in the queryset's order."""
    from ..models import Tenant

    rows = with_usage(Tenant.objects.all() if queryset is None else queryset)
    tenants, pending = read_consistently(lambda: list(rows.all()))
    return page_usage(tenants, pending)


def hourly_usage(hours: int = 24, *, now: datetime | None = None) -> list[HourUsage]:
    """Return one :class:`HourUsage` per hour of the last *hours* hours, oldest first.

    The current hour is the last one; hours without activity are zeros. Reads
    at most *hours* rows of :class:`~tenancy.models.TenantStatsHourTotal`.
    """
    from ..models import TenantStatsHourTotal

    if hours < 1:
        raise ValueError("hours must be at least 1.")
    end = _current_hour(now)
    start = end - timedelta(hours=hours - 1)
    rows = TenantStatsHourTotal.objects.filter(hour__gte=start, hour__lte=end).values_list(
        "hour", "switches", "requests", "denied_requests"
    )
    stored, pending = read_consistently(lambda: list(rows.all()))
    sums: defaultdict[datetime, Pending] = defaultdict(Pending)
    for hour, switches, requests, denied in stored:
        sums[hour.astimezone(UTC)].add(Pending(switches, requests, denied))
    for (_tenant_id, epoch), counts in pending.items():
        sums[datetime.fromtimestamp(epoch, tz=UTC)].add(counts)
    series = (start + timedelta(hours=i) for i in range(hours))
    return [
        HourUsage(hour, total.switches, total.requests, total.denied_requests)
        for hour, total in ((hour, sums.get(hour, Pending())) for hour in series)
    ]


def _tenant_counts() -> dict[str, int]:
    from ..models import Tenant

    counts = Tenant.objects.aggregate(total=Count("pk"), active=Count("pk", filter=Q(active=True)))
    return {"total_tenants": counts["total"], "active_tenants": counts["active"]}


def window_totals(hours: list[HourUsage]) -> dict[str, int]:
    """Tenants, active tenants, and the sums of *hours* (from :func:`hourly_usage`)."""
    return {
        **_tenant_counts(),
        "total_switches": sum(h.switches for h in hours),
        "total_requests": sum(h.requests for h in hours),
        "total_denied_requests": sum(h.denied_requests for h in hours),
    }


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


def tenant_detail(tenant_id: str, *, now: datetime | None = None) -> TenantDetail:
    """One tenant's last 24 hours (its buckets) and last 30 days (its day rows), with pending."""
    from ..models import TenantMembership, TenantStatsBucket, TenantStatsDay, TenantStatsWindow

    end = _current_hour(now)
    day_floor = end.date() - timedelta(days=WINDOW_DAYS - 1)
    hour_floor = end - timedelta(hours=23)
    sums = {"s": Sum("switches"), "r": Sum("requests"), "d": Sum("denied_requests")}

    def read() -> tuple[dict[str, Any], dict[str, Any], Any, list[Any]]:
        hours = TenantStatsBucket.objects.filter(tenant_id=tenant_id, hour__gte=hour_floor)
        days = TenantStatsDay.objects.filter(tenant_id=tenant_id, day__gte=day_floor)
        window = TenantStatsWindow.objects.filter(tenant_id=tenant_id).first()
        members = list(
            TenantMembership.objects.filter(tenant_id=tenant_id)
            .select_related("user")
            .order_by("role", "user__username")
        )
        return hours.aggregate(**sums), days.aggregate(**sums), window, members

    (hours, days, window, members), pending = read_consistently(read)
    last_24h = Pending(hours["s"] or 0, hours["r"] or 0, hours["d"] or 0)
    last_30d = Pending(days["s"] or 0, days["r"] or 0, days["d"] or 0)
    moments = Pending()
    for (pending_tenant, hour), counts in pending.items():
        if pending_tenant != tenant_id:
            continue
        moments.add(Pending(last_activity=counts.last_activity, last_denied=counts.last_denied))
        start = datetime.fromtimestamp(hour, tz=UTC)
        if start >= hour_floor:
            last_24h.add(counts)
        if start.date() >= day_floor:
            last_30d.add(counts)
    return TenantDetail(
        last_24h=last_24h,
        last_30d=last_30d,
        last_activity=_epoch_moment(window and window.last_activity, moments.last_activity),
        last_denied=_epoch_moment(window and window.last_denied, moments.last_denied),
        members=members,
    )


def usage_totals() -> dict[str, int]:
    """Switches, requests and denied requests of every tenant, every process, every hour.

    The statistics page's all-time totals, from the hourly roll-up (one row per
    hour) plus what is not in the database yet (this process's counts, and the
    shared cache's).
    """
    from ..models import Tenant, TenantStatsHourTotal

    def read() -> dict[str, Any]:
        return TenantStatsHourTotal.objects.order_by().aggregate(
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
    ``switches``, ``requests`` and ``denied_requests`` summed over every process
    and every hour, whether the counts were kept in a shared cache or in each
    process.
    """
    from ..registry import tenant_context

    return {**tenant_context.get_stats(), "usage": usage_totals()}
