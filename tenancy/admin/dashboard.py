"""The statistics page of the admin: totals, usage per tenant, a 24-hour chart drawn server-side.

The chart is plain SVG built here and in the template: no JavaScript, no CDN,
so the page works offline and in any browser.
"""

from __future__ import annotations

import math
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..stats.counters import counters
from ..stats.report import HourUsage, hourly_usage, tenant_usage, usage_summary

__all__ = ["SERIES", "chart_layout", "statistics_view"]

#: The chart's series: attribute of :class:`HourUsage`, label, colour.
SERIES = (
    ("switches", _("Switches"), "#205067"),
    ("requests", _("Requests"), "#70bf2b"),
    ("denied_requests", _("Denied requests"), "#ba2121"),
)
CHART_HOURS = 24


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
    """Return the shapes of a grouped bar chart of *hours*, in SVG user units."""
    left, right, top, bottom = 52, 8, 12, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((getattr(h, key) for h in hours for key, _l, _c in SERIES), default=0)
    y_max = _nice_ceiling(peak)
    slot = plot_w / max(len(hours), 1)
    bar_w = slot * 0.8 / len(SERIES)
    bars, labels = [], []
    for i, hour in enumerate(hours):
        local = timezone.localtime(hour.hour)
        for j, (key, label, colour) in enumerate(SERIES):
            value = getattr(hour, key)
            bar_h = value / y_max * plot_h
            bars.append(
                {
                    "x": round(left + i * slot + slot * 0.1 + j * bar_w, 1),
                    "y": round(top + plot_h - bar_h, 1),
                    "width": round(bar_w, 1),
                    "height": round(bar_h, 1),
                    "colour": colour,
                    "title": f"{local:%H:%M} {label}: {value}",
                }
            )
        if i % 3 == 0 or i == len(hours) - 1:
            labels.append({"x": round(left + (i + 0.5) * slot, 1), "text": f"{local:%H:%M}"})
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
        "legend": [{"label": label, "colour": colour} for _k, label, colour in SERIES],
    }


def statistics_view(model_admin: Any, request: HttpRequest) -> TemplateResponse:
    """Render the statistics page; needs the view permission on tenants."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    usage = tenant_usage()
    hours = hourly_usage(CHART_HOURS)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Tenant statistics"),
        "subtitle": None,
        "opts": model_admin.opts,
        "totals": usage_summary(usage),
        "open_switches": counters.active_switches,
        "process_switches": counters.total_switches,
        "tenants": usage,
        "hours": list(reversed(hours)),
        "chart": chart_layout(hours),
        "chart_hours": CHART_HOURS,
        "last_24h": {key: sum(getattr(h, key) for h in hours) for key, _l, _c in SERIES},
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/tenancy/statistics.html", context)
