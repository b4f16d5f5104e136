"""The pytest plugin in a project of its own: fixtures, nothing left between tests, a clean exit."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```python\n(.*?)```", re.S)

SETTINGS = """
SECRET_KEY = "plugin-tests"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "rest_framework",
    "tenancy",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tenancy.middleware.TenantContextMiddleware",
]
ROOT_URLCONF = "urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "dev.sqlite3"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# A console handler made while pytest captures stderr, as in most projects.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
}
"""

URLS = """
from django.http import JsonResponse
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

import tenancy
from tenancy.permissions import TenantMember, TenantRequired


def whoami(request):
    return JsonResponse({"tenant": tenancy.get_current_tenant(), "user": request.user.username})


class Members(APIView):
    permission_classes = [TenantRequired, TenantMember]

    def get(self, request):
        return Response({"tenant": tenancy.require_tenant()})


urlpatterns = [path("whoami", whoami), path("members", Members.as_view())]
"""


@pytest.fixture
def project(pytester):
    pytester.makepyfile(settings=SETTINGS, urls=URLS)
    pytester.makeini("[pytest]\nDJANGO_SETTINGS_MODULE = settings\npythonpath = .\n")
    return pytester


def run(project, *args):
    result = project.runpytest_subprocess("--ds=settings", "-p", "no:cacheprovider", "-v", *args)
    output = "\n".join(result.outlines + result.errlines)
    assert "Logging error" not in output, output
    assert "I/O operation on closed file" not in output, output
    return result


REDIS_URL = os.environ.get("CACHE_URL", "") if os.environ.get("CACHE_URL", "").startswith(
    "redis://"
) else ""


@pytest.mark.parametrize(
    "cache",
    [
        "locmem",
        pytest.param(
            "redis",
            marks=[
                pytest.mark.redis,
                pytest.mark.skipif(not REDIS_URL, reason="needs CACHE_URL=redis://..."),
            ],
        ),
    ],
)
def test_a_tenant_registered_in_one_test_is_gone_in_the_next(project, cache):
    if cache == "redis":
        # A cache shared beyond the test's process and transaction.
        project.makepyfile(
            settings=SETTINGS + "CACHES = {'default': {'BACKEND': "
            f"'django.core.cache.backends.redis.RedisCache', 'LOCATION': {REDIS_URL!r}}}}}\n"
        )
    project.makepyfile(
        test_two="""
        import pytest
        import tenancy

        @pytest.mark.django_db
        def test_first_registers_and_switches():
            tenancy.register_tenant("acme", "Acme")
            with tenancy.switch("acme"):
                assert tenancy.get_current_tenant() == "acme"
            assert tenancy.is_tenant_registered("acme")

        @pytest.mark.django_db
        def test_second_does_not_see_it():
            assert not tenancy.is_tenant_registered("acme")
            assert tenancy.list_tenants() == []
            with pytest.raises(tenancy.TenantNotRegisteredError):
                with tenancy.switch("acme"):
                    pass
        """
    )
    result = run(project)
    result.assert_outcomes(passed=2)
    assert result.ret == 0
    # The run ends without writing statistics anywhere else: the settings'
    # own database is never opened (the test database is gone at exit).
    assert not (project.path / "dev.sqlite3").exists()
    assert "statistics events" not in result.stdout.str()


def test_the_fixtures(project):
    project.makepyfile(
        test_fixtures="""
        import pytest
        import tenancy
        from tenancy.models import TenantStatsBucket

        def test_tenant(tenant):
            assert tenant.tenant_id == "tenant-1" and tenant.active
            assert tenancy.is_tenant_active("tenant-1")

        def test_factory(tenant_factory):
            first = tenant_factory()
            paused = tenant_factory("paused", "Paused Inc", active=False, metadata={"plan": "pro"})
            assert first.tenant_id == "tenant-1"
            assert (paused.name, paused.active, dict(paused.metadata)) == (
                "Paused Inc", False, {"plan": "pro"}
            )

        def test_in_tenant(in_tenant):
            assert tenancy.require_tenant() == in_tenant.tenant_id == "tenant-1"

        @pytest.mark.asyncio
        @pytest.mark.django_db(transaction=True)
        async def test_in_tenant_async(in_tenant):
            assert tenancy.get_current_tenant() == "tenant-1"
            async with tenancy.aswitch("tenant-1"):
                assert tenancy.require_tenant() == "tenant-1"

        def test_context_is_clean_after_in_tenant(db):
            assert tenancy.get_current_tenant() is None

        def test_client(tenant_client, tenant_user):
            body = tenant_client.get("/whoami").json()
            assert body == {"tenant": "tenant-1", "user": tenant_user.username}

        def test_api_client(tenant_api_client, tenant_factory):
            assert tenant_api_client.get("/members").json() == {"tenant": "tenant-1"}
            tenant_factory("other")
            refused = tenant_api_client.get("/members", headers={"X-Tenant-ID": "other"})
            assert refused.status_code == 403
            assert refused.json()["code"] == "tenant_access_denied"

        def test_statistics_are_written_in_the_test_database(tenant_client, django_db_blocker):
            from tenancy.stats.flush import flush_stats
            tenant_client.get("/whoami")
            flush_stats()
            assert TenantStatsBucket.objects.get().requests == 1
        """
    )
    result = run(project)
    result.assert_outcomes(passed=8)
    assert "could not write" not in result.stdout.str()
    assert "statistics events" not in result.stdout.str()


def test_counts_with_no_database_to_go_to_are_reported(project):
    project.makepyfile(
        test_counts="""
        from tenancy.stats.counters import counters

        def test_without_database():
            counters.request_done("acme")
        """
    )
    result = run(project)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["tenancy: 1 statistics events were recorded outside*"])


def test_the_plugin_stays_out_of_projects_without_tenancy(pytester):
    pytester.makepyfile(
        settings='SECRET_KEY = "x"\nINSTALLED_APPS = ["django.contrib.contenttypes"]\n',
        test_plain="def test_plain(request):\n"
        "    assert 'tenant' not in request.fixturenames\n",
    )
    pytester.makeini("[pytest]\nDJANGO_SETTINGS_MODULE = settings\npythonpath = .\n")
    result = pytester.runpytest_subprocess("--ds=settings", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "tenancy-fixtures" not in result.stdout.str()


def test_the_examples_of_docs_testing_pass(project):
    """docs/testing.md's tests, in a project with the README's notes app."""
    readme = (ROOT / "README.md").read_text()
    blocks = dict(
        (code.split("\n", 1)[0][2:], code) for code in BLOCK.findall(readme) if code[:2] == "# "
    )
    notes = project.mkpydir("notes")
    (notes / "models.py").write_text(blocks["notes/models.py"])
    (notes / "views.py").write_text(blocks["notes/views.py"])
    project.makepyfile(
        settings=SETTINGS.replace('"tenancy",', '"tenancy",\n    "notes",'),
        urls="from django.urls import path\nfrom notes.views import NoteList\n"
        'urlpatterns = [path("api/notes/", NoteList.as_view())]\n',
    )
    examples = [b for b in BLOCK.findall((ROOT / "docs" / "testing.md").read_text())]
    assert len(examples) == 3 and examples[0].startswith("# tests/test_notes.py")
    project.makepyfile(
        test_notes=examples[0], test_statistics=examples[1], test_async=examples[2]
    )
    result = run(project)
    result.assert_outcomes(passed=5)
