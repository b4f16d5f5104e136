"""Foreign keys of tenant-scoped rows, followed lazily: a hand-set key is read in the tenant only.

A row read from the database references rows of its own tenant (the write
guards keep it so), and ``row.parent`` follows the key through the base
manager, in any tenant and outside all of them, as Django does. A key set by
hand (an unsaved row built in code, or a loaded row whose key was changed) has
not been checked yet: it is followed within the bound tenant only, or outside
any tenant within the row's own tenant, so it can never read another tenant's
row (``DoesNotExist``, as for a missing row).
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.fields.related_descriptors import (
    ForwardManyToOneDescriptor,
    ForwardOneToOneDescriptor,
)

from .exceptions import TenantRequiredError
from .registry import bound_tenant_id

__all__ = ["install_scoped_descriptors"]


class _ScopedForwardMixin:
    field: Any

    def get_object(self, instance: Any) -> Any:
        if getattr(self.field.related_model, "tenant_scoped", False) and _set_by_hand(
            instance, self.field
        ):
            tenant_id = bound_tenant_id() or instance.tenant_id
            if not tenant_id:
                raise TenantRequiredError()
            rows: models.QuerySet[Any] = self.get_queryset(instance=instance)  # type: ignore[attr-defined]
            return rows.filter(tenant_id=tenant_id).get(
                self.field.get_reverse_related_filter(instance)
            )
        return super().get_object(instance)  # type: ignore[misc]


def _set_by_hand(instance: Any, field: Any) -> bool:
    stored = getattr(instance, "_tenancy_db_state", None)
    if stored is None:
        return True  # never read from or saved to the database
    return stored.get(field.attname) != instance.__dict__.get(field.attname)


class ScopedForwardManyToOneDescriptor(_ScopedForwardMixin, ForwardManyToOneDescriptor):
    """``row.parent`` of a tenant-scoped row's foreign key."""


class ScopedForwardOneToOneDescriptor(_ScopedForwardMixin, ForwardOneToOneDescriptor):
    """``row.parent`` of a tenant-scoped row's one-to-one field."""


_REPLACED = {
    ForwardManyToOneDescriptor: ScopedForwardManyToOneDescriptor,
    ForwardOneToOneDescriptor: ScopedForwardOneToOneDescriptor,
}


def install_scoped_descriptors(model: type[models.Model]) -> None:
    """Give *model*'s own foreign keys the descriptors above (Django's stock ones only)."""
    for field in model._meta.local_fields:
        descriptor = model.__dict__.get(field.name)
        replacement = _REPLACED.get(type(descriptor))  # type: ignore[arg-type]
        if replacement is not None:
            setattr(model, field.name, replacement(field))
