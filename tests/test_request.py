"""tenant_denial() and TENANCY["UNIFORM_DENIAL"]: who is told why a tenant is refused.

With the option on, a caller who is neither a member of the claimed tenant nor
staff gets one body for an unknown, an inactive and (under ``TenantMember``)
someone else's tenant, through the decorators, the DRF permissions and the
middleware alike, so tenant ids cannot be enumerated.
"""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from rest_framework.authtoken.models import Token

import tenancy
from tenancy.exceptions import TenantDeniedError
from tenancy.models import TenantMembership

UNIFORM = override_settings(TENANCY={"STATS_AUTO_FLUSH": False, "UNIFORM_DENIAL": True})
# The decorator, the DRF permission, and a view whose switch() the middleware answers.
PATHS = ["/outage/projects", "/outage/projects-async", "/outage/drf"]


@pytest.fixture
def world(db):
    """acme active, initech inactive, nobody unknown."""
    tenancy.register_tenant("acme", "Acme")
    tenancy.register_tenant("initech", "Initech")
    tenancy.deactivate_tenant("initech")


def send(caller, target, headers, user=None):
    """GET *target* through the caller's path, logged in as *user* when given."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    if caller.mode == "sync":
        client = Client(raise_request_exception=False)
        if user is not None:
            client.force_login(user)
        return client.get(target, headers=headers)

    async def request():
        client = AsyncClient(raise_request_exception=False)
        if user is not None:
            await client.aforce_login(user)
        return await client.get(target, headers=headers)

    return async_to_sync(request)()


@pytest.fixture
def outsider(world):
    user = get_user_model().objects.create_user("outsider", password="pw")
    return user


@pytest.fixture
def member(world):
    user = get_user_model().objects.create_user("member", password="pw")
    TenantMembership.objects.create(tenant_id="initech", user=user)
    TenantMembership.objects.create(tenant_id="acme", user=user)
    return user


@pytest.fixture
def staff(world):
    return get_user_model().objects.create_user("staff", password="pw", is_staff=True)


def refusal(caller, path, tenant_id, user=None, headers=None):
    if path == "switch":
        target, headers = f"/outage/switch/{tenant_id}", dict(headers or {})
    else:
        target, headers = path, {"X-Tenant-ID": tenant_id, **(headers or {})}
    response = send(caller, target, headers, user)
    assert response.status_code == 403, response.content[:300]
    return response.json()


@pytest.mark.parametrize("path", [*PATHS, "switch"])
def test_off_by_default_every_caller_sees_the_precise_reason(caller, world, path):
    assert refusal(caller, path, "nobody")["code"] == "tenant_not_registered"
    assert refusal(caller, path, "initech")["code"] == "tenant_inactive"


@UNIFORM
@pytest.mark.parametrize("path", [*PATHS, "switch"])
def test_anonymous_callers_get_one_body_for_unknown_and_inactive(caller, world, path):
    unknown = refusal(caller, path, "nobody")
    inactive = refusal(caller, path, "initech")
    assert unknown == inactive == TenantDeniedError().as_dict()
    assert unknown["code"] == "tenant_denied"


@UNIFORM
@pytest.mark.parametrize("path", [*PATHS, "switch"])
def test_authenticated_non_members_get_the_same_body(caller, outsider, path):
    unknown = refusal(caller, path, "nobody", outsider)
    assert unknown == refusal(caller, path, "initech", outsider)
    assert unknown["code"] == "tenant_denied"


@UNIFORM
@pytest.mark.parametrize("path", [*PATHS, "switch"])
def test_members_see_that_their_tenant_is_inactive(caller, member, path):
    assert refusal(caller, path, "initech", member)["code"] == "tenant_inactive"
    assert refusal(caller, path, "nobody", member)["code"] == "tenant_denied"


@UNIFORM
@pytest.mark.parametrize("path", [*PATHS, "switch"])
def test_staff_see_the_precise_reason(caller, staff, path):
    assert refusal(caller, path, "nobody", staff)["code"] == "tenant_not_registered"
    assert refusal(caller, path, "initech", staff)["code"] == "tenant_inactive"


@UNIFORM
def test_tenant_member_answers_someone_elses_tenant_like_an_unknown_one(caller, outsider, member):
    token = {"Authorization": f"Token {Token.objects.create(user=outsider).key}"}
    foreign = refusal(caller, "/outage/member", "acme", headers=token)
    unknown = refusal(caller, "/outage/member", "nobody", headers=token)
    inactive = refusal(caller, "/outage/member", "initech", headers=token)
    assert foreign == unknown == inactive == TenantDeniedError().as_dict()
    # Anonymous callers are refused before the tenant is looked at: one answer for all.
    anonymous = [
        caller.get("/outage/member", headers={"X-Tenant-ID": t}) for t in ("acme", "nobody")
    ]
    assert anonymous[0].status_code == anonymous[1].status_code
    assert anonymous[0].json() == anonymous[1].json()
    # A member is served.
    mine = {"Authorization": f"Token {Token.objects.create(user=member).key}"}
    response = caller.get("/outage/member", headers={"X-Tenant-ID": "acme", **mine})
    assert response.status_code == 200 and response.json()["tenant_id"] == "acme"


@UNIFORM
def test_staff_non_members_see_access_denied_under_tenant_member(caller, staff):
    token = {"Authorization": f"Token {Token.objects.create(user=staff).key}"}
    assert (
        refusal(caller, "/outage/member", "acme", headers=token)["code"] == "tenant_access_denied"
    )


@UNIFORM
@pytest.mark.parametrize("path", PATHS)
def test_malformed_and_missing_claims_keep_their_codes(caller, world, path):
    assert refusal(caller, path, "Not A Slug")["code"] == "invalid_tenant_id"
    response = caller.get(path)
    assert response.status_code == 403 and response.json()["code"] == "tenant_required"
