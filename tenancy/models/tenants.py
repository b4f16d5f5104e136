"""Tenants and memberships: who the tenants are and which users act in them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from ..ids import TENANT_ID_MAX_LENGTH, is_valid_tenant_id, validate_tenant_id

__all__ = ["Tenant", "TenantMembership"]


def _validate_tenant_id_field(value: Any) -> None:
    if not is_valid_tenant_id(value):
        try:
            validate_tenant_id(value)
        except Exception as exc:  # InvalidTenantIdError, shown as a form error
            raise ValidationError(str(exc), code="invalid_tenant_id") from exc


def _validate_metadata(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValidationError(
            _('Metadata must be a JSON object, like {"plan": "pro"}.'), code="invalid_metadata"
        )


class Tenant(models.Model):
    """A tenant: the unit of isolation. ``tenant_id`` is its public key."""

    tenant_id = models.CharField(
        _("tenant id"),
        max_length=TENANT_ID_MAX_LENGTH,
        unique=True,
        validators=[_validate_tenant_id_field],
        help_text=_("Lowercase slug: letters, digits, '-' and '_'; at most 63 characters."),
    )
    name = models.CharField(_("name"), max_length=200)
    active = models.BooleanField(_("active"), default=True, db_index=True)
    metadata = models.JSONField(
        _("metadata"), default=dict, blank=True, validators=[_validate_metadata]
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        ordering = ["tenant_id"]
        verbose_name = _("tenant")
        verbose_name_plural = _("tenants")

    def __str__(self) -> str:
        return f"{self.name} ({self.tenant_id})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        validate_tenant_id(self.tenant_id)
        if not isinstance(self.metadata, dict):
            raise ValidationError({"metadata": _("Metadata must be a JSON object.")})
        super().save(*args, **kwargs)


class TenantMembership(models.Model):
    """Which users may act in which tenant, and in which role."""

    class Role(models.TextChoices):
        OWNER = "owner", _("owner")
        ADMIN = "admin", _("admin")
        MEMBER = "member", _("member")

    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.CASCADE,
        to_field="tenant_id",
        related_name="memberships",
        verbose_name=_("tenant"),
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="tenant_memberships",
        verbose_name=_("user"),
    )
    role = models.CharField(_("role"), max_length=20, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="tenancy_membership_unique")
        ]
        verbose_name = _("tenant membership")
        verbose_name_plural = _("tenant memberships")

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant_id} ({self.role})"
