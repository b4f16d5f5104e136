"""The pytest plugin (entry point ``tenancy``): fixtures, and tests that leave nothing behind.

Active where pytest-django is installed and Django is configured. Around every
test it forgets all cached tenant state (:func:`tenancy.testing.reset_caches`),
so a tenant registered in a test whose transaction was rolled back is gone for
the next one. Statistics follow the test's other writes: the counts a test
recorded are written into its database at its end, before the rollback; the
flusher thread and the exit flush are off for the run (the test database is
gone at exit). Counts that had no database to go to are reported in the
terminal summary. Fixtures: ``tenant``, ``tenant_factory``, ``in_tenant``,
``tenant_user``, ``tenant_client``, ``tenant_api_client`` (docs/testing.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

_DB_FIXTURES = frozenset(
    {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback"}
)
_discarded = pytest.StashKey[int]()


def _active(config: pytest.Config) -> bool:
    if not config.pluginmanager.hasplugin("django"):
        return False
    from django.conf import settings

    return settings.configured and "tenancy" in settings.INSTALLED_APPS


def pytest_configure(config: pytest.Config) -> None:
    if not _active(config):
        return
    from .stats.flush import scheduler

    scheduler.background = False
    scheduler.stop()
    config.stash[_discarded] = 0
    config.pluginmanager.register(TenancyFixtures(), "tenancy-fixtures")


class TenancyFixtures:
    """The fixtures and hooks, registered by :func:`pytest_configure` when the plugin is active."""

    @pytest.fixture(autouse=True)
    def _tenancy_reset_caches(self) -> Iterator[None]:
        from .testing import reset_caches

        reset_caches()
        yield
        reset_caches()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, None, None]:
        # Before any fixture is torn down: the test's transaction is still open.
        self._write_statistics(item)
        return (yield)

    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        from .stats.counters import counters

        discarded = config.stash.get(_discarded, 0) + _count(counters.take_pending())
        if discarded:
            terminalreporter.write_line(
                f"tenancy: {discarded} statistics events were recorded outside a database "
                "test and not written (tests that switch tenants use the database)."
            )

    @staticmethod
    def _write_statistics(item: pytest.Item) -> None:
        from .stats.counters import counters
        from .stats.flush import flush_stats

        if not counters.has_pending():
            return
        if not _uses_database(item):
            item.config.stash[_discarded] += _count(counters.take_pending())
            return
        try:
            flush_stats()
        except Exception as exc:
            warnings.warn(
                f"tenancy could not write this test's statistics: {exc!r}",
                pytest.PytestWarning,
                stacklevel=1,
            )
            item.config.stash[_discarded] += _count(counters.take_pending())

    @pytest.fixture
    def tenant_factory(self, db: None) -> Callable[..., Any]:
        """Return ``make(tenant_id=None, name=None, *, active=True, metadata=None)``."""
        from .testing import create_tenant

        made: list[str] = []

        def make(
            tenant_id: str | None = None,
            name: str | None = None,
            *,
            active: bool = True,
            metadata: dict[str, Any] | None = None,
        ) -> Any:
            tenant_id = tenant_id or f"tenant-{len(made) + 1}"
            made.append(tenant_id)
            return create_tenant(tenant_id, name, active=active, metadata=metadata)

        return make

    @pytest.fixture
    def tenant(self, tenant_factory: Callable[..., Any]) -> Any:
        """A registered, active tenant ``tenant-1`` (a ``TenantInfo``)."""
        return tenant_factory()

    @pytest.fixture
    def in_tenant(self, tenant: Any) -> Iterator[Any]:
        """Run the test body switched into ``tenant``."""
        from .registry import switch

        with switch(tenant.tenant_id) as info:
            yield info

    @pytest.fixture
    def tenant_user(self, tenant: Any, django_user_model: Any) -> Any:
        """A user who is a member of ``tenant``."""
        from .models import TenantMembership

        username = {django_user_model.USERNAME_FIELD: f"member-of-{tenant.tenant_id}"}
        user = django_user_model.objects.create_user(**username, password="member-password")  # noqa: S106
        TenantMembership.objects.create(tenant_id=tenant.tenant_id, user=user)
        return user

    @pytest.fixture
    def tenant_client(self, tenant: Any, tenant_user: Any) -> Any:
        """A Django test ``Client`` logged in as ``tenant_user``, sending ``tenant``'s header."""
        from django.test import Client

        client = Client(headers=_tenant_header(tenant))
        client.force_login(tenant_user)
        return client

    @pytest.fixture
    def tenant_api_client(self, tenant: Any, tenant_user: Any) -> Any:
        """A DRF ``APIClient`` authenticated as ``tenant_user``, sending ``tenant``'s header."""
        from rest_framework.test import APIClient

        client = APIClient(headers=_tenant_header(tenant))
        client.force_authenticate(tenant_user)
        return client


def _tenant_header(tenant: Any) -> dict[str, str]:
    from .conf import tenancy_settings

    return {tenancy_settings.TENANT_HEADER: tenant.tenant_id}


def _uses_database(item: pytest.Item) -> bool:
    if getattr(getattr(item, "cls", None), "databases", None):  # a Django TestCase
        return True
    names = set(getattr(item, "fixturenames", ()))
    return bool(names & _DB_FIXTURES) or item.get_closest_marker("django_db") is not None


def _count(pending: dict[Any, Any]) -> int:
    return sum(p.switches + p.requests + p.denied_requests for p in pending.values())
