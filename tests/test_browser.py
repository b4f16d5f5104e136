"""Headless Chromium against the demo served by a real server: what an operator sees.

Logs into the demo admin, goes from the app index to the tenant list and on
to the statistics page, checks the numbers shown against ``manage.py tenancy
stats --json``, checks the layout at 1280 px with the sidebar open (no
horizontal overflow, legend colours equal to bar colours, in light and dark
mode), and saves a screenshot of every admin page in both modes under
docs/images/ (``admin-<page>-<light|dark>.png``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "images"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PASSWORD = "browser-test-password"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


def require_browser() -> None:
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"Chromium ({CHROMIUM})")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package")
    if missing:
        reason = f"{' and '.join(missing)} not installed: `make browser` installs Chromium"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must run the browser test)")
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the demo server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the demo server did not answer {url} in {timeout} s")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo project, migrated and seeded in a fresh SQLite file, served by runserver."""
    require_browser()
    workdir = tmp_path_factory.mktemp("demo")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": f"sqlite:///{workdir / 'demo.sqlite3'}",
        "CACHE_URL": "locmemcache://",
        "DEBUG": "True",  # runserver serves the admin's static files
        "ALLOWED_HOSTS": "127.0.0.1",
        "DEMO_ADMIN_PASSWORD": PASSWORD,
    }

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    manage("migrate", "--noinput", "-v0")
    manage("seed_demo")
    port = free_port()
    log = open(workdir / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base + "/admin/login/", server)
        yield {"url": base, "stats": lambda: json.loads(manage("tenancy", "stats", "--json"))}
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def open_page(tmp_path: Path, scheme: str = "light", width: int = 1440):
    """A context manager: a fresh Chromium profile in *scheme*, and its page."""
    from contextlib import contextmanager

    from playwright.sync_api import sync_playwright

    @contextmanager
    def session():
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path / f"profile-{scheme}-{width}"),  # a fresh profile every time
                executable_path=CHROMIUM,
                headless=True,
                args=FLAGS,
                viewport={"width": width, "height": 900},
                color_scheme=scheme,
            )
            context.set_default_timeout(15_000)
            try:
                yield context.new_page()
            finally:
                context.close()

    return session()


@pytest.fixture
def page(demo, tmp_path):
    with open_page(tmp_path) as page:
        yield page


def log_in(page, base: str, next_url: str = "/admin/") -> None:
    page.goto(f"{base}/admin/login/?next={next_url}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"**{next_url}")


def test_operator_sees_tenants_and_statistics(demo, page):
    OUTPUT.mkdir(parents=True, exist_ok=True)
    expected = demo["stats"]()
    assert expected["total_switches"] > 0  # the demo is seeded with activity

    log_in(page, demo["url"], "/admin/tenancy/")
    assert page.locator("a[href$='/admin/tenancy/tenantstatistics/']").first.is_visible()

    page.click("#content-main a[href$='/admin/tenancy/tenant/']:not(.addlink)")
    page.wait_for_url("**/admin/tenancy/tenant/")
    for tenant in expected["tenants"]:
        row = page.locator("#result_list tbody tr", has_text=tenant["name"])
        assert row.locator(".field-switches").inner_text() == str(tenant["switches"])
        assert row.locator(".field-requests").inner_text() == str(tenant["requests"])
        assert row.locator(".field-denied_requests").inner_text() == str(tenant["denied_requests"])
        assert row.locator(".field-members").inner_text() == str(tenant["members"])
        state = "Active" if tenant["active"] else "Inactive"
        assert row.locator(".field-state").inner_text().strip() == state
    page.click(".object-tools a:has-text('Statistics')")
    page.wait_for_url("**/admin/tenancy/tenant/statistics/")
    page.goto(demo["url"] + "/admin/tenancy/tenant/statistics/?window=30d")  # as the command
    for key in (
        "total_tenants",
        "active_tenants",
        "total_switches",
        "total_requests",
        "total_denied_requests",
    ):
        assert page.locator(f"[data-stat={key}]").inner_text() == str(expected[key]), key
    for tenant in expected["tenants"]:
        row = page.locator(f"tr[data-tenant={tenant['tenant_id']}]")
        assert row.locator("[data-col=switches]").inner_text() == str(tenant["switches"])
        assert row.locator("[data-col=denied_requests]").inner_text() == str(
            tenant["denied_requests"]
        )
    page.goto(demo["url"] + "/admin/tenancy/tenant/statistics/")  # the last 24 hours, hourly
    hours_with_activity = sum(1 for h in expected["hourly"] if h["switches"])
    assert page.locator("svg.tenancy-chart-svg rect").count() >= hours_with_activity
    chart = page.locator("svg.tenancy-chart-svg").bounding_box()
    assert chart is not None and chart["width"] > 600 and chart["height"] > 150


#: Every admin page of the demo: screenshot name and path.
PAGES = [
    ("index", "/admin/"),
    ("tenancy", "/admin/tenancy/"),
    ("tenant-list", "/admin/tenancy/tenant/"),
    ("tenant-change", None),  # acme's change page, found from the list
    ("statistics", "/admin/tenancy/tenant/statistics/"),
    ("runtime-contexts", "/admin/tenancy/userruntimecontext/"),
    ("notes", "/admin/demo/note/"),
]

#: Reads the changelist's overflow and each legend swatch against its series' bars.
LAYOUT = """() => {
  const results = document.querySelector('#changelist .results');
  const doc = document.documentElement;
  return {
    sidebar: !!document.querySelector('#nav-sidebar') &&
      getComputedStyle(document.querySelector('#nav-sidebar')).visibility !== 'hidden' &&
      document.querySelector('#nav-sidebar').getBoundingClientRect().width > 0,
    results: results ? [results.scrollWidth, results.clientWidth] : null,
    page: [doc.scrollWidth, doc.clientWidth],
  };
}"""
COLOURS = """() => Array.from(document.querySelectorAll('.tenancy-swatch')).map(swatch => {
  const series = Array.from(swatch.classList).find(c => c.startsWith('tenancy-series-'));
  const bar = document.querySelector('rect.tenancy-bar.' + series);
  return {
    series,
    swatch: getComputedStyle(swatch).backgroundColor,
    bar: bar ? getComputedStyle(bar).fill : null,
    background: getComputedStyle(document.body).backgroundColor,
  };
})"""


def _luminance(rgb: str) -> float:
    parts = [int(p) / 255 for p in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in parts]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_admin_page_at_1280_px_in_light_and_dark(demo, tmp_path, scheme):
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with open_page(tmp_path, scheme, width=1280) as page:
        log_in(page, demo["url"])
        for name, path in PAGES:
            if path is None:
                page.goto(demo["url"] + "/admin/tenancy/tenant/")
                page.click("#result_list a:has-text('acme')")
                page.wait_for_selector("#tenancy-tenant-usage")
            else:
                response = page.goto(demo["url"] + path)
                assert response is not None and response.status == 200, path
            layout = page.evaluate(LAYOUT)
            assert layout["page"][0] <= layout["page"][1], (name, scheme, layout)
            if layout["results"] is not None:
                assert layout["sidebar"], "the navigation sidebar is open"
                scroll, visible = layout["results"]
                assert scroll <= visible, f"{name} ({scheme}): the changelist overflows {layout}"
            if name == "statistics":
                colours = page.evaluate(COLOURS)
                assert len(colours) == 3
                for item in colours:
                    assert item["bar"] is not None, item
                    assert item["swatch"] == item["bar"], item
                    # Bars stand out from the page, in either mode (WCAG's 3:1 for graphics).
                    assert contrast(item["bar"], item["background"]) >= 3, item
            shot = OUTPUT / f"admin-{name}-{scheme}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000, shot
