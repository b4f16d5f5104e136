"""The scoped manager and queryset: every read and write method sees only the current tenant."""

from __future__ import annotations

import asyncio

import pytest
from django.db import connection
from django.db.models import Count, Exists, OuterRef, Subquery
from django.test.utils import CaptureQueriesContext

import tenancy
from tenancy import TenantAccessDenied, TenantNotRegisteredError, TenantRequiredError
from tenancy.managers import TenantScopedQuerySet
from tenancy.models import Tenant
from tests.testapp.models import Project, Task

# Built at import time, outside any tenant, like a DRF ``queryset`` class attribute.
MODULE_LEVEL_PROJECTS = Project.objects.order_by("name")


def names(queryset):
    return sorted(p.name for p in queryset)


# -- reads ------------------------------------------------------------------------


def test_every_read_method_sees_only_the_current_tenant(scoped_rows):
    dome = scoped_rows["Dome"]
    with tenancy.switch("acme"):
        assert names(Project.objects.all()) == ["Anvil", "Rocket"]
        assert Project.objects.count() == 2
        assert Project.objects.filter(name="Dome").exists() is False
        assert list(Project.objects.values_list("name", flat=True).order_by("name")) == [
            "Anvil",
            "Rocket",
        ]
        assert {row["name"] for row in Project.objects.values("name")} == {"Anvil", "Rocket"}
        assert Project.objects.in_bulk([dome.pk]) == {}
        assert set(Project.objects.in_bulk()) == {scoped_rows["Rocket"].pk, scoped_rows["Anvil"].pk}
        assert Project.objects.order_by("name").first().name == "Anvil"
        assert Project.objects.order_by("name").last().name == "Rocket"
        assert Project.objects.aggregate(n=Count("pk")) == {"n": 2}
        assert names(Project.objects.iterator()) == ["Anvil", "Rocket"]
        assert Project.objects.contains(dome) is False
        assert Task.objects.count() == 4
        with pytest.raises(Project.DoesNotExist):
            Project.objects.get(pk=dome.pk)
        with pytest.raises(Project.DoesNotExist):
            Project.objects.get(name="Dome")
    with tenancy.switch("globex"):
        assert names(Project.objects.all()) == ["Dome"]
        assert Project.objects.get(pk=dome.pk) == dome
        assert Task.objects.count() == 2


def test_no_tenant_bound_raises_tenant_required_on_every_read(scoped_rows):
    queryset = Project.objects.all()  # building a queryset is fine
    for read in (
        lambda: list(queryset),
        lambda: Project.objects.count(),
        lambda: Project.objects.exists(),
        lambda: Project.objects.get(name="Rocket"),
        lambda: Project.objects.first(),
        lambda: Project.objects.aggregate(n=Count("pk")),
        lambda: list(Project.objects.values("name")),
        lambda: list(Project.objects.iterator()),
        lambda: Project.objects.in_bulk(),
        lambda: list(scoped_rows["Rocket"].tasks.all()),
    ):
        with pytest.raises(TenantRequiredError):
            read()


def test_the_reserved_default_tenant_means_none_for_reads_and_writes(scoped_rows):
    """``default`` bound by hand is no tenant: refused before any SQL, like ``None``."""
    token = tenancy.set_current_tenant_id("default")
    try:
        with CaptureQueriesContext(connection) as queries:
            for call in (
                lambda: list(Project.objects.all()),
                lambda: Project.objects.count(),
                lambda: Project.objects.create(name="Nowhere"),
                lambda: Project.objects.filter(name="Rocket").update(name="Moved"),
                lambda: Project.objects.all().delete(),
                lambda: Project(name="Hand built").save(),
                lambda: tenancy.require_tenant(),
                lambda: tenancy.Context().get_tenant_id(),
            ):
                with pytest.raises(TenantRequiredError):
                    call()
        assert queries.captured_queries == []
    finally:
        tenancy.reset_context(token, "tenant_id")
    assert Project.unscoped.filter(name__in=["Nowhere", "Moved", "Hand built"]).count() == 0


def test_none_needs_no_tenant_and_no_query(scoped_rows, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert list(Project.objects.none()) == []
        assert Project.objects.none().count() == 0
        assert list(Project.objects.filter(name="Rocket").none().values("name")) == []


def test_unscoped_is_the_explicit_escape_hatch(scoped_rows):
    assert names(Project.unscoped.all()) == ["Anvil", "Dome", "Rocket"]
    assert names(Project.objects.unscoped()) == ["Anvil", "Dome", "Rocket"]
    with tenancy.switch("acme"):
        assert Project.unscoped.count() == 3
        assert Project.objects.unscoped().filter(tenant_id="globex").get().name == "Dome"
    assert Project.objects.unscoped().is_tenant_scoped is False
    assert Project.objects.all().is_tenant_scoped is True


def test_raw_sql_is_not_scoped(scoped_rows):
    """Documented: raw() is plain SQL; it is the caller's job to filter by tenant."""
    table = Project._meta.db_table
    with tenancy.switch("acme"):
        rows = Project.objects.raw(f"SELECT * FROM {table}")
        assert names(rows) == ["Anvil", "Dome", "Rocket"]


def test_a_queryset_built_outside_any_tenant_runs_in_the_tenant_that_evaluates_it(scoped_rows):
    with tenancy.switch("acme"):
        assert names(MODULE_LEVEL_PROJECTS.all()) == ["Anvil", "Rocket"]
    with tenancy.switch("globex"):
        assert names(MODULE_LEVEL_PROJECTS.all()) == ["Dome"]
    with pytest.raises(TenantRequiredError):
        list(MODULE_LEVEL_PROJECTS.all())


def test_results_cached_in_one_tenant_are_never_handed_out_in_another(scoped_rows):
    with tenancy.switch("acme"):
        queryset = Project.objects.order_by("name")
        assert names(queryset) == ["Anvil", "Rocket"]  # evaluated: results cached
        assert queryset[0].name == "Anvil"
    with tenancy.switch("globex"):
        for read in (
            lambda: list(queryset),
            lambda: len(queryset),
            lambda: bool(queryset),
            lambda: queryset[0],
            lambda: queryset.count(),
            lambda: queryset.exists(),
            lambda: queryset.contains(scoped_rows["Rocket"]),
        ):
            with pytest.raises(TenantAccessDenied):
                read()
        # A fresh chain runs again, in this tenant.
        assert names(queryset.all()) == ["Dome"]
    with pytest.raises(TenantRequiredError):
        list(queryset)


def test_subqueries_are_scoped_like_the_outer_query(scoped_rows):
    all_projects = Project.objects.all()  # built outside the tenant, used as a subquery
    with tenancy.switch("acme"):
        assert Task.objects.filter(project__in=all_projects).count() == 4
        first_task = Task.objects.filter(project=OuterRef("pk")).order_by("title")
        annotated = Project.objects.annotate(
            first=Subquery(first_task.values("title")[:1]),
            has_tasks=Exists(Task.objects.filter(project=OuterRef("pk"))),
        ).order_by("name")
        assert [(p.name, p.first, p.has_tasks) for p in annotated] == [
            ("Anvil", "Anvil 1", True),
            ("Rocket", "Rocket 1", True),
        ]
        # An unscoped outer query with a scoped subquery still sees acme's tasks only.
        assert Task.unscoped.filter(project__in=Project.objects.all()).count() == 4


def test_combinators_are_scoped(scoped_rows):
    with tenancy.switch("acme"):
        union = Project.objects.filter(name="Rocket").union(Project.objects.filter(name="Dome"))
        assert names(union) == ["Rocket"]
        assert names(
            Project.objects.filter(name="Anvil") | Project.objects.filter(name="Dome")
        ) == ["Anvil"]


def test_related_managers_prefetch_and_select_related_stay_in_the_tenant(scoped_rows):
    rocket = scoped_rows["Rocket"]
    with tenancy.switch("acme"):
        assert sorted(t.title for t in rocket.tasks.all()) == ["Rocket 1", "Rocket 2"]
        assert rocket.tasks.count() == 2
        projects = Project.objects.prefetch_related("tasks").order_by("name")
        assert [len(p.tasks.all()) for p in projects] == [2, 2]
        tasks = Task.objects.select_related("project").order_by("title")
        assert {t.project.name for t in tasks} == {"Anvil", "Rocket"}
        assert {t.project.tenant_id for t in tasks} == {"acme"}
        annotated = Project.objects.annotate(n=Count("tasks")).order_by("name")
        assert [(p.name, p.n) for p in annotated] == [("Anvil", 2), ("Rocket", 2)]
    with tenancy.switch("globex"):
        # The related manager of an acme row, used in globex, finds nothing.
        assert list(rocket.tasks.all()) == []


def test_a_warm_scoped_read_is_one_query(scoped_rows):
    with tenancy.switch("acme"):
        Project.objects.count()
        with CaptureQueriesContext(connection) as queries:
            assert len(list(Project.objects.all())) == 2
        assert len(queries) == 1
        assert "acme" in str(queries[0]["sql"])


# -- writes -------------------------------------------------------------------------


def test_create_fills_the_tenant_and_refuses_another_one(scoped_rows):
    with tenancy.switch("acme"):
        created = Project.objects.create(name="Jet")
        assert created.tenant_id == "acme"
        with pytest.raises(TenantAccessDenied):
            Project.objects.create(name="Sneaky", tenant_id="globex")
    assert not Project.unscoped.filter(name="Sneaky").exists()
    with pytest.raises(TenantRequiredError):
        Project.objects.create(name="Nowhere")
    with pytest.raises(TenantRequiredError):
        Project.objects.create(name="Named", tenant_id="acme")  # the scoped manager needs a tenant
    assert not Project.unscoped.filter(name__in=["Nowhere", "Named"]).exists()
    # Maintenance code names the tenant explicitly, through the unscoped manager.
    assert Project.unscoped.create(name="Seeded", tenant_id="globex").tenant_id == "globex"


def test_get_or_create_and_update_or_create_never_match_another_tenant(scoped_rows):
    with tenancy.switch("acme"):
        dome, created = Project.objects.get_or_create(name="Dome")
        assert created is True and dome.tenant_id == "acme"
        again, created = Project.objects.get_or_create(name="Dome")
        assert created is False and again.pk == dome.pk
        updated, created = Project.objects.update_or_create(
            name="Rocket", defaults={"name": "Rocket 2"}
        )
        assert created is False and updated.pk == scoped_rows["Rocket"].pk
        with pytest.raises(TenantAccessDenied):
            Project.objects.get_or_create(name="Elsewhere", defaults={"tenant_id": "globex"})
        with pytest.raises(TenantAccessDenied):
            Project.objects.update_or_create(name="Anvil", defaults={"tenant_id": "globex"})
    assert Project.unscoped.get(pk=scoped_rows["Dome"].pk).name == "Dome"
    assert Project.unscoped.filter(tenant_id="globex").count() == 1
    assert Project.unscoped.get(pk=scoped_rows["Anvil"].pk).tenant_id == "acme"


def test_update_and_delete_touch_only_the_current_tenant(scoped_rows):
    with tenancy.switch("acme"):
        assert Project.objects.update(name="Renamed") == 2
        assert Task.objects.filter(title__startswith="Dome").delete()[0] == 0
        assert Project.objects.filter(name="Renamed").delete()[0] == 6  # 2 projects, 4 tasks
    assert names(Project.unscoped.all()) == ["Dome"]
    assert Task.unscoped.count() == 2
    with pytest.raises(TenantRequiredError):
        Project.objects.update(name="x")
    with pytest.raises(TenantRequiredError):
        Project.objects.all().delete()
    assert names(Project.unscoped.all()) == ["Dome"]


def test_update_cannot_move_rows_to_another_tenant(scoped_rows):
    with tenancy.switch("acme"):
        globex = Tenant.objects.get(tenant_id="globex")
        for change in ({"tenant_id": "globex"}, {"tenant": globex}):
            with pytest.raises(TenantAccessDenied):
                Project.objects.update(**change)
    with pytest.raises(TenantAccessDenied):
        Project.unscoped.filter(name="Rocket").update(tenant_id="globex")
    assert Project.unscoped.filter(tenant_id="acme").count() == 2


def test_bulk_create_fills_the_tenant_and_refuses_rows_of_another(scoped_rows):
    with tenancy.switch("acme"):
        made = Project.objects.bulk_create([Project(name="B1"), Project(name="B2")])
        assert {p.tenant_id for p in made} == {"acme"}
        with pytest.raises(TenantAccessDenied):
            Project.objects.bulk_create(
                [Project(name="B3"), Project(name="B4", tenant_id="globex")]
            )
    assert not Project.unscoped.filter(name__in=["B3", "B4"]).exists()
    with pytest.raises(TenantRequiredError):
        Project.objects.bulk_create([Project(name="B5", tenant_id="acme")])
    assert not Project.unscoped.filter(name="B5").exists()


def test_bulk_update_refuses_rows_of_another_tenant(scoped_rows):
    dome = Project.unscoped.get(name="Dome")
    with tenancy.switch("acme"):
        rocket = Project.objects.get(name="Rocket")
        rocket.name, dome.name = "Rocket!", "Dome!"
        with pytest.raises(TenantAccessDenied):
            Project.objects.bulk_update([rocket, dome], ["name"])
        with pytest.raises(TenantAccessDenied):
            Project.objects.bulk_update([rocket], ["tenant"])
        assert Project.objects.bulk_update([rocket], ["name"]) == 1
    assert names(Project.unscoped.all()) == ["Anvil", "Dome", "Rocket!"]


# -- async ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_async_methods_are_scoped(scoped_rows, close_async_connections):
    dome = scoped_rows["Dome"]
    async with tenancy.aswitch("acme"):
        assert sorted([p.name async for p in Project.objects.all()]) == ["Anvil", "Rocket"]
        assert sorted([p.name async for p in Project.objects.aiterator()]) == ["Anvil", "Rocket"]
        assert await Project.objects.acount() == 2
        assert await Project.objects.filter(pk=dome.pk).aexists() is False
        with pytest.raises(Project.DoesNotExist):
            await Project.objects.aget(pk=dome.pk)
        jet = await Project.objects.acreate(name="Jet")
        assert jet.tenant_id == "acme"
        again, created = await Project.objects.aget_or_create(name="Dome")
        assert created is True and again.pk != dome.pk
        made = await Project.objects.abulk_create([Project(name="A1")])
        assert made[0].tenant_id == "acme"
        assert await Project.objects.aupdate(name="Same") == 5
        assert (await Project.objects.filter(name="Same").adelete())[0] == 9
        with pytest.raises(TenantAccessDenied):
            await Project.objects.acreate(name="Other", tenant_id="globex")
        rocket_tasks = [t async for t in scoped_rows["Rocket"].tasks.all()]
        assert rocket_tasks == []  # deleted with the projects above
    with pytest.raises(TenantRequiredError):
        await Project.objects.acount()
    with pytest.raises(TenantRequiredError):
        [p async for p in Project.objects.all()]
    assert [p.name async for p in Project.unscoped.all()] == ["Dome"]


@pytest.mark.django_db(transaction=True)
async def test_200_concurrent_tasks_over_10_tenants_read_back_only_their_own_rows(
    close_async_connections,
):
    tenant_ids = [f"tenant-{n}" for n in range(10)]
    for tenant_id in tenant_ids:
        await asyncio.to_thread(_register_with_rows, tenant_id)

    async def worker(n: int) -> None:
        tenant_id = tenant_ids[n % 10]
        async with tenancy.aswitch(tenant_id):
            await Project.objects.acreate(name=f"{tenant_id}/task-{n}")
            await asyncio.sleep(0)  # let the other tasks run between write and read
            seen = [p.name async for p in Project.objects.all()]
            assert seen, "a tenant must see its own rows"
            foreign = [name for name in seen if not name.startswith(f"{tenant_id}/")]
            assert foreign == [], f"{tenant_id} saw rows of other tenants: {foreign[:3]}"
            assert f"{tenant_id}/task-{n}" in seen
            assert await Task.objects.exclude(title__startswith=f"{tenant_id}/").acount() == 0

    await asyncio.gather(*(worker(n) for n in range(200)))
    for tenant_id in tenant_ids:
        async with tenancy.aswitch(tenant_id):
            assert await Project.objects.acount() == 1 + 20


def _register_with_rows(tenant_id: str) -> None:
    tenancy.register_tenant(tenant_id, tenant_id.title())
    with tenancy.switch(tenant_id):
        project = Project.objects.create(name=f"{tenant_id}/seed")
        Task.objects.create(project=project, title=f"{tenant_id}/seed task")
    from django.db import connection as thread_connection

    thread_connection.close()


def test_querysets_are_tenant_scoped_querysets():
    assert isinstance(Project.objects.all(), TenantScopedQuerySet)
    assert not hasattr(Project.objects, "delete"), "Model.objects.delete() must stay impossible"


@pytest.mark.parametrize(
    ("tenant_id", "error"),
    [("default", TenantRequiredError), ("ghost", TenantNotRegisteredError)],
)
def test_a_context_bag_without_a_registered_tenant_is_refused_before_any_scoped_sql(
    scoped_rows, tenant_id, error
):
    """``default`` means no tenant, an unregistered id is no tenant: refused, never [] or a 500."""
    table = Project._meta.db_table
    calls = {
        "all": lambda: list(Project.objects.all()),
        "count": lambda: Project.objects.count(),
        "get": lambda: Project.objects.get(name="Rocket"),
        "create": lambda: Project.objects.create(name="Nowhere"),
        "bulk_create": lambda: Project.objects.bulk_create([Project(name="Nowhere")]),
        "update": lambda: Project.objects.update(name="Moved"),
        "delete": lambda: Project.objects.all().delete(),
        "raw": lambda: list(Project.objects.raw(f"SELECT * FROM {table}")),
    }
    with tenancy.Context(tenant_id=tenant_id), CaptureQueriesContext(connection) as queries:
        for name, call in calls.items():
            with pytest.raises(error):
                call()
                pytest.fail(f"{name} ran")  # pragma: no cover
    # At most the registry's one cold lookup of the id, never a query of the scoped table.
    assert all(table not in q["sql"] for q in queries.captured_queries), queries.captured_queries
    assert len(queries.captured_queries) <= 1
    assert Project.unscoped.filter(name__in=["Nowhere", "Moved"]).count() == 0


def test_raw_through_a_scoped_manager_needs_a_tenant(scoped_rows):
    with pytest.raises(TenantRequiredError):
        Project.objects.raw(f"SELECT * FROM {Project._meta.db_table}")
    assert len(list(Project.unscoped.raw(f"SELECT * FROM {Project._meta.db_table}"))) == 3


def test_an_inactive_tenants_rows_stay_reachable_through_a_context_bag(scoped_rows):
    """Documented decision: trusted code (the admin, maintenance) may bind an inactive tenant."""
    tenancy.deactivate_tenant("globex")
    with tenancy.Context(tenant_id="globex"):
        assert names(Project.objects.all()) == ["Dome"]
        Project.objects.create(name="Archive")
    with pytest.raises(tenancy.TenantInactiveError):
        with tenancy.switch("globex"):
            pass  # pragma: no cover


def test_the_warm_bound_tenant_costs_no_extra_query(scoped_rows, django_assert_num_queries):
    with tenancy.switch("acme"):
        with django_assert_num_queries(1):
            assert Project.objects.count() == 2
    with tenancy.Context(tenant_id="acme"):
        with django_assert_num_queries(1):  # acme's state is cached: no lookup
            assert Project.objects.count() == 2
        with django_assert_num_queries(1):
            assert Project.objects.filter(name="Rocket").count() == 1
