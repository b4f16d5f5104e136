"""The tenant admin: list, search, filters, actions, JSON metadata, memberships, deletion."""

from __future__ import annotations

import json
import re
import time

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext

import tenancy
from tenancy import signals
from tenancy.admin import TenantAdmin
from tenancy.models import Tenant, TenantMembership, TenantStatsBucket
from tenancy.stats.counters import Pending, counters
from tenancy.stats.flush import write_pending
from tests.testapp.models import Project

LIST = "/admin/tenancy/tenant/"
ADD = "/admin/tenancy/tenant/add/"


def change_url(tenant_id: str) -> str:
    return f"/admin/tenancy/tenant/{Tenant.objects.get(tenant_id=tenant_id).pk}/change/"


def delete_url(tenant_id: str) -> str:
    return change_url(tenant_id).replace("/change/", "/delete/")


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def form_data(tenant_id="initech", name="Initech", active=True, metadata="{}", **extra):
    data = {
        "tenant_id": tenant_id,
        "name": name,
        "metadata": metadata,
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
        **extra,
    }
    if active:
        data["active"] = "on"
    return data


@pytest.fixture(autouse=True)
def _fresh_counters():
    counters.take_pending()
    yield
    counters.take_pending()


@pytest.fixture
def staff_client(client, db):
    user = get_user_model().objects.create_user("staff", password="x", is_staff=True)
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def caught():
    """caught(signal) -> list of tenant ids the signal is sent for during the test."""
    connected = []

    def catch(signal):
        seen = []

        def receiver(tenant, **kwargs):
            seen.append(tenant.tenant_id)

        signal.connect(receiver, weak=False)
        connected.append((signal, receiver))
        return seen

    yield catch
    for signal, receiver in connected:
        signal.disconnect(receiver)


def grant(client, *codenames: str) -> None:
    client.user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


# -- list --------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_shows_state_members_and_usage(hour, admin_client, tenants, admin_user):
    tenancy.deactivate_tenant("globex")
    TenantMembership.objects.create(tenant_id="acme", user=admin_user)
    write_pending({("acme", hour - 3600): Pending(7, 5, 2, hour - 10.0)}, using="default")
    with tenancy.switch("acme"):  # pending in this process: shown at once
        counters.request_done("acme", denied=True)

    response = admin_client.get(LIST)
    assert response.status_code == 200
    html = response.content.decode()
    assert '<td class="field-switches">8</td>' in html
    assert '<td class="field-requests">6</td>' in html
    assert re.search(r'<td class="field-denied_requests"><span title="[^"]+">3</span></td>', html)
    assert '<td class="field-members">1</td>' in html
    assert 'class="tenancy-badge tenancy-active">Active<' in html
    assert 'class="tenancy-badge tenancy-inactive">Inactive<' in html
    assert 'href="/admin/tenancy/tenant/statistics/"' in html
    rows = {t.tenant_id: t.usage for t in response.context["cl"].result_list}
    assert rows["globex"].switches == 0 and rows["globex"].last_activity is None


@pytest.mark.django_db
def test_list_makes_the_same_queries_for_2_or_12_tenants(hour, admin_client, tenants, admin_user):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(LIST).status_code == 200
        return len(queries)

    few = count()
    for i in range(10):
        tenancy.register_tenant(f"t{i}", f"Tenant {i}")
        TenantMembership.objects.create(tenant_id=f"t{i}", user=admin_user)
        write_pending({(f"t{i}", hour): Pending(1, 1, 0, hour + 1.0)}, using="default")
    assert count() == few


@pytest.mark.django_db
def test_search_and_filters(hour, admin_client, tenants):
    tenancy.deactivate_tenant("globex")
    write_pending({("acme", hour): Pending(1, 0, 0, time.time())}, using="default")

    def shown(query: str) -> set[str]:
        response = admin_client.get(LIST + query)
        assert response.status_code == 200
        return {t.tenant_id for t in response.context["cl"].result_list}

    assert shown("?q=glob") == {"globex"}
    assert shown("?q=Acme") == {"acme"}
    assert shown("?active__exact=0") == {"globex"}
    assert shown("?activity=24h") == {"acme"}
    assert shown("?activity=never") == {"globex"}
    assert shown("?o=-5") == {"acme", "globex"}  # sorted by switches


# -- actions -----------------------------------------------------------------------


@pytest.mark.django_db
def test_deactivate_and_activate_actions_go_through_the_registry(admin_client, tenants, caught):
    received = caught(signals.tenant_deactivated)
    pks = [str(t.pk) for t in Tenant.objects.all()]
    assert tenancy.is_tenant_active("acme")  # cached as active

    response = admin_client.post(
        LIST, {"action": "deactivate_selected", "_selected_action": pks}, follow=True
    )
    assert "2 tenants were deactivated." in messages_of(response)
    assert not tenancy.is_tenant_active("acme")  # the cache was invalidated
    assert received == ["acme", "globex"]
    with pytest.raises(tenancy.TenantInactiveError):
        tenancy.switch("acme").__enter__()

    response = admin_client.post(
        LIST, {"action": "deactivate_selected", "_selected_action": pks[:1]}, follow=True
    )
    assert "1 tenant was already inactive." in messages_of(response)

    response = admin_client.post(
        LIST, {"action": "activate_selected", "_selected_action": pks}, follow=True
    )
    assert "2 tenants were activated." in messages_of(response)
    assert tenancy.is_tenant_active("acme") and tenancy.is_tenant_active("globex")
    assert LogEntry.objects.filter(change_message="Activated.").count() == 2


@pytest.mark.django_db
def test_a_viewer_cannot_run_state_actions(staff_client, tenants):
    grant(staff_client, "view_tenant")
    response = staff_client.get(LIST)
    assert response.status_code == 200
    assert "deactivate_selected" not in response.content.decode()
    pk = str(Tenant.objects.get(tenant_id="acme").pk)
    staff_client.post(LIST, {"action": "deactivate_selected", "_selected_action": [pk]})
    assert tenancy.is_tenant_active("acme")


# -- form --------------------------------------------------------------------------


@pytest.mark.django_db
def test_add_registers_through_the_registry_with_memberships(admin_client, admin_user, caught):
    registered = caught(signals.tenant_registered)
    data = form_data(
        metadata='{"plan": "pro"}',
        **{
            "memberships-TOTAL_FORMS": "1",
            "memberships-0-user": str(admin_user.pk),
            "memberships-0-role": "owner",
        },
    )
    response = admin_client.post(ADD, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    tenant = Tenant.objects.get(tenant_id="initech")
    assert tenant.metadata == {"plan": "pro"} and tenant.active
    assert registered == ["initech"]
    assert TenantMembership.objects.get(tenant=tenant).role == "owner"


@pytest.mark.django_db
def test_add_inactive_tenant(admin_client):
    assert admin_client.post(ADD, form_data(active=False)).status_code == 302
    assert Tenant.objects.get(tenant_id="initech").active is False
    assert not tenancy.is_tenant_active("initech")


@pytest.mark.parametrize(
    "metadata, error",
    [
        ('{"plan": ', "Enter valid JSON"),
        ('["a", "list"]', "Metadata must be a JSON object"),
        ("42", "Metadata must be a JSON object"),
    ],
)
@pytest.mark.django_db
def test_bad_metadata_is_a_form_error_and_changes_nothing(admin_client, acme, metadata, error):
    response = admin_client.post(
        change_url("acme"), form_data("acme", "Renamed", metadata=metadata)
    )
    assert response.status_code == 200
    assert error in str(response.context["adminform"].form.errors["metadata"])
    shown = response.context["adminform"].form["metadata"].value()
    # The input is shown again for fixing (reindented when it parses).
    assert shown == metadata or json.loads(shown) == json.loads(metadata)
    tenant = Tenant.objects.get(tenant_id="acme")
    assert (tenant.name, tenant.metadata) == ("Acme Corporation", {"plan": "enterprise"})


@pytest.mark.django_db
def test_bad_tenant_id_is_a_form_error(admin_client):
    response = admin_client.post(ADD, form_data(tenant_id="Not A Slug"))
    assert response.status_code == 200
    assert "tenant_id" in response.context["adminform"].form.errors
    response = admin_client.post(ADD, form_data(tenant_id="default"))
    assert "reserved" in str(response.context["adminform"].form.errors["tenant_id"])
    assert not Tenant.objects.exists()


@pytest.mark.django_db
def test_change_form_shows_indented_json_and_saves_state_through_the_registry(
    admin_client, acme, caught
):
    response = admin_client.get(change_url("acme"))
    assert response.status_code == 200
    assert "{\n  &quot;plan&quot;: &quot;enterprise&quot;\n}" in response.content.decode()
    assert "tenant_id" not in response.context["adminform"].form.fields  # read-only

    deactivated = caught(signals.tenant_deactivated)
    data = form_data("acme", "Acme Corp", active=False, metadata='{"plan": "free"}')
    assert admin_client.post(change_url("acme"), data).status_code == 302
    tenant = Tenant.objects.get(tenant_id="acme")
    assert (tenant.name, tenant.active, tenant.metadata) == ("Acme Corp", False, {"plan": "free"})
    assert deactivated == ["acme"]
    assert not tenancy.is_tenant_active("acme")


@pytest.mark.django_db
def test_blank_metadata_saves_an_empty_object(admin_client, acme):
    assert (
        admin_client.post(change_url("acme"), form_data("acme", "Acme", metadata="")).status_code
        == 302
    )
    assert Tenant.objects.get(tenant_id="acme").metadata == {}


# -- deletion ------------------------------------------------------------------------


@pytest.mark.django_db
def test_delete_of_a_tenant_with_data_is_refused(admin_client, tenants):
    with tenancy.switch("acme"):
        Project.objects.create(name="Rocket")
    for method in (admin_client.get, admin_client.post):
        response = method(
            delete_url("acme"), {"post": "yes"} if method == admin_client.post else None
        )
        assert response.status_code == 302
        assert response.url == change_url("acme")
        message = messages_of(response)[-1]
        assert "still owns tenant-scoped rows (testapp.Project)" in message
        assert "nothing was deleted" in message
    assert Tenant.objects.filter(tenant_id="acme").exists()


@pytest.mark.django_db
def test_delete_of_the_current_tenant_is_refused(admin_client, tenants):
    with tenancy.switch("globex"):
        response = admin_client.post(delete_url("globex"), {"post": "yes"})
    assert response.status_code == 302
    assert "is the current tenant" in messages_of(response)[0]
    assert Tenant.objects.filter(tenant_id="globex").exists()


@pytest.mark.django_db
def test_delete_goes_through_unregister(hour, admin_client, tenants, admin_user, caught):
    unregistered = caught(signals.tenant_unregistered)
    TenantMembership.objects.create(tenant_id="globex", user=admin_user)
    write_pending({("globex", hour): Pending(1, 1, 0, 0.0)}, using="default")
    assert admin_client.get(delete_url("globex")).status_code == 200  # confirmation page
    response = admin_client.post(delete_url("globex"), {"post": "yes"})
    assert response.status_code == 302 and response.url == LIST
    assert unregistered == ["globex"]
    assert not Tenant.objects.filter(tenant_id="globex").exists()
    assert not TenantMembership.objects.exists() and not TenantStatsBucket.objects.exists()
    assert not tenancy.is_tenant_registered("globex")


@pytest.mark.django_db
def test_bulk_delete_refuses_all_when_one_has_data(admin_client, tenants):
    with tenancy.switch("acme"):
        Project.objects.create(name="Rocket")
    pks = [str(t.pk) for t in Tenant.objects.all()]
    response = admin_client.post(
        LIST, {"action": "delete_selected", "_selected_action": pks, "post": "yes"}, follow=True
    )
    assert any("testapp.Project" in m for m in messages_of(response))
    assert Tenant.objects.count() == 2


@pytest.mark.django_db
def test_bulk_delete_confirms_then_unregisters(admin_client, tenants):
    pks = [str(t.pk) for t in Tenant.objects.all()]
    confirm = admin_client.post(LIST, {"action": "delete_selected", "_selected_action": pks})
    assert confirm.status_code == 200
    assert "Are you sure" in confirm.content.decode()
    assert Tenant.objects.count() == 2
    response = admin_client.post(
        LIST, {"action": "delete_selected", "_selected_action": pks, "post": "yes"}, follow=True
    )
    assert "2 tenants were deleted." in messages_of(response)
    assert not Tenant.objects.exists()
    assert LogEntry.objects.filter(action_flag=3).count() == 2


# -- permissions ----------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_without_permissions_is_refused_everywhere(staff_client, tenants):
    index = staff_client.get("/admin/")
    assert index.status_code == 200
    assert "/admin/tenancy/" not in index.content.decode()
    assert staff_client.get("/admin/tenancy/").status_code == 404  # Django's answer
    pk = Tenant.objects.get(tenant_id="acme").pk
    for url in (
        LIST,
        ADD,
        f"{LIST}{pk}/change/",
        f"{LIST}{pk}/delete/",
        f"{LIST}statistics/",
        "/admin/tenancy/userruntimecontext/",
    ):
        assert staff_client.get(url).status_code == 403, url
    response = staff_client.post(f"{LIST}{pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert Tenant.objects.count() == 2


@pytest.mark.django_db
def test_every_screen_renders_for_a_superuser(admin_client, tenants):
    pk = Tenant.objects.get(tenant_id="acme").pk
    for url in (
        "/admin/",
        "/admin/tenancy/",
        LIST,
        ADD,
        f"{LIST}{pk}/change/",
        f"{LIST}{pk}/delete/",
        f"{LIST}statistics/",
        "/admin/tenancy/userruntimecontext/",
        "/admin/testapp/project/",
        "/admin/testapp/project/add/",
        "/admin/testapp/task/",
        "/admin/testapp/task/add/",
    ):
        assert admin_client.get(url).status_code == 200, url


# -- tenant-scoped models and runtime contexts ------------------------------------------


@pytest.fixture
def projects(tenants):
    with tenancy.switch("acme"):
        rocket = Project.objects.create(name="Rocket")
    with tenancy.switch("globex"):
        dome = Project.objects.create(name="Dome")
    return {"acme": rocket, "globex": dome}


@pytest.mark.django_db
def test_scoped_admin_lists_every_tenant_with_a_tenant_column_and_filter(admin_client, projects):
    response = admin_client.get("/admin/testapp/project/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<td class="field-tenant_column">acme</td>' in html
    assert '<td class="field-tenant_column">globex</td>' in html
    filtered = admin_client.get("/admin/testapp/project/?tenant__tenant_id__exact=globex")
    assert [p.name for p in filtered.context["cl"].result_list] == ["Dome"]


def task_data(tenant: str, project: Project, title: str = "Launch") -> dict[str, str]:
    return {"tenant": tenant, "project": str(project.pk), "title": title}


@pytest.mark.django_db
def test_scoped_admin_adds_a_row_in_the_chosen_tenant(admin_client, projects):
    from tests.testapp.models import Task

    response = admin_client.post("/admin/testapp/task/add/", task_data("acme", projects["acme"]))
    assert response.status_code == 302
    task = Task.unscoped.get()
    assert (task.tenant_id, task.project_id) == ("acme", projects["acme"].pk)

    # Another tenant bound on the admin request does not leak into the row.
    with tenancy.switch("globex"):
        response = admin_client.post(
            f"/admin/testapp/task/{task.pk}/change/",
            {**task_data("globex", projects["acme"], "Relaunch"), "done": "on"},
        )
    assert response.status_code == 302
    task.refresh_from_db()
    assert (task.tenant_id, task.title, task.done) == ("acme", "Relaunch", True)


@pytest.mark.django_db
def test_scoped_admin_refuses_a_relation_to_another_tenant(admin_client, projects):
    from tests.testapp.models import Task

    response = admin_client.post("/admin/testapp/task/add/", task_data("acme", projects["globex"]))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "belongs to tenant globex, not acme" in str(errors["project"])
    assert not Task.unscoped.exists()


@pytest.mark.django_db
def test_runtime_contexts_are_listed_read_only(admin_client):
    from datetime import timedelta

    from django.utils import timezone

    from tenancy.models import UserRuntimeContext

    now = timezone.now()
    UserRuntimeContext.objects.create(user_uuid="u-fresh", values={"model": "m1"}, last_access=now)
    UserRuntimeContext.objects.create(
        user_uuid="u-stale", scope="acme", last_access=now - timedelta(days=3)
    )
    url = "/admin/tenancy/userruntimecontext/"
    response = admin_client.get(url)
    assert response.status_code == 200
    assert {r.user_uuid for r in response.context["cl"].result_list} == {"u-fresh", "u-stale"}
    active = admin_client.get(url + "?status=active")
    assert [r.user_uuid for r in active.context["cl"].result_list] == ["u-fresh"]
    stale = admin_client.get(url + "?status=stale")
    assert [r.user_uuid for r in stale.context["cl"].result_list] == ["u-stale"]
    assert admin_client.get(url + "add/").status_code == 403
    pk = UserRuntimeContext.objects.get(user_uuid="u-fresh").pk
    assert admin_client.post(f"{url}{pk}/delete/", {"post": "yes"}).status_code == 403
    assert UserRuntimeContext.objects.count() == 2


@pytest.mark.django_db
def test_scoped_admin_change_and_delete_pages_work_without_a_bound_tenant(admin_client, projects):
    pk = projects["globex"].pk
    page = admin_client.get(f"/admin/testapp/project/{pk}/change/")
    assert page.status_code == 200
    assert page.context["adminform"].form.fields["tenant"].disabled
    assert admin_client.get(f"/admin/testapp/project/{pk}/delete/").status_code == 200
    response = admin_client.post(f"/admin/testapp/project/{pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert list(Project.unscoped.values_list("name", flat=True)) == ["Rocket"]


@pytest.mark.django_db
def test_scoped_admin_deletes_rows_of_another_tenant_than_the_requests(admin_client, projects):
    """The admin request resolved to acme (header); deleting globex's rows still works."""
    pk = projects["globex"].pk
    response = admin_client.post(
        f"/admin/testapp/project/{pk}/delete/", {"post": "yes"}, headers={"X-Tenant-ID": "acme"}
    )
    assert response.status_code == 302
    assert not Project.unscoped.filter(pk=pk).exists()
    # and the bulk action, over rows of both tenants
    with tenancy.switch("globex"):
        Project.objects.create(name="Globex two")
    ids = list(Project.unscoped.values_list("pk", flat=True))
    response = admin_client.post(
        "/admin/testapp/project/",
        {"action": "delete_selected", "_selected_action": ids, "post": "yes"},
        headers={"X-Tenant-ID": "acme"},
    )
    assert response.status_code == 302
    assert not Project.unscoped.exists()


# -- usage on the change page, activity on indexed data ---------------------------------


@pytest.mark.django_db
def test_change_page_shows_members_and_24h_and_30d_usage(hour, admin_client, tenants, admin_user):
    TenantMembership.objects.create(tenant_id="acme", user=admin_user, role="owner")
    write_pending(
        {
            ("acme", hour): Pending(3, 2, 1, hour + 5.0, hour + 6.0),
            ("acme", hour - 5 * 24 * 3600): Pending(10, 10, 4, hour - 5 * 24 * 3600 + 1.0),
        },
        using="default",
    )
    with tenancy.switch("acme"):  # pending: shown at once
        pass
    response = admin_client.get(change_url("acme"))
    html = response.content.decode()
    figures = dict(
        re.findall(
            r'<th scope="row">([^<]+)</th><td class="tenancy-num" data-window="24h">(\d+)', html
        )
    )
    assert figures == {"Switches": "4", "Requests": "2", "Denied requests": "1"}
    month = re.findall(r'data-window="30d">(\d+)<', html)
    assert month == ["14", "12", "5"]
    assert admin_user.username in html.split('data-col="members"')[1].split("</td>")[0]
    assert 'href="/admin/tenancy/tenant/statistics/"' in html
    assert 'data-col="last_denied"><time' in html


@pytest.mark.django_db
def test_denied_requests_alone_do_not_make_a_tenant_active(hour, admin_client, tenants):
    tenancy.deactivate_tenant("globex")
    counters.request_done("globex", denied=True)
    write_pending(counters.take_pending(), using="default")
    write_pending({("acme", hour): Pending(1, 0, 0, time.time())}, using="default")
    html = admin_client.get(LIST + "?activity=24h").content.decode()
    assert "Acme" in html and "Globex" not in html
    never = admin_client.get(LIST + "?activity=never").content.decode()
    assert "Globex" in never and "Acme Corporation" not in never
    rows = {t.tenant_id: t.usage for t in admin_client.get(LIST).context["cl"].result_list}
    assert rows["globex"].last_activity is None and rows["globex"].last_denied is not None


@pytest.mark.django_db
def test_list_sorts_by_30_day_usage(hour, admin_client, tenants):
    tenancy.register_tenant("idle", "Idle")
    write_pending({("acme", hour): Pending(1), ("globex", hour): Pending(9)}, using="default")
    switches = 1 + TenantAdmin.list_display.index("switches")
    # The first click sorts top first; the second, bottom first (never used first).
    for order, expected in (
        (str(switches), ["globex", "acme", "idle"]),
        (f"-{switches}", ["idle", "acme", "globex"]),
    ):
        cl = admin_client.get(LIST + f"?o={order}").context["cl"]
        assert [t.tenant_id for t in cl.result_list] == expected, order
