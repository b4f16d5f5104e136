"""The statistics page: totals, per-tenant table, a 24-hour chart drawn server-side."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

import tenancy
from tenancy.admin.dashboard import _nice_ceiling, chart_layout
from tenancy.models import Tenant
from tenancy.stats.counters import Pending, counters
from tenancy.stats.flush import write_pending
from tenancy.stats.report import HourUsage

URL = "/admin/tenancy/tenant/statistics/"
INDEX_ENTRY = "/admin/tenancy/tenantstatistics/"


@pytest.fixture(autouse=True)
def _fresh_counters():
    counters.take_pending()
    yield
    counters.take_pending()


@pytest.fixture
def activity(hour, tenants):
    write_pending(
        {
            ("acme", hour - 2 * 3600): Pending(10, 8, 2, hour - 2 * 3600 + 60.0),
            ("acme", hour): Pending(4, 4, 0, hour + 1.0),
            ("globex", hour - 3600): Pending(3, 6, 3, hour - 3600 + 5.0),
            ("globex", hour - 30 * 3600): Pending(50, 0, 0, hour - 30 * 3600 + 5.0),
        },
        using="default",
    )
    tenancy.deactivate_tenant("globex")


def stat(html: str, name: str) -> int:
    match = re.search(rf'data-stat="{name}">(\d+)<', html)
    assert match, name
    return int(match.group(1))


def cell(html: str, tenant_id: str, column: str) -> str:
    row = re.search(rf'<tr data-tenant="{tenant_id}">(.*?)</tr>', html, re.S)
    assert row, tenant_id
    match = re.search(rf'data-col="{column}">([^<]*)<', row.group(1))
    assert match, column
    return match.group(1)


@pytest.mark.django_db
def test_statistics_page_shows_totals_table_and_chart(admin_client, activity):
    with tenancy.switch("acme"):  # one switch still open while the page renders
        counters.request_done("acme", denied=True)
        response = admin_client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert stat(html, "total_tenants") == 2
    assert stat(html, "active_tenants") == 1
    # Totals over the window shown (24 hours): the 30-hour-old bucket is left out.
    assert stat(html, "total_switches") == 10 + 4 + 3 + 1
    assert stat(html, "total_requests") == 8 + 4 + 6 + 1
    assert stat(html, "total_denied_requests") == 2 + 3 + 1
    assert stat(html, "open_switches") == 1
    assert cell(html, "acme", "switches") == "15"
    assert cell(html, "acme", "denied_requests") == "3"
    assert cell(html, "globex", "switches") == "53"
    assert cell(html, "globex", "requests") == "6"
    assert "tenancy-inactive" in re.search(r'data-tenant="globex">.*?</tr>', html, re.S).group(0)

    # The chart: 24 hours, the 30-hour-old bucket left out, nothing from a CDN.
    hours = response.context["hours"]
    assert len(hours) == 24
    assert sum(h.switches for h in hours) == 10 + 4 + 3 + 1
    chart = html.split('class="tenancy-chart-svg"')[1].split("</svg>")[0]
    assert chart.count("<rect ") == 9  # three hours with activity, three series each
    assert "<script" not in html.split('id="content-main"')[1]
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html


@pytest.mark.django_db
def test_statistics_page_is_linked_from_the_index_and_each_change_page(admin_client, tenants):
    for page in ("/admin/", "/admin/tenancy/"):
        html = admin_client.get(page).content.decode()
        assert f'href="{INDEX_ENTRY}"' in html, page
    assert stat(admin_client.get(INDEX_ENTRY).content.decode(), "total_tenants") == 2
    acme = Tenant.objects.get(tenant_id="acme")
    html = admin_client.get(f"/admin/tenancy/tenant/{acme.pk}/change/").content.decode()
    assert f'href="{URL}"' in html


@pytest.mark.django_db
def test_statistics_page_queries_do_not_grow_with_tenants(hour, admin_client, activity):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(URL).status_code == 200
        return len(queries)

    few = count()
    for i in range(10):
        tenancy.register_tenant(f"t{i}", f"Tenant {i}")
        write_pending({(f"t{i}", hour): Pending(1, 1, 1, hour + 1.0)}, using="default")
    assert count() == few


@pytest.mark.django_db
def test_statistics_page_needs_the_view_permission(client, tenants):
    user = get_user_model().objects.create_user("viewer", password="x", is_staff=True)
    client.force_login(user)
    assert client.get(URL).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_tenant"))
    response = client.get(URL)
    assert response.status_code == 200
    assert stat(response.content.decode(), "total_tenants") == 2
    assert f'href="{INDEX_ENTRY}"' in client.get("/admin/tenancy/").content.decode()
    assert client.get(INDEX_ENTRY).status_code == 200


@pytest.mark.django_db
def test_statistics_page_with_no_tenants(admin_client):
    response = admin_client.get(URL)
    assert response.status_code == 200
    assert "No tenants yet." in response.content.decode()


def test_nice_ceiling():
    assert [_nice_ceiling(v) for v in (0, 3, 5, 11, 20, 21, 99, 101, 4999)] == [
        4,
        4,
        5,
        20,
        20,
        50,
        100,
        200,
        5000,
    ]


def test_chart_bars_are_proportional_and_inside_the_plot():
    start = datetime(2030, 1, 1, tzinfo=UTC)
    hours = [HourUsage(start.replace(hour=h), h * 10, h * 5, h) for h in range(24)]
    layout = chart_layout(hours, width=760, height=260)
    bars = layout["bars"]
    assert len(bars) == 24 * 3
    tallest = max(bars, key=lambda b: b["height"])
    assert tallest["title"].endswith("Switches: 230")
    y_max = layout["ticks"][-1]["value"]
    assert y_max == 500  # 230 rounded up to a nice scale
    plot_h = layout["baseline"] - 12
    assert tallest["height"] == pytest.approx(230 / 500 * plot_h, abs=0.1)
    for bar in bars:
        assert layout["left"] <= bar["x"] and bar["x"] + bar["width"] <= layout["right"] + 0.1
        assert bar["y"] + bar["height"] == pytest.approx(layout["baseline"], abs=0.1)
    assert [label["text"] for label in layout["x_labels"]][:3] == ["00:00", "03:00", "06:00"]


@pytest.fixture
def ranked(hour, db):
    """25 tenants with 1..25 switches in this hour (tenant r25 the busiest)."""
    for i in range(1, 26):
        tenancy.register_tenant(f"r{i:02d}", f"Ranked {i}")
    write_pending(
        {(f"r{i:02d}", hour): Pending(i, 30 - i, 0, hour + i) for i in range(1, 26)},
        using="default",
    )


def ranking(html: str) -> list[str]:
    return re.findall(r'<tr data-tenant="([^"]+)">', html)


@pytest.mark.django_db
def test_ranking_is_paginated_and_sorted_top_first(admin_client, ranked, monkeypatch):
    monkeypatch.setattr("tenancy.admin.dashboard.PER_PAGE", 10)
    first = admin_client.get(URL).content.decode()
    assert ranking(first) == [f"r{i:02d}" for i in range(25, 15, -1)]
    assert "Page 1 of 3" in first
    third = admin_client.get(URL + "?p=3").content.decode()
    assert ranking(third) == [f"r{i:02d}" for i in range(5, 0, -1)]
    by_requests = admin_client.get(URL + "?o=requests").content.decode()
    assert ranking(by_requests)[:2] == ["r01", "r02"]
    by_activity = admin_client.get(URL + "?o=last_activity&window=7d").content.decode()
    assert ranking(by_activity)[0] == "r25"


@pytest.mark.django_db
def test_pages_and_windows_cost_the_same_queries(admin_client, ranked, monkeypatch):
    monkeypatch.setattr("tenancy.admin.dashboard.PER_PAGE", 10)

    def count(query: str) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(URL + query).status_code == 200
        return len(queries)

    assert count("") == count("?p=3") == count("?window=30d&o=requests&p=2")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    ["?window=1y", "?o=name", "?p=0", "?p=-1", "?p=abc", "?p=99", "?p=" + "9" * 30, "?x=<b>"],
)
def test_bad_query_is_a_400_with_a_stable_code(admin_client, ranked, query):
    response = admin_client.get(URL + query, headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_statistics_query"
    html = admin_client.get(URL + query)
    assert html.status_code == 400
    assert 'data-code="invalid_statistics_query"' in html.content.decode()
    assert "<b>" not in html.content.decode().split('id="content-main"')[1]


@pytest.mark.django_db
def test_legend_and_bars_share_their_css_classes(admin_client, activity):
    html = admin_client.get(URL).content.decode()
    for css in ("tenancy-series-switches", "tenancy-series-requests", "tenancy-series-denied"):
        assert f'class="tenancy-swatch {css}"' in html
        assert f'class="tenancy-bar {css}"' in html
    assert "background:" not in html.split('class="tenancy-legend"')[1].split("</h2>")[0]
