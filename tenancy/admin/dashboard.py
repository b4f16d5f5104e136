"""The statistics page of the admin: totals and a chart over a window, a paginated ranking.

Everything shown is read from the roll-ups (:mod:`tenancy.stats.rollup`): the
totals and the chart from at most one row per hour of the window, the ranking
from one page of per-tenant 30-day windows. The chart is plain SVG built here
and in the template: no JavaScript, no CDN, so the page works offline.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from ..stats.counters import counters
from ..stats.flush import read_consistently
from ..stats.report import (
    ORDERS,
    HourUsage,
    hourly_usage,
    page_usage,
    ranked_tenants,
    window_totals,
    with_usage,
)

__all__ = [
    "PER_PAGE",
    "SERIES",
    "WINDOWS",
    "chart_layout",
    "format_moment",
    "statistics_view",
]

#: The chart's series: attribute of :class:`HourUsage`, label, CSS class (its colour
#: is a CSS variable of the admin's light and dark themes, see includes/styles.html).
SERIES = (
    ("switches", _("Switches"), "tenancy-series-switches"),
    ("requests", _("Requests"), "tenancy-series-requests"),
    ("denied_requests", _("Denied requests"), "tenancy-series-denied"),
)
#: Windows of the totals and the chart: query value, hours, label.
WINDOWS = {
    "24h": (24, _("Last 24 hours")),
    "7d": (7 * 24, _("Last 7 days")),
    "30d": (30 * 24, _("Last 30 days")),
}
#: Tenants per page of the ranking.
PER_PAGE = 50
#: The one format of moments in the admin pages of tenancy (local time).
MOMENT_FORMAT = "%Y-%m-%d %H:%M"


def format_moment(moment: datetime | None) -> str:
    """Render *moment* as a ``<time>``, in the one format of these pages; "—" for none."""
    if moment is None:
        return "—"
    local = timezone.localtime(moment)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        moment.isoformat(),
        local.isoformat(timespec="seconds"),
        local.strftime(MOMENT_FORMAT),
    )


def _nice_ceiling(value: int) -> int:
    """Round *value* up to 1, 2 or 5 times a power of ten (at least 4, for 4 even steps)."""
    if value <= 4:
        return 4
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def chart_layout(hours: list[HourUsage], *, width: int = 760, height: int = 260) -> dict[str, Any]:
    """Return the shapes of a grouped bar chart of *hours*, in SVG user units.

    Windows longer than a day are drawn one bar group per day (sums of its hours).
    """
    if len(hours) > 48:
        hours = _by_day(hours)
        label_format = "%m-%d"
    else:
        label_format = "%H:%M"
    step = max(1, math.ceil(len(hours) / 8))
    left, right, top, bottom = 52, 8, 12, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((getattr(h, key) for h in hours for key, _l, _c in SERIES), default=0)
    y_max = _nice_ceiling(peak)
    slot = plot_w / max(len(hours), 1)
    bar_w = slot * 0.8 / len(SERIES)
    bars, labels = [], []
    for i, hour in enumerate(hours):
        local = timezone.localtime(hour.hour)
        for j, (key, label, css) in enumerate(SERIES):
            value = getattr(hour, key)
            bar_h = value / y_max * plot_h
            bars.append(
                {
                    "x": round(left + i * slot + slot * 0.1 + j * bar_w, 1),
                    "y": round(top + plot_h - bar_h, 1),
                    "width": round(bar_w, 1),
                    "height": round(bar_h, 1),
                    "css": css,
                    "title": f"{local.strftime(MOMENT_FORMAT)} {label}: {value}",
                }
            )
        if i % step == 0:
            labels.append(
                {"x": round(left + (i + 0.5) * slot, 1), "text": local.strftime(label_format)}
            )
    ticks = [
        {"y": round(top + plot_h - k / 4 * plot_h, 1), "value": y_max * k // 4} for k in range(5)
    ]
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "baseline": top + plot_h,
        "label_y": height - 10,
        "bars": bars,
        "x_labels": labels,
        "ticks": ticks,
        "legend": [{"label": label, "css": css} for _k, label, css in SERIES],
    }


def _by_day(hours: list[HourUsage]) -> list[HourUsage]:
    days: dict[Any, list[int]] = {}
    firsts: dict[Any, datetime] = {}
    for hour in hours:
        key = timezone.localtime(hour.hour).date()
        firsts.setdefault(key, hour.hour)
        sums = days.setdefault(key, [0, 0, 0])
        sums[0] += hour.switches
        sums[1] += hour.requests
        sums[2] += hour.denied_requests
    return [HourUsage(firsts[k], *v) for k, v in days.items()]


class BadQuery(ValueError):
    """A query parameter of the statistics page that it cannot use."""


def _parse(request: HttpRequest) -> tuple[str, str, int]:
    allowed = {"window", "o", "p"}
    unknown = sorted(set(request.GET) - allowed)
    if unknown:
        raise BadQuery(f"Unknown parameter; use {', '.join(sorted(allowed))}.")
    window = request.GET.get("window", "24h")
    if window not in WINDOWS:
        raise BadQuery(f"window must be one of {', '.join(WINDOWS)}.")
    order = request.GET.get("o", "switches")
    if order not in ORDERS:
        raise BadQuery(f"o must be one of {', '.join(ORDERS)}.")
    raw_page = request.GET.get("p", "1")
    if not (raw_page.isascii() and raw_page.isdigit()) or len(raw_page) > 9 or int(raw_page) < 1:
        raise BadQuery("p must be a page number, 1 or more.")
    return window, order, int(raw_page)


def _bad_query(request: HttpRequest, model_admin: Any, message: str) -> HttpResponse:
    body = {"detail": message, "code": "invalid_statistics_query"}
    if request.accepts("application/json") and not request.accepts("text/html"):
        return JsonResponse(body, status=400)
    context = {**model_admin.admin_site.each_context(request), "opts": model_admin.opts, **body}
    context["title"] = _("Tenant statistics")
    return TemplateResponse(request, "admin/tenancy/statistics_error.html", context, status=400)


def statistics_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """Render the statistics page; needs the view permission on tenants.

    Query: ``window`` (24h, 7d, 30d) for the totals and the chart, ``o``
    (switches, requests, denied_requests, last_activity) and ``p`` (page) for the
    ranking. Anything else is a 400 with the code ``invalid_statistics_query``.
    """
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    request.current_app = model_admin.admin_site.name
    try:
        window, order, page_number = _parse(request)
    except BadQuery as exc:
        return _bad_query(request, model_admin, str(exc))
    from ..models import Tenant

    hours_count, window_label = WINDOWS[window]
    hours = hourly_usage(hours_count)
    totals = window_totals(hours)
    paginator = Paginator(with_usage(Tenant.objects.all()), PER_PAGE)
    paginator.count = totals["total_tenants"]  # known already: no second COUNT(*)
    if page_number > paginator.num_pages:
        return _bad_query(request, model_admin, f"p must be at most {paginator.num_pages}.")
    offset = (page_number - 1) * PER_PAGE
    ranked = ranked_tenants(order)
    rows, pending = read_consistently(lambda: list(ranked[offset : offset + PER_PAGE]))
    usage = page_usage(rows, pending)
    page = paginator.get_page(page_number)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Tenant statistics"),
        "subtitle": None,
        "opts": model_admin.opts,
        "totals": totals,
        "open_switches": counters.active_switches,
        "process_switches": counters.total_switches,
        "tenants": usage,
        "rows": [
            {
                "pk": tenant.pk,
                "usage": row,
                "last_activity": format_moment(row.last_activity),
                "last_denied": format_moment(row.last_denied),
            }
            for tenant, row in zip(rows, usage, strict=True)
        ],
        "page": page,
        "first_rank": offset + 1,
        "order": order,
        "orders": [(key, label) for key, label in _ORDER_LABELS.items()],
        "window": window,
        "windows": [(key, label) for key, (_h, label) in WINDOWS.items()],
        "window_label": window_label,
        "hours": list(reversed(hours)),
        "hour_rows": [
            {"hour": format_moment(h.hour), **{k: getattr(h, k) for k, _l, _c in SERIES}}
            for h in reversed(hours)
        ],
        "chart": chart_layout(hours),
        "window_sums": {key: sum(getattr(h, key) for h in hours) for key, _l, _c in SERIES},
    }
    return TemplateResponse(request, "admin/tenancy/statistics.html", context)


_ORDER_LABELS = {
    "switches": _("Switches"),
    "requests": _("Requests"),
    "denied_requests": _("Denied requests"),
    "last_activity": _("Last activity"),
}
