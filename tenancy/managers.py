"""Managers and querysets of tenant-scoped models: the current tenant's rows, and nothing else.

Every queryset made by ``objects`` carries the condition ``tenant_id = <current
tenant>``, where the tenant is read from the context when the SQL is compiled,
that is when the query runs, not when the queryset is built. So:

- a queryset built at import time (a DRF ``queryset`` attribute, a form
  field's choices) runs against the tenant of the request that uses it;
- subqueries (``__in=``, ``Subquery``, ``Exists``), ``union()``, related
  managers (``project.tasks``) and ``prefetch_related`` are scoped the same way;
- running one while no tenant is bound raises ``TenantRequiredError``;
- rows a queryset cached while one tenant was bound are never handed out while
  another one is (``TenantAccessDenied``).

``objects.unscoped()`` and the ``unscoped`` manager are the explicit escape
hatch: no tenant condition at all. ``raw()`` SQL is never scoped by the ORM.
With ``TENANCY["ROW_LEVEL_SECURITY"]`` on, PostgreSQL scopes every statement
as well (:mod:`tenancy.rls`), and unscoped querysets run theirs in
:class:`tenancy.rls.bypass`.

Writes are checked whichever manager makes them (see :mod:`tenancy.models`): a
row is written in its own tenant only, never moves to another tenant, and never
references a row of another tenant.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from django.db import models, transaction
from django.db.models import Q
from django.db.models.sql import Query

from .conf import tenancy_settings
from .exceptions import TenantAccessDenied
from .guards import (
    check_references,
    check_row_tenant,
    check_update_references,
    moved_error,
    prove_update_references,
    remember_db_state,
)
from .registry import bound_tenant_id, require_tenant_id
from .rls import bypass, bypass_if_on

__all__ = ["CurrentTenant", "TenantScopedManager", "TenantScopedQuerySet", "UnscopedManager"]

_TENANT_FIELDS = frozenset({"tenant", "tenant_id"})
_NO_BLOCK = nullcontext()


def _each_bypassed(rows: Iterator[Any]) -> Iterator[Any]:
    # Each step of a lazy iterator may run SQL: each runs in its own bypass block.
    while True:
        with bypass():
            try:
                row = next(rows)
            except StopIteration:
                return
        yield row


class CurrentTenant(models.Expression):
    """SQL value: the tenant bound when the query is compiled (``TenantRequiredError`` if none)."""

    output_field = models.CharField()

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        # none() needs no tenant: its query never reaches the database.
        tenant_id = "" if compiler.query.is_empty() else require_tenant_id()
        # Compiled like Value(), so the parameters have the type this Django expects.
        return compiler.compile(models.Value(tenant_id, output_field=self.output_field))

    def __repr__(self) -> str:
        return "CurrentTenant()"


class TenantScopedQuerySet(models.QuerySet):
    """A queryset of the current tenant's rows (or, from ``unscoped()``, of every row)."""

    def __init__(
        self,
        model: type[models.Model] | None = None,
        query: Query | None = None,
        using: str | None = None,
        hints: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model, query, using, hints)
        # Made from scratch (by a manager): scoped. Clones copy the flag in _clone();
        # unscoped() passes an explicit, unfiltered query.
        self._tenant_scoped = model is not None and query is None
        self._cached_for: str | None = None
        # Set by bulk_update() for the update() calls it makes, whose values it checked.
        self._references_checked = False
        if self._tenant_scoped:
            self.query.add_q(Q(tenant_id=CurrentTenant()))

    @property
    def is_tenant_scoped(self) -> bool:
        """True unless this queryset came from ``unscoped()``."""
        return self._tenant_scoped

    def _sql_block(self) -> AbstractContextManager[Any]:
        """The block this queryset's SQL runs in: :class:`~tenancy.rls.bypass` when unscoped."""
        return _NO_BLOCK if self._tenant_scoped else bypass_if_on()

    def _clone(self) -> TenantScopedQuerySet:
        clone = super()._clone()  # type: ignore[misc]
        clone._tenant_scoped = self._tenant_scoped
        clone._references_checked = self._references_checked
        return clone

    # -- reads: results cached under one tenant stay in that tenant ------------

    def _check_cached(self) -> None:
        owner = self._cached_for
        if owner is None:  # not scoped, or filled by prefetch_related for held rows
            return
        current = require_tenant_id()
        if current != owner:
            raise TenantAccessDenied(
                f"These {self.model._meta.verbose_name_plural} were read in tenant {owner!r}; "
                f"they are not shown in tenant {current!r}. Query them again."
            )

    def _fetch_all(self) -> None:
        if self._tenant_scoped and self._result_cache is None:
            tenant_id = bound_tenant_id() if self.query.is_empty() else require_tenant_id()
            super()._fetch_all()
            self._cached_for = tenant_id
            return
        if self._result_cache is not None:
            self._check_cached()
        with self._sql_block():
            super()._fetch_all()

    def iterator(self, chunk_size: int | None = None) -> Iterator[Any]:
        rows = super().iterator(chunk_size)
        if self._tenant_scoped or not tenancy_settings.ROW_LEVEL_SECURITY:
            return rows
        return _each_bypassed(rows)

    def __getitem__(self, k: Any) -> Any:
        if self._result_cache is not None:
            self._check_cached()
        return super().__getitem__(k)

    def count(self) -> int:
        if self._result_cache is not None:
            self._check_cached()
        with self._sql_block():
            return super().count()

    def exists(self) -> bool:
        if self._result_cache is not None:
            self._check_cached()
        with self._sql_block():
            return super().exists()

    def contains(self, obj: models.Model) -> bool:
        if self._result_cache is not None:
            self._check_cached()
        with self._sql_block():
            return super().contains(obj)

    def aggregate(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        with self._sql_block():
            return super().aggregate(*args, **kwargs)

    def explain(self, *, format: Any = None, **options: Any) -> str:
        with self._sql_block():
            return super().explain(format=format, **options)

    def raw(
        self, raw_query: Any, params: Any = (), translations: Any = None, using: Any = None
    ) -> Any:
        """Plain SQL, never scoped; through a scoped manager it still needs a bound tenant."""
        if self._tenant_scoped:
            require_tenant_id()
        return super().raw(raw_query, params, translations, using)

    # -- writes -------------------------------------------------------------------

    def _writable(self) -> None:
        # Before Django opens a transaction or savepoint: a scoped write needs a tenant.
        if self._tenant_scoped:
            require_tenant_id()

    def create(self, **kwargs: Any) -> Any:
        self._writable()
        return super().create(**kwargs)

    create.alters_data = True  # type: ignore[attr-defined]

    def get_or_create(self, defaults: Any = None, **kwargs: Any) -> tuple[Any, bool]:
        self._writable()
        return super().get_or_create(defaults, **kwargs)

    get_or_create.alters_data = True  # type: ignore[attr-defined]

    def update_or_create(
        self, defaults: Any = None, create_defaults: Any = None, **kwargs: Any
    ) -> tuple[Any, bool]:
        self._writable()
        return super().update_or_create(defaults, create_defaults, **kwargs)

    update_or_create.alters_data = True  # type: ignore[attr-defined]

    def bulk_create(self, objs: Iterable[Any], *args: Any, **kwargs: Any) -> list[Any]:
        self._writable()
        objs = list(objs)
        for obj in objs:
            check_row_tenant(obj)
        check_references(objs, using=self.db)
        with self._sql_block():
            created = super().bulk_create(objs, *args, **kwargs)
        for obj in created:
            remember_db_state(obj)
        return created

    bulk_create.alters_data = True  # type: ignore[attr-defined]

    def bulk_update(self, objs: Iterable[Any], fields: Iterable[str], *args: Any, **kw: Any) -> int:
        self._writable()
        objs, fields = list(objs), list(fields)
        if _TENANT_FIELDS.intersection(fields):
            raise moved_error(self.model._meta.verbose_name)
        for obj in objs:
            check_row_tenant(obj)
        if check_references(objs, fields, using=self.db):
            # Expressions among the values: update() proves what the database wrote, and
            # this savepoint (Django's own block has none) undoes every batch on a refusal.
            with transaction.atomic(using=self.db), self._sql_block():
                return super().bulk_update(objs, fields, *args, **kw)
        checked = self._clone()
        checked._references_checked = True
        with self._sql_block():
            return super(TenantScopedQuerySet, checked).bulk_update(objs, fields, *args, **kw)

    bulk_update.alters_data = True  # type: ignore[attr-defined]

    def update(self, **kwargs: Any) -> int:
        self._writable()
        if _TENANT_FIELDS.intersection(kwargs):
            raise moved_error(self.model._meta.verbose_name)
        if self._references_checked:
            with self._sql_block():
                return super().update(**kwargs)
        unproven = check_update_references(self, kwargs)
        if not unproven:
            with self._sql_block():
                return super().update(**kwargs)
        # Keys computed by the database: write, prove, and roll back on a cross reference.
        with transaction.atomic(using=self.db), self._sql_block():
            updated = super().update(**kwargs)
            prove_update_references(self, unproven)
        return updated

    update.alters_data = True  # type: ignore[attr-defined]

    def delete(self) -> tuple[int, dict[str, int]]:
        self._writable()
        with self._sql_block():
            return super().delete()

    # Like Django's: never copied to the manager, so Model.objects.delete() stays impossible.
    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]


class TenantScopedManager(models.Manager.from_queryset(TenantScopedQuerySet)):  # type: ignore[misc]
    """Default manager: the current tenant's rows; ``TenantRequiredError`` without a tenant."""

    def unscoped(self) -> TenantScopedQuerySet:
        """Return every row of every tenant: the explicit escape hatch for admin and maintenance."""
        queryset: TenantScopedQuerySet = self._queryset_class(
            model=self.model, query=Query(self.model), using=self._db, hints=self._hints
        )
        return queryset


class UnscopedManager(TenantScopedManager):
    """Every row of every tenant, for admin and maintenance code (also the base manager)."""

    def get_queryset(self) -> TenantScopedQuerySet:
        return self.unscoped()
