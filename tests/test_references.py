"""Foreign keys between tenants: expression writes and hand-built rows never cross tenants."""

from __future__ import annotations

import pytest
from django.db import connection, models
from django.db.models import Case, F, OuterRef, Subquery, Value, When
from django.db.models.functions import Cast, Coalesce, Greatest
from django.test.utils import CaptureQueriesContext

import tenancy
from tenancy import TenantAccessDenied, TenantRequiredError
from tests.test_models import unscoped_state
from tests.testapp.models import Project, Task


def attacks(dome: Project, rocket: Project):
    """Each expression kind, built to set ``project`` to globex's Dome from inside acme."""
    big = models.BigIntegerField()
    return {
        "Value": Value(dome.pk),
        "F arithmetic": F("project") + (dome.pk - rocket.pk),
        "Cast": Cast(Value(str(dome.pk)), output_field=models.BigIntegerField()),
        "Subquery": Subquery(Project.unscoped.filter(name="Dome").values("pk")[:1]),
        "Case/When": Case(
            When(title__endswith="1", then=Value(dome.pk)), default=F("project"), output_field=big
        ),
        "Coalesce": Coalesce(Value(dome.pk), F("project"), output_field=big),
        "Greatest": Greatest(F("project"), Value(dome.pk), output_field=big),
    }


KINDS = list(attacks(Project(pk=2), Project(pk=1)))


@pytest.mark.parametrize("kind", KINDS)
def test_scoped_update_with_an_expression_never_writes_a_cross_tenant_reference(scoped_rows, kind):
    dome, rocket = scoped_rows["Dome"], scoped_rows["Rocket"]
    before = unscoped_state()
    with tenancy.switch("acme"):
        rocket_tasks = Task.objects.filter(project=rocket)
        with pytest.raises(TenantAccessDenied, match=r"\(project\).*rolled back"):
            rocket_tasks.update(project=attacks(dome, rocket)[kind])
        # Still usable afterwards, and nothing of another tenant is reachable.
        assert {t.project.name for t in Task.objects.select_related("project")} == {
            "Rocket",
            "Anvil",
        }
    assert unscoped_state() == before


@pytest.mark.parametrize("kind", KINDS)
def test_unscoped_update_with_an_expression_is_proven_too(scoped_rows, kind):
    dome, rocket = scoped_rows["Dome"], scoped_rows["Rocket"]
    before = unscoped_state()
    with pytest.raises(TenantAccessDenied, match="rolled back"):
        Task.unscoped.filter(project=rocket).update(project=attacks(dome, rocket)[kind])
    assert unscoped_state() == before


def test_expressions_that_stay_in_the_tenant_are_written(scoped_rows):
    rocket, anvil = scoped_rows["Rocket"], scoped_rows["Anvil"]
    with tenancy.switch("acme"):
        own = Subquery(Project.objects.filter(name="Anvil").values("pk")[:1])
        assert Task.objects.filter(project=rocket).update(project=own) == 2
        assert Task.objects.filter(project=anvil).count() == 4
        moved = Task.objects.filter(title="Rocket 1").update(project=Value(rocket.pk))
        assert moved == 1
        assert Task.objects.update(project=F("project")) == 4
    # Maintenance code may use expressions through unscoped, within each row's tenant.
    same = Subquery(Project.unscoped.filter(tenant_id=OuterRef("tenant_id")).values("pk")[:1])
    assert Task.unscoped.filter(tenant_id="globex").update(project=same) == 2


def test_an_update_of_other_fields_costs_no_proof(scoped_rows):
    with tenancy.switch("acme"), CaptureQueriesContext(connection) as queries:
        Task.objects.update(title=Value("renamed"), done=~F("done"))
    assert len(queries) == 1


@pytest.mark.parametrize("kind", ["Value", "F arithmetic", "Cast", "Coalesce"])
def test_bulk_update_with_an_expression_never_writes_a_cross_tenant_reference(scoped_rows, kind):
    dome, rocket = scoped_rows["Dome"], scoped_rows["Rocket"]
    before = unscoped_state()
    with tenancy.switch("acme"):
        tasks = list(Task.objects.filter(project=rocket))
        for task in tasks:
            task.project_id = attacks(dome, rocket)[kind]
        with pytest.raises(TenantAccessDenied, match="rolled back"):
            Task.objects.bulk_update(tasks, ["project"])
    assert unscoped_state() == before


def test_bulk_update_of_checked_values_adds_no_proof_query(scoped_rows):
    rocket, anvil = scoped_rows["Rocket"], scoped_rows["Anvil"]
    with tenancy.switch("acme"):
        tasks = list(Task.objects.filter(project=rocket))
        for task in tasks:
            task.project = anvil  # held instances: checked without a query
        with CaptureQueriesContext(connection) as queries:
            Task.objects.bulk_update(tasks, ["project"])
    statements = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("SELECT")]
    assert statements == []


# -- hand-built rows ---------------------------------------------------------------------


def test_a_hand_built_row_reads_its_foreign_key_in_the_bound_tenant_only(scoped_rows):
    dome, rocket = scoped_rows["Dome"], scoped_rows["Rocket"]
    with tenancy.switch("acme"):
        assert Task(project_id=rocket.pk, title="draft").project == rocket
        with pytest.raises(Project.DoesNotExist):
            Task(project_id=dome.pk, title="draft").project  # noqa: B018
        # A row read from the database whose key was then changed by hand: the same.
        task = Task.objects.filter(project=rocket).first()
        task.project_id = dome.pk
        with pytest.raises(Project.DoesNotExist):
            task.project  # noqa: B018


def test_a_hand_built_row_outside_any_tenant_reads_in_its_own_tenant(scoped_rows):
    dome, rocket = scoped_rows["Dome"], scoped_rows["Rocket"]
    assert Task(tenant_id="acme", project_id=rocket.pk).project == rocket
    with pytest.raises(Project.DoesNotExist):
        Task(tenant_id="acme", project_id=dome.pk).project  # noqa: B018
    with pytest.raises(TenantRequiredError):
        Task(project_id=dome.pk).project  # noqa: B018


def test_rows_read_from_the_database_keep_their_lazy_keys_everywhere(scoped_rows):
    # Maintenance code and the admin read rows of every tenant and follow their keys.
    titles = {task.title: task.project.name for task in Task.unscoped.all()}
    assert titles["Dome 1"] == "Dome"
    with tenancy.switch("acme"):
        task = Task.objects.get(title="Rocket 1")
    with tenancy.switch("globex"):
        # Followed in another tenant's block, a row read earlier still names its own parent.
        assert task.project.name == "Rocket"
