"""System checks (settings, middleware order) and the lazily read TENANCY settings."""

from __future__ import annotations

import pytest
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from django.test.utils import isolate_apps

from tenancy.checks import check_middleware, check_settings
from tenancy.conf import DEFAULTS, tenancy_settings
from tenancy.middleware import TenantContextMiddleware


def ids(messages):
    return sorted(m.id for m in messages)


# Django 6.x runs model checks against every database by default (JSONField's
# asks the connection whether it supports JSON): `check` may query the database.
@pytest.mark.django_db
def test_default_settings_pass():
    assert check_settings() == []
    call_command("check")


@pytest.mark.parametrize(
    ("tenancy", "expected"),
    [
        ("not a dict", ["tenancy.E001"]),
        ({"TENANT_HEADER": "X Tenant"}, ["tenancy.E002"]),
        ({"REQUEST_ID_HEADER": ""}, ["tenancy.E002"]),
        ({"CACHE_ALIAS": "nope"}, ["tenancy.E003"]),
        ({"RESOLVERS": []}, ["tenancy.E004"]),
        ({"RESOLVERS": ["tenancy.resolvers.NoSuchResolver"]}, ["tenancy.E004"]),
        ({"RESERVED_TENANT_IDS": ["public"]}, ["tenancy.E005"]),
        ({"CACHE_TIMEOUT": 0}, ["tenancy.E006"]),
        ({"STATS_FLUSH_INTERVAL": "10"}, ["tenancy.E006"]),
        ({"RUNTIME_DEFAULTS": None}, ["tenancy.E007"]),
        ({"MEMORY_MAX_INSTANCES": 0}, ["tenancy.E008"]),
        ({"LOCAL_CACHE_SIZE": 0}, ["tenancy.E008"]),
        ({"LOCAL_CACHE_SIZE": 1.5}, ["tenancy.E008"]),
        ({"STATE_RECHECK_INTERVAL": 0}, ["tenancy.E006"]),
        ({"CACHE_RETRY_INTERVAL": -1}, ["tenancy.E006"]),
        ({"OUTAGE_LOG_INTERVAL": None}, ["tenancy.E006"]),
        ({"UNIFORM_DENIAL": "yes"}, ["tenancy.E011"]),
        ({"STATS_CACHE_ALIAS": "nope"}, ["tenancy.E015"]),
        ({"STATS_SHARED": "yes"}, ["tenancy.E016"]),
        ({"TENANT_HEADR": "X-Tenant"}, ["tenancy.W001"]),
        ({"RESOLVERS": [123]}, ["tenancy.E004"]),
        ({"RESOLVERS": ["tenancy.resolvers.SubdomainResolver"]}, ["tenancy.E012"]),
        (
            {
                "RESOLVERS": ["tenancy.resolvers.SubdomainResolver"],
                "SUBDOMAIN_BASE_DOMAIN": ["example.com"],
            },
            ["tenancy.E012"],
        ),
        ({"BAGGAGE": "yes", "BAGGAGE_HOSTS": ["billing.internal"]}, ["tenancy.E011"]),
        ({"BAGGAGE_HOSTS": "billing.internal"}, ["tenancy.E013"]),
        ({"CACHE_SHARED_PREFIXES": [""]}, ["tenancy.E013"]),
        ({"BAGGAGE": True}, ["tenancy.W004"]),
        ({"BAGGAGE": True, "BAGGAGE_HOSTS": ["*"]}, ["tenancy.W005"]),
    ],
)
def test_misconfiguration_is_reported_by_a_check(tenancy, expected):
    with override_settings(TENANCY=tenancy):
        messages = check_settings()
        assert ids(messages) == expected
        assert all(m.hint for m in messages)


@pytest.mark.django_db
def test_errors_stop_manage_py_check():
    with override_settings(TENANCY={"CACHE_ALIAS": "nope"}):
        with pytest.raises(SystemCheckError, match=r"tenancy\.E003"):
            call_command("check")


def test_settings_are_read_lazily_and_reload_on_change():
    assert tenancy_settings.TENANT_HEADER == DEFAULTS["TENANT_HEADER"]
    with override_settings(TENANCY={"TENANT_HEADER": "X-Org"}):
        assert tenancy_settings.TENANT_HEADER == "X-Org"
        assert tenancy_settings.CACHE_TIMEOUT == DEFAULTS["CACHE_TIMEOUT"]
    assert tenancy_settings.TENANT_HEADER == "X-Tenant-ID"
    with pytest.raises(AttributeError, match="Invalid TENANCY setting"):
        tenancy_settings.NOT_A_SETTING  # noqa: B018


AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"
OURS = "tenancy.middleware.TenantContextMiddleware"
MEMBERSHIP = {"RESOLVERS": ["tenancy.resolvers.MembershipResolver"]}


class ProjectTenancyMiddleware(TenantContextMiddleware):
    """A project's own subclass: it counts as the tenancy middleware."""


class ProjectAuthMiddleware(AuthenticationMiddleware):
    """A project's own subclass: it counts as AuthenticationMiddleware."""


OUR_SUBCLASS = f"{__name__}.ProjectTenancyMiddleware"
AUTH_SUBCLASS = f"{__name__}.ProjectAuthMiddleware"


def test_test_settings_pass():
    assert check_middleware() == []


@pytest.mark.parametrize(
    ("middleware", "tenancy_settings", "expected"),
    [
        ([SESSIONS, AUTH, OURS], MEMBERSHIP, []),
        ([OURS, SESSIONS, AUTH], MEMBERSHIP, ["tenancy.E009"]),
        ([SESSIONS, OURS], MEMBERSHIP, ["tenancy.E009"]),
        ([OURS, SESSIONS, AUTH], {}, []),  # the header resolver does not read request.user
        # Subclasses count, as in django.contrib.auth's own middleware check.
        ([SESSIONS, AUTH_SUBCLASS, OUR_SUBCLASS], MEMBERSHIP, []),
        ([SESSIONS, OUR_SUBCLASS, AUTH_SUBCLASS], MEMBERSHIP, ["tenancy.E009"]),
        ([SESSIONS, AUTH, OUR_SUBCLASS], MEMBERSHIP, []),
    ],
)
def test_resolvers_reading_the_user_need_the_middleware_after_auth(
    settings, middleware, tenancy_settings, expected
):
    settings.MIDDLEWARE = middleware
    settings.TENANCY = tenancy_settings
    messages = check_middleware()
    assert ids(messages) == expected
    if messages:
        assert "AuthenticationMiddleware" in messages[0].msg and messages[0].hint


@pytest.mark.parametrize("value", ["", None, 3])
def test_access_logger_must_be_a_name(settings, value):
    settings.TENANCY = {"ACCESS_LOGGER": value}
    assert "tenancy.E010" in ids(check_settings())


def test_a_project_without_the_middleware_is_warned(settings):
    settings.MIDDLEWARE = [SESSIONS, AUTH]
    (warning,) = check_middleware()
    assert warning.id == "tenancy.W002"
    assert "TenantContextMiddleware" in warning.hint


def test_a_subclass_of_the_middleware_counts_as_installed(settings):
    settings.MIDDLEWARE = [SESSIONS, AUTH, OUR_SUBCLASS]
    assert check_middleware() == []


def test_installed_models_pass_the_scoped_reference_check():
    from tenancy.checks import check_scoped_references

    assert check_scoped_references() == []


@isolate_apps("tests.testapp")
def test_a_model_not_scoped_with_a_relation_to_a_scoped_model_is_warned():
    from django.db import models

    from tenancy.checks import scoped_reference_warnings
    from tests.testapp.models import Project

    class Leak(models.Model):
        project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
        only = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="+")
        many = models.ManyToManyField(Project, related_name="+")
        name = models.CharField(max_length=10)

        class Meta:
            app_label = "testapp"

    warnings = scoped_reference_warnings([Leak, Project])
    assert [(w.id, w.obj.name) for w in warnings] == [
        ("tenancy.W003", "project"),
        ("tenancy.W003", "only"),
        ("tenancy.W003", "many"),
    ]
    assert "testapp.Leak.project references the tenant-scoped model testapp.Project" in (
        warnings[0].msg
    )
    assert "TenantScopedModel" in warnings[0].hint


@pytest.mark.parametrize(
    ("cache", "expected"),
    [
        ({"BACKEND": "django.core.cache.backends.redis.RedisCache"}, ["tenancy.W006"]),
        (
            {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "OPTIONS": {"socket_timeout": 0.5},
            },
            ["tenancy.W006"],
        ),
        (
            {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
            },
            [],
        ),
        ({"BACKEND": "django_redis.cache.RedisCache"}, ["tenancy.W006"]),
        ({"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}, []),
    ],
)
def test_a_redis_cache_without_socket_timeouts_is_reported(cache, expected):
    with override_settings(CACHES={"default": cache}):
        messages = check_settings()
    assert ids(messages) == expected
    assert all("OPTIONS" in m.hint for m in messages)
