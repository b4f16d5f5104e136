"""Row-level security: PostgreSQL scopes every statement of an application role, per transaction.

These tests connect as a non-superuser application role they create (see
tests/rls_roles.py), after ``migrate`` ran as the owner with the setting on.
"""

import contextlib
import json

import pytest
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction
from django.db.models import Value
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

import tenancy
from tenancy import rls
from tenancy.checks import check_rls_database, check_rls_engines
from tests.rls_roles import app_alias, pgbouncer, walled_database
from tests.testapp.models import Note, Project, Task

ON_POSTGRES = connection.vendor == "postgresql"
APP = "rls_app"
PG_ONLY = pytest.mark.skipif(
    not ON_POSTGRES,
    reason="row-level security is PostgreSQL's: run with DATABASE_URL=postgres://...",
)
WALL = pytest.mark.django_db(transaction=True, databases=["default", APP])


def rls_settings(on=True, **extra):
    from django.conf import settings

    return {**settings.TENANCY, "ROW_LEVEL_SECURITY": on, **extra}


@pytest.fixture(scope="module", params=["direct", "server-side-binding", "pgbouncer"])
def walled(request, django_db_setup, django_db_blocker):
    """Alias ``rls_app``: the application role, straight to PostgreSQL or through PgBouncer.

    Through PgBouncer in transaction pooling mode with a pool of 2 server
    connections, so consecutive transactions of one client land on any of them.
    With psycopg's server-side binding, the tenant goes out as a statement of its
    own in the same transaction.
    """
    if not ON_POSTGRES:
        pytest.skip("row-level security is PostgreSQL's: run with DATABASE_URL=postgres://...")
    with django_db_blocker.unblock(), walled_database(), contextlib.ExitStack() as stack:
        options = {}
        if request.param == "pgbouncer":
            try:
                host, port = stack.enter_context(pgbouncer(pool_size=2))
            except FileNotFoundError as exc:
                pytest.skip(str(exc))
            options = {"HOST": host, "PORT": str(port), "DISABLE_SERVER_SIDE_CURSORS": True}
        elif request.param == "server-side-binding":
            options = {"OPTIONS": {"server_side_binding": True}}
        stack.enter_context(app_alias(APP, **options))
        yield connections[APP]


def sql(query, params=None, using=APP):
    with connections[using].cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else cursor.rowcount


def project_tenants(using=APP):
    return sorted(t for (t,) in sql("SELECT tenant_id FROM testapp_project", using=using))


# -- without PostgreSQL ---------------------------------------------------------------


@pytest.mark.skipif(ON_POSTGRES, reason="checks what other engines report")
def test_other_engines_are_refused_by_a_check_and_the_command(db):
    with override_settings(TENANCY=rls_settings()):
        assert [e.id for e in check_rls_engines()] == ["tenancy.E020"]
    assert check_rls_engines() == []
    with pytest.raises(CommandError, match="needs PostgreSQL"):
        call_command("tenancy", "rls")


def test_the_command_refuses_an_unknown_database_alias(db):
    with pytest.raises(CommandError, match="No database alias 'nope'"):
        call_command("tenancy", "rls", "--database", "nope")


def test_bypass_blocks_nest_and_are_one_object_per_block():
    block = rls.bypass()
    assert not rls.bypassed()
    with block:
        assert rls.bypassed()
        with rls.bypass():
            assert rls.bypassed()
        assert rls.bypassed()
        with pytest.raises(RuntimeError, match="already entered"), block:
            pass
    assert not rls.bypassed()
    assert tenancy.bypass_rls is rls.bypass


# -- the policies -----------------------------------------------------------------


@PG_ONLY
@WALL
def test_migrate_walls_every_scoped_table_and_the_command_says_so(walled, capsys):
    call_command("tenancy", "rls", "--json")
    report = json.loads(capsys.readouterr().out)
    tables = {t["table"]: t for t in report["tables"]}
    assert report["row_level_security"] is True
    # The test app's and the package's own scoped models alike.
    for table in ("testapp_project", "testapp_task", "testapp_note", "tenancy_message"):
        assert tables[table]["walled"], tables[table]
    assert all(t["enabled"] and t["forced"] and t["policy"] for t in report["tables"])
    assert "tenancy_tenant" not in tables  # the tenants themselves are not scoped
    call_command("tenancy", "rls")
    assert "testapp_project" in capsys.readouterr().out


@PG_ONLY
@WALL
def test_a_table_without_its_policy_fails_the_command_and_a_check(walled, capsys):
    sql("DROP POLICY tenancy_tenant ON testapp_note", using="default")
    try:
        with pytest.raises(CommandError, match="testapp_note"):
            call_command("tenancy", "rls", "--json")
        states = {t["table"]: t for t in json.loads(capsys.readouterr().out)["tables"]}
        assert not states["testapp_note"]["policy"] and states["testapp_project"]["walled"]
        errors = check_rls_database(databases=[APP])
        assert [e.id for e in errors] == ["tenancy.E022"]
        assert "testapp_note" in errors[0].msg and "migrate" in errors[0].hint
    finally:
        assert rls.sync_policies("default") == ["testapp_note"]
    assert check_rls_database(databases=[APP]) == []


@PG_ONLY
@WALL
def test_a_superuser_connection_and_a_missing_bypass_role_fail_checks(walled):
    errors = check_rls_database(databases=["default"])  # the owner: a superuser
    assert [e.id for e in errors] == ["tenancy.E021"]
    assert "CREATE ROLE" in errors[0].hint
    with override_settings(TENANCY=rls_settings(RLS_BYPASS_ROLE="no_such_role")):
        assert [e.id for e in check_rls_database(databases=[APP])] == ["tenancy.E023"]
    assert check_rls_database(databases=[APP]) == []


@PG_ONLY
@WALL
def test_turning_the_setting_off_and_migrating_removes_the_policies(walled, capsys):
    with override_settings(TENANCY=rls_settings(on=False)):
        call_command("migrate", verbosity=0)
        call_command("tenancy", "rls", "--json")  # off: reports, exits 0
        report = json.loads(capsys.readouterr().out)
        assert report["row_level_security"] is False
        assert not any(t["enabled"] or t["forced"] or t["policy"] for t in report["tables"])
    call_command("migrate", verbosity=0)
    assert rls.table_states("default") and all(s.walled for s in rls.table_states("default"))


# -- raw SQL of the application role ------------------------------------------------------


@PG_ONLY
@WALL
def test_raw_sql_sees_the_bound_tenants_rows_only_and_none_without_a_tenant(walled, scoped_rows):
    assert project_tenants(using="default") == ["acme", "acme", "globex"]  # the owner sees all
    with tenancy.switch("acme"):
        assert project_tenants() == ["acme", "acme"]
        assert sql("SELECT count(*) FROM testapp_task") == [(4,)]
        with tenancy.switch("globex"):
            assert project_tenants() == ["globex"]
        assert project_tenants() == ["acme", "acme"]
    assert project_tenants() == []
    with tenancy.Context(tenant_id="default"):
        assert project_tenants() == []
    with tenancy.Context(tenant_id="globex"):  # a context bag, as the middleware binds
        assert project_tenants() == ["globex"]


@PG_ONLY
@WALL
def test_raw_writes_for_another_tenant_are_refused_by_postgresql(walled, scoped_rows):
    dome = scoped_rows["Dome"].pk
    rocket = scoped_rows["Rocket"].pk
    with tenancy.switch("acme"):
        with pytest.raises(DatabaseError, match="row-level security"):
            sql("INSERT INTO testapp_project (tenant_id, name) VALUES ('globex', 'Sneaky')")
        # Another tenant's row is not there to update or delete.
        assert sql("UPDATE testapp_project SET name = 'Owned' WHERE id = %s", [dome]) == 0
        assert sql("DELETE FROM testapp_project WHERE id = %s", [dome]) == 0
        # Nor can one of this tenant's rows be given away.
        with pytest.raises(DatabaseError, match="row-level security"):
            sql("UPDATE testapp_project SET tenant_id = 'globex' WHERE id = %s", [rocket])
    with pytest.raises(DatabaseError, match="row-level security"):
        sql("INSERT INTO testapp_project (tenant_id, name) VALUES ('acme', 'Nobody')")
    assert Project.unscoped.get(pk=dome).name == "Dome"
    assert Project.unscoped.filter(name__in=["Sneaky", "Nobody"]).count() == 0


@PG_ONLY
@WALL
def test_raw_and_extra_are_scoped_by_postgresql(walled, scoped_rows):
    with tenancy.switch("acme"):
        raw = Project.objects.using(APP).raw("SELECT * FROM testapp_project ORDER BY id")
        assert [p.name for p in raw] == ["Rocket", "Anvil"]
        tenants = tenancy.models.Tenant.objects.using(APP).extra(
            select={"projects": "SELECT count(*) FROM testapp_project"}
        )
        assert {t.tenant_id: t.projects for t in tenants} == {"acme": 2, "globex": 2}
        assert Project.objects.using(APP).extra(where=["TRUE"]).count() == 2


@PG_ONLY
@WALL
def test_the_orm_behaves_as_it_does_without_the_wall(walled, scoped_rows):
    with tenancy.switch("acme"):
        assert sorted(Project.objects.using(APP).values_list("name", flat=True)) == [
            "Anvil",
            "Rocket",
        ]
        rocket = Project.objects.using(APP).get(name="Rocket")
        Task.objects.using(APP).create(project=rocket, title="Fuel")
        assert rocket.tasks.count() == 3
        rocket.name = "Rocket 2"
        rocket.save()
        Project.objects.using(APP).filter(name="Anvil").update(name="Anvil 2")
    # unscoped and the admin's cross-tenant views: every tenant, through the bypass role.
    assert Project.unscoped.using(APP).count() == 3
    assert sorted(Project.unscoped.using(APP).values_list("tenant_id", flat=True)) == [
        "acme",
        "acme",
        "globex",
    ]
    assert len(list(Project.unscoped.using(APP).iterator())) == 3
    dome = Project.unscoped.using(APP).get(name="Dome")
    # Maintenance code outside any tenant writes a row that names its tenant.
    dome.name = "Dome 2"
    dome.save()
    Note.unscoped.using(APP).create(tenant_id="globex", title="Outside")
    assert sorted(Project.unscoped.values_list("name", flat=True)) == [
        "Anvil 2",
        "Dome 2",
        "Rocket 2",
    ]
    with tenancy.switch("globex"):
        assert Note.objects.using(APP).get().title == "Outside"
        Note.objects.using(APP).get().delete()
    assert not Note.unscoped.exists()
    with pytest.raises(tenancy.TenantRequiredError):
        Project.objects.using(APP).count()


@PG_ONLY
@WALL
def test_the_write_guards_still_see_other_tenants_rows_to_refuse_them(walled, scoped_rows):
    dome = scoped_rows["Dome"]
    with tenancy.switch("acme"):
        with pytest.raises(tenancy.TenantAccessDenied):
            Task.objects.using(APP).create(project_id=dome.pk, title="Cross")
        stray = Project(pk=dome.pk, name="Hand-built")
        with pytest.raises(tenancy.TenantAccessDenied):
            stray.save(using=APP)
        with pytest.raises(tenancy.TenantAccessDenied):
            stray.delete(using=APP)
        # A key computed by the database is proven after the write, across tenants.
        with pytest.raises(tenancy.TenantAccessDenied):
            Task.objects.using(APP).update(project_id=Value(dome.pk))
    assert Project.unscoped.get(pk=dome.pk).name == "Dome"
    assert not Task.unscoped.filter(tenant_id="acme", project_id=dome.pk).exists()


@PG_ONLY
@WALL
def test_bypass_sees_every_tenant_and_ends_with_its_block(walled, scoped_rows):
    app_role = sql("SELECT current_user")[0][0]
    with tenancy.switch("acme"):
        with rls.bypass():
            assert project_tenants() == ["acme", "acme", "globex"]
        assert project_tenants() == ["acme", "acme"]
        with transaction.atomic(using=APP):
            assert project_tenants() == ["acme", "acme"]
            with rls.bypass():
                assert len(project_tenants()) == 3
                assert sql("SELECT current_user") != [(app_role,)]
            assert sql("SELECT current_user") == [(app_role,)]
            assert project_tenants() == ["acme", "acme"]
    assert sql("SELECT current_user") == [(app_role,)]


@PG_ONLY
@WALL
def test_executemany_is_scoped_too(walled, tenants):
    query = "INSERT INTO testapp_project (tenant_id, name) VALUES (%s, %s)"
    with tenancy.switch("acme"), connections[APP].cursor() as cursor:
        cursor.executemany(query, [("acme", "One"), ("acme", "Two")])
        with pytest.raises(DatabaseError, match="row-level security"):
            cursor.executemany(query, [("acme", "Three"), ("globex", "Four")])
    assert sorted(Project.unscoped.values_list("name", flat=True)) == ["One", "Two"]


# -- per transaction, and nothing left on the connection -----------------------------------


def combined(alias):
    """True when the tenant rides in the statement's own query (client-side binding)."""
    return not connections[alias].settings_dict["OPTIONS"].get("server_side_binding")


def sent_sql(captured):
    """The statements as sent (psycopg's own BEGIN and COMMIT left out)."""
    return [q["sql"] for q in captured.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]


@PG_ONLY
@WALL
def test_inside_atomic_only_the_first_statement_and_a_switch_carry_the_tenant(walled, scoped_rows):
    with tenancy.switch("acme"), CaptureQueriesContext(walled) as captured:
        with transaction.atomic(using=APP):
            project_tenants()
            project_tenants()
            with tenancy.switch("globex"):
                assert project_tenants() == ["globex"]
            assert project_tenants() == ["acme", "acme"]
    carried = ["set_config('tenancy.tenant_id'" in s for s in sent_sql(captured)]
    assert carried == ([True, False, True, True] if combined(APP) else [False] * 4)


@PG_ONLY
@WALL
def test_a_rolled_back_savepoint_does_not_lose_the_tenant(walled, scoped_rows):
    with tenancy.switch("acme"), transaction.atomic(using=APP):
        assert project_tenants() == ["acme", "acme"]
        try:
            with transaction.atomic(using=APP):
                with tenancy.switch("globex"):
                    assert project_tenants() == ["globex"]
                    raise RuntimeError("roll back")
        except RuntimeError:
            pass
        assert project_tenants() == ["acme", "acme"]
        with tenancy.switch("globex"):
            assert project_tenants() == ["globex"]


@PG_ONLY
@WALL
def test_in_autocommit_every_statement_carries_it_and_no_state_stays(walled, scoped_rows):
    with tenancy.switch("acme"), CaptureQueriesContext(walled) as captured:
        project_tenants()
        project_tenants()
    if combined(APP):
        assert len(sent_sql(captured)) == 2  # no query of its own
        assert all(s.startswith("SELECT set_config(") for s in sent_sql(captured))
    # The server connection itself holds nothing: the setting was transaction-local
    # (through PgBouncer, the next transaction may even run on another one).
    raw = walled.connection
    assert raw.execute("SELECT current_setting('tenancy.tenant_id', true)").fetchone()[0] in (
        "",
        None,
    )
    assert raw.execute("SELECT count(*) FROM testapp_project").fetchone() == (0,)


@PG_ONLY
@WALL
async def test_async_code_reaches_postgresql_with_its_tenant(walled, scoped_rows):
    async with tenancy.aswitch("globex"):
        assert await sync_to_async(project_tenants)() == ["globex"]
        assert await Project.objects.using(APP).acount() == 1
    async with tenancy.Context(tenant_id="acme"):
        assert await sync_to_async(project_tenants)() == ["acme", "acme"]
    assert await sync_to_async(project_tenants)() == []
    assert await Project.unscoped.using(APP).acount() == 3


@PG_ONLY
@WALL
def test_the_examples_of_docs_rls_md_run(walled, tenants, capsys):
    from tests.test_docs_examples import runnable_blocks

    with tenancy.switch("acme"):
        Note.objects.create(title="Kept")
    blocks = runnable_blocks("rls.md")
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/rls.md", "exec"), {"__name__": "docs", "Note": Note})
    assert "[('acme', 1)]" in capsys.readouterr().out


@PG_ONLY
@WALL
def test_manage_py_migrate_is_not_stopped_by_the_checks_it_fixes(walled, monkeypatch):
    sql("DROP POLICY tenancy_tenant ON testapp_note", using="default")
    assert [e.id for e in check_rls_database(databases=["default"])] == [
        "tenancy.E021",
        "tenancy.E022",
    ]
    monkeypatch.setattr("sys.argv", ["manage.py", "migrate"])
    call_command("migrate", verbosity=0, skip_checks=False)  # as manage.py migrate runs it
    assert all(s.walled for s in rls.table_states("default"))
