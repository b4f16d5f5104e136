"""The demo project: migrates, seeds idempotently, and shows the demo tenants to the admin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

ADMIN_CHECK = """
from django.test import Client
client = Client()
login = client.get("/admin/login/")
assert login.status_code == 200, login.status_code
assert client.login(username="admin", password="tenancy-demo")
page = client.get("/admin/tenancy/tenant/")
assert page.status_code == 200, page.status_code
body = page.content.decode()
print(" ".join(t for t in ("acme", "globex", "initech") if t in body))
"""


@pytest.fixture
def demo_env(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "CACHE_URL": "locmemcache://",
        "ALLOWED_HOSTS": "testserver,127.0.0.1",
    }
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def manage(env, *args):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout


@pytest.mark.slow
def test_demo_migrates_seeds_and_lists_tenants(demo_env):
    manage(demo_env, "migrate", "--noinput")
    first = manage(demo_env, "seed_demo")
    assert "user=admin password=tenancy-demo" in first
    manage(demo_env, "seed_demo")  # a second run changes nothing and does not fail
    out = manage(demo_env, "shell", "-c", ADMIN_CHECK)
    assert out.strip().splitlines()[-1] == "acme globex initech"
    counts = manage(
        demo_env,
        "shell",
        "-c",
        "from tenancy.models import Tenant, TenantMembership\n"
        "print(Tenant.objects.count(), Tenant.objects.filter(active=True).count(), "
        "TenantMembership.objects.count())",
    )
    assert counts.strip().splitlines()[-1] == "3 2 4"


@pytest.mark.slow
def test_demo_settings_pass_the_system_checks(demo_env):
    manage(demo_env, "check")


@pytest.mark.slow
def test_the_demo_api_suite_passes_with_the_demo_app_installed():
    """tests/demo/ (the demo API through real HTTP) in a pytest of its own: tests/demo_settings.py.

    The main suite runs without the demo app; this run installs it, on the same
    database server and cache as this one (its test database has its own name).
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--ds=tests.demo_settings",
            "-p",
            "no:cacheprovider",
            "-q",
            "tests/demo",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout, result.stdout[-2000:]
