"""Write guards of tenant-scoped rows: whose tenant a row is, and what it may reference.

Three rules hold on every write path (``save()``, ``bulk_create()``,
``bulk_update()``, ``update()``, related managers), scoped or unscoped:

- inside a tenant block a row is written in that tenant only; outside any
  tenant (maintenance code) a row must name its tenant;
- a row read from the database never moves to another tenant;
- a row never references (foreign key, one-to-one) a row of another tenant, so
  ``select_related()`` and ``row.parent`` can never cross tenants.

Every refusal raises ``TenantAccessDenied`` (or ``TenantRequiredError``) before
anything is written, but one: a foreign key set from an expression is computed
by the database, so ``update()`` proves it after the write, inside a savepoint
that a refusal rolls back (:func:`prove_update_references`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from django.db import models, router
from django.db.models import NOT_PROVIDED, F

from .current import bind, reset_context
from .exceptions import TenantAccessDenied, TenantRequiredError
from .registry import bound_tenant_id, require_tenant_id
from .rls import bypass_if_on

# The rows these guards see are TenantScopedModel instances (tenant-scoped models
# carry ``tenant_scoped = True``); this module sits below the models.
ScopedRow = Any

__all__ = [
    "check_hand_built_row",
    "check_references",
    "check_row_delete",
    "check_row_read",
    "check_row_tenant",
    "check_update_references",
    "moved_error",
    "prove_update_references",
    "remember_db_state",
    "row_tenant_bound",
    "scoped_references",
]


def moved_error(verbose_name: Any) -> TenantAccessDenied:
    """Return the error for an attempt to move rows to another tenant."""
    return TenantAccessDenied(
        f"A {verbose_name} never moves to another tenant; it was not written. "
        "Create the row again inside the other tenant instead."
    )


def remember_db_state(instance: Any) -> None:
    """Record the tenant and references *instance* has in the database (loaded or saved)."""
    data = instance.__dict__
    names = ["tenant_id", *(f.attname for f in scoped_references(type(instance)))]
    instance._tenancy_db_state = {name: data[name] for name in names if name in data}


def check_row_tenant(instance: ScopedRow) -> None:
    """Fill *instance*'s tenant from the context, or refuse a row of another tenant.

    Without a bound tenant, a row must name its tenant explicitly (maintenance
    code working through ``unscoped``); with one, the row must belong to it.
    A row read from the database never changes tenant.
    """
    current = bound_tenant_id()
    row_tenant = instance.tenant_id
    stored = getattr(instance, "_tenancy_db_state", {}).get("tenant_id")
    if stored is not None and row_tenant != stored:
        raise moved_error(instance._meta.verbose_name)
    if current is None:
        if not row_tenant:
            raise TenantRequiredError()
        return
    if not row_tenant:
        instance.tenant_id = current
    elif row_tenant != current:
        raise _not_yours(instance, current, "written")


_REFERENCES: dict[Any, tuple[models.ForeignKey, ...]] = {}


def scoped_references(model: Any) -> tuple[models.ForeignKey, ...]:
    """Return *model*'s foreign keys (and one-to-ones) to tenant-scoped models."""
    found = _REFERENCES.get(model)
    if found is None:
        found = _REFERENCES[model] = tuple(
            field
            for field in model._meta.concrete_fields
            if isinstance(field, models.ForeignKey)
            and field.name != "tenant"
            and getattr(field.related_model, "tenant_scoped", False)
        )
    return found


def _key(field: models.ForeignKey, value: Any) -> Any:
    # A related row or its id, normalised the way the target column stores it
    # ("5" and 5 are one row).
    if isinstance(value, models.Model):
        value = getattr(value, field.target_field.attname)
    return field.target_field.to_python(value)


def _target_tenants(
    field: models.ForeignKey,
    values: Iterable[Any],
    using: str,
) -> dict[Any, str]:
    """Return ``{target key: tenant id}`` for rows referenced by *values* (instances or ids)."""
    found: dict[Any, str] = {}
    ids = set()
    for value in values:
        if isinstance(value, models.Model):
            found[_key(field, value)] = value.tenant_id  # type: ignore[attr-defined]
        else:
            ids.add(_key(field, value))
    ids.difference_update(found)
    if ids:
        target = field.target_field.attname
        rows: models.QuerySet[Any] = models.QuerySet(field.related_model, using=using)
        rows = rows.filter(**{f"{target}__in": ids})
        with bypass_if_on():  # another tenant's row must be seen to be refused
            found.update(rows.values_list(target, "tenant_id"))
    return found


def _cross_reference(model: type[models.Model], field: Any) -> TenantAccessDenied:
    return TenantAccessDenied(
        f"A {model._meta.verbose_name} cannot reference a {field.related_model._meta.verbose_name} "
        f"of another tenant ({field.name}); it was not written."
    )


def check_references(
    objs: Iterable[Any], fields: Iterable[str] | None = None, using: str | None = None
) -> tuple[models.ForeignKey, ...]:
    """Refuse rows whose foreign keys point at rows of another tenant.

    A related instance already held is checked without a query; a bare id costs
    one query per foreign key (per batch); an id unchanged since the row was
    read is not checked again. A key set to an expression (``bulk_update()``
    accepts ``F()`` and friends) cannot be checked before the write: those
    fields are returned, for :func:`prove_update_references` after it.
    """
    objs = list(objs)
    if not objs:
        return ()
    model = type(objs[0])
    unproven: list[models.ForeignKey] = []
    wanted = None if fields is None else set(fields)
    using = using or router.db_for_write(model)
    for field in scoped_references(model):
        if wanted is not None and field.name not in wanted and field.attname not in wanted:
            continue
        pending: list[tuple[Any, Any]] = []
        for obj in objs:
            if field.is_cached(obj):
                value = field.get_cached_value(obj)
            else:
                value = obj.__dict__.get(field.attname)
                stored = getattr(obj, "_tenancy_db_state", {})
                if field.attname in stored and stored[field.attname] == value:
                    continue  # read from the database like this: already consistent
            if hasattr(value, "resolve_expression"):
                if field not in unproven:
                    unproven.append(field)
            elif value is not None:
                pending.append((obj, value))
        if not pending:
            continue
        tenants = _target_tenants(field, [value for _, value in pending], using)
        for obj, value in pending:
            target = tenants.get(_key(field, value))
            if target is not None and target != obj.tenant_id:
                raise _cross_reference(model, field)
    return tuple(unproven)


def check_update_references(
    queryset: Any, values: Mapping[str, Any]
) -> tuple[models.ForeignKey, ...]:
    """Refuse ``queryset.update(fk=row)`` when *row* is of another tenant than the rows updated.

    A plain value (a row or an id) is checked before the write. An expression
    (``Value``, ``F()`` arithmetic, ``Cast``, ``Subquery``, ``Case``, a function)
    is computed by the database, row by row, so it cannot be: its foreign keys
    are returned, and the caller writes inside a savepoint and calls
    :func:`prove_update_references` before releasing it.
    """
    model = queryset.model
    unproven: list[models.ForeignKey] = []
    for name, value in values.items():
        field = model._meta.get_field(name)
        if field not in scoped_references(model) or value is None:
            continue
        if hasattr(value, "resolve_expression"):
            unproven.append(field)
            continue
        target = _target_tenants(field, [value], queryset.db).get(_key(field, value))
        if target is None:
            continue  # no such row: the database's foreign key answers
        if queryset.is_tenant_scoped:
            mismatch = target != require_tenant_id()
        else:
            mismatch = queryset.exclude(tenant_id=target).exists()
        if mismatch:
            raise _cross_reference(model, field)
    return tuple(unproven)


def prove_update_references(queryset: Any, fields: Iterable[models.ForeignKey]) -> None:
    """After an ``update()`` that set *fields* from expressions: refuse any cross-tenant reference.

    Runs inside the caller's savepoint, which rolls the update back when this
    raises. One query per field: does any row (of the bound tenant, for a scoped
    queryset; of every tenant, for ``unscoped``) now reference a row of another
    tenant? Every other write path keeps that answer "no", so a "yes" can only
    come from the update just made.
    """
    model = queryset.model
    rows: models.QuerySet[Any] = models.QuerySet(model, using=queryset.db)
    if queryset.is_tenant_scoped:
        rows = rows.filter(tenant_id=require_tenant_id())
    for field in fields:
        crossed = rows.filter(**{f"{field.attname}__isnull": False}).exclude(
            **{f"{field.name}__tenant_id": F("tenant_id")}
        )
        with bypass_if_on():  # the referenced row of another tenant must be seen
            found = crossed.exists()
        if found:
            raise TenantAccessDenied(
                f"This update() would make a {model._meta.verbose_name} reference a "
                f"{field.related_model._meta.verbose_name} of another tenant ({field.name}); "
                "it was rolled back and nothing was written."
            )


def _not_yours(instance: Any, current: str, what: str) -> TenantAccessDenied:
    return TenantAccessDenied(
        f"This {instance._meta.verbose_name} belongs to another tenant than the current "
        f"tenant {current!r}; it was not {what}."
    )


def check_hand_built_row(instance: Any, using: str | None, force_insert: Any) -> None:
    """Refuse to save a row built by hand with the primary key of another tenant's row.

    Costs one query, only for an instance that was not read from the database
    and whose primary key Django would try to UPDATE.
    """
    if getattr(instance, "_tenancy_db_state", None) is not None or force_insert:
        return
    pk_field = instance._meta.pk
    if instance.pk is None or (
        instance._state.adding
        and (pk_field.has_default() or pk_field.db_default is not NOT_PROVIDED)
    ):
        return  # Django will INSERT: a clash is the database's IntegrityError
    using = using or router.db_for_write(type(instance), instance=instance)
    row_tenant = _stored_tenant(instance, using)
    if row_tenant is not None and row_tenant != instance.tenant_id:
        raise _not_yours(instance, bound_tenant_id() or instance.tenant_id, "written")


def _stored_tenant(instance: Any, using: str) -> str | None:
    """Return the tenant of *instance*'s row in the database (any tenant's), or None."""
    with bypass_if_on():  # another tenant's row must be seen to be refused
        return (
            models.QuerySet(type(instance), using=using)
            .filter(pk=instance.pk)
            .values_list("tenant_id", flat=True)
            .first()
        )


def check_row_read(instance: Any) -> None:
    """Refuse to reload a row of another tenant than the bound one (``refresh_from_db``)."""
    current = bound_tenant_id()
    stored = getattr(instance, "_tenancy_db_state", {}).get("tenant_id", instance.tenant_id)
    if current is not None and stored is not None and stored != current:
        raise _not_yours(instance, current, "read")


def check_row_delete(instance: Any, using: str | None) -> None:
    """Refuse to delete a row of another tenant than the bound one.

    A row built by hand with a primary key (not read from the database) is
    looked up once: the database's ``tenant_id`` decides, not the instance's.
    """
    current = bound_tenant_id()
    row_tenant = getattr(instance, "_tenancy_db_state", {}).get("tenant_id")
    if row_tenant is None:
        using = using or router.db_for_write(type(instance), instance=instance)
        row_tenant = _stored_tenant(instance, using)
        if row_tenant is None:
            return  # no such row: nothing will be deleted
        if row_tenant != instance.tenant_id:
            raise _not_yours(instance, current or instance.tenant_id, "deleted")
    if current is not None and row_tenant != current:
        raise _not_yours(instance, current, "deleted")


@contextmanager
def row_tenant_bound(instance: ScopedRow) -> Iterator[None]:
    """Run Django's validation of *instance* in the row's own tenant.

    Unique and constraint checks query the scoped ``_default_manager``. Inside a
    tenant, a new row gets the tenant ``save()`` would give it; outside any tenant
    (the admin), the row's tenant is bound for the checks only.
    """
    current = bound_tenant_id()
    if current is not None or not instance.tenant_id:
        if current is not None and not instance.tenant_id:
            instance.tenant_id = current
        yield
        return
    token = bind({"tenant_id": instance.tenant_id})
    try:
        yield
    finally:
        reset_context(token)
