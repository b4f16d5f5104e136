"""``manage.py tenancy run`` and ``TenantCommand``: a command inside each tenant, failures named."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

import tenancy

ROOT = Path(__file__).resolve().parent.parent


def run(*args):
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def initech(db):
    tenancy.register_tenant("initech", "Initech")
    return tenancy.deactivate_tenant("initech")


@pytest.mark.django_db
def test_run_for_one_tenant_passes_the_arguments_on(tenants):
    out, err = run("tenancy", "run", "--tenant", "acme", "tenant_echo", "hello", "--shout")
    assert "[1/1] acme: tenant_echo" in out
    assert "tenant=acme words=HELLO" in out
    assert "[1/1] acme: done" in out
    assert err == ""
    assert tenancy.get_context() is None


@pytest.mark.django_db
def test_run_for_several_tenants_one_after_another(tenants):
    out, _ = run("tenancy", "run", "--tenant", "globex", "--tenant", "acme", "tenant_echo")
    lines = [line for line in out.splitlines() if line.startswith("tenant=")]
    assert lines == ["tenant=globex words=", "tenant=acme words="]
    assert "tenant_echo ran for 2 tenants." in out


@pytest.mark.django_db
def test_run_for_all_active_tenants_skips_inactive_ones(tenants, initech):
    out, _ = run("tenancy", "run", "--all-active", "tenant_echo")
    assert "[1/2] acme: tenant_echo" in out and "[2/2] globex: tenant_echo" in out
    assert "initech" not in out


@pytest.mark.django_db
def test_a_failing_tenant_among_several_is_named_and_the_others_still_run(tenants, initech):
    tenancy.register_tenant("umbrella", "Umbrella")
    with pytest.raises(CommandError) as caught:
        run(
            "tenancy", "run",
            "--tenant", "acme", "--tenant", "globex", "--tenant", "initech", "--tenant", "umbrella",
            "tenant_echo", "--fail-in", "globex",
        )  # fmt: skip
    assert str(caught.value) == "tenant_echo failed for 2 of 4 tenants: globex, initech"


@pytest.mark.django_db
def test_failures_are_reported_per_tenant_on_stderr(tenants):
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="nobody"):
        call_command(
            "tenancy", "run", "--tenant", "nobody", "--tenant", "acme", "tenant_echo",
            stdout=out, stderr=err,
        )  # fmt: skip
    assert "[1/2] nobody: failed: TenantNotRegisteredError" in err.getvalue()
    assert "tenant=acme" in out.getvalue()


@pytest.mark.django_db
def test_run_needs_a_target():
    with pytest.raises(CommandError):
        run("tenancy", "run", "tenant_echo")


@pytest.mark.django_db
def test_run_with_no_active_tenant_runs_nothing():
    out, _ = run("tenancy", "run", "--all-active", "tenant_echo")
    assert "No active tenants" in out


# -- TenantCommand -------------------------------------------------------------------


@pytest.mark.django_db
def test_tenant_command_runs_handle_inside_its_tenant(scoped_rows):
    assert run("count_projects", "--tenant", "acme")[0] == "2 projects\n"
    assert run("count_projects", "--tenant", "globex", "--label", "domes")[0] == "1 domes\n"
    assert tenancy.get_context() is None


@pytest.mark.django_db
def test_tenant_command_without_a_tenant_is_a_command_error(tenants):
    with pytest.raises(CommandError, match="needs a tenant"):
        run("count_projects")


@pytest.mark.django_db
@pytest.mark.parametrize("tenant_id", ["nobody", "initech", "Not An Id"])
def test_tenant_command_refuses_unknown_inactive_and_malformed_tenants(tenants, initech, tenant_id):
    with pytest.raises(CommandError):
        run("count_projects", "--tenant", tenant_id)
    assert tenancy.get_context() is None


@pytest.mark.django_db
def test_tenant_command_under_run_uses_the_tenant_run_bound(scoped_rows):
    out, _ = run("tenancy", "run", "--all-active", "count_projects", "--label", "rows")
    assert "2 rows" in out and "1 rows" in out


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_from_the_command_line_a_failed_tenant_exits_non_zero(tenants):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.server_settings",
        "TENANCY_SERVER_DB_NAME": str(connections["default"].settings_dict["NAME"]),
    }
    args = [sys.executable, "-m", "django", "tenancy", "run", "--all-active", "tenant_echo"]
    ok = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    failed = subprocess.run(
        [*args, "--fail-in", "acme"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert failed.returncode == 1
    assert "tenant_echo failed for 1 of 2 tenants: acme" in failed.stderr
    assert "tenant=globex" in failed.stdout
