"""Models: tenants and memberships, the tenant-scoped base, statistics, runtime settings, memory."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.signals import class_prepared
from django.utils.translation import gettext_lazy as _

from .. import guards
from ..conf import tenancy_settings
from ..ids import TENANT_ID_MAX_LENGTH
from ..managers import TenantScopedManager, UnscopedManager
from ..related import install_scoped_descriptors
from ..storage import use_tenant_storage
from .tenants import Tenant, TenantMembership

__all__ = [
    "Conversation",
    "ConversationCollection",
    "Message",
    "Tenant",
    "TenantMembership",
    "TenantScopedModel",
    "TenantStatistics",
    "TenantStatsBatch",
    "TenantStatsBucket",
    "TenantStatsDay",
    "TenantStatsHourTotal",
    "TenantStatsWindow",
    "UserRuntimeContext",
]


class TenantScopedModel(models.Model):
    """Abstract base of models whose rows belong to one tenant.

    ``objects`` only returns rows of the current tenant and raises
    ``TenantRequiredError`` when no tenant is bound; ``unscoped`` (and
    ``objects.unscoped()``) is the explicit escape hatch for admin and
    maintenance code. ``save()`` fills ``tenant`` from the context and refuses
    to write a row of another tenant, to move a row to another tenant, or to
    reference a row of another tenant; ``delete()`` and ``refresh_from_db()``
    refuse rows of another tenant. See :mod:`tenancy.managers` and
    :mod:`tenancy.guards`.

    Subclasses that declare their own ``Meta`` should subclass
    ``TenantScopedModel.Meta``; the base manager stays ``unscoped`` either way.
    """

    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.PROTECT,
        to_field="tenant_id",
        related_name="+",
        editable=False,
        verbose_name=_("tenant"),
    )

    objects = TenantScopedManager()
    unscoped = UnscopedManager()

    #: Marks tenant-scoped models for code that must not import this one (the registry, guards).
    tenant_scoped = True
    #: True: ``unregister_tenant()`` deletes the tenant's rows of this model with it.
    #: False (the default): those rows make it refuse (``TenantHasDataError``).
    deleted_with_tenant = False

    class Meta:
        abstract = True
        base_manager_name = "unscoped"

    def save(self, *args: Any, **kwargs: Any) -> None:
        using = kwargs.get("using")
        guards.check_row_tenant(self)
        guards.check_hand_built_row(self, using, kwargs.get("force_insert"))
        guards.check_references([self], kwargs.get("update_fields"), using)
        if tenancy_settings.ROW_LEVEL_SECURITY:
            # Outside any tenant (maintenance code), PostgreSQL sees the row's own tenant.
            with guards.row_tenant_bound(self):
                super().save(*args, **kwargs)
        else:
            super().save(*args, **kwargs)
        guards.remember_db_state(self)

    save.alters_data = True  # type: ignore[attr-defined]

    def delete(
        self, using: str | None = None, keep_parents: bool = False
    ) -> tuple[int, dict[str, int]]:
        guards.check_row_delete(self, using)
        if tenancy_settings.ROW_LEVEL_SECURITY:
            with guards.row_tenant_bound(self):
                return super().delete(using=using, keep_parents=keep_parents)
        return super().delete(using=using, keep_parents=keep_parents)

    delete.alters_data = True  # type: ignore[attr-defined]

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any, **kwargs: Any) -> Any:
        instance = super().from_db(db, field_names, values, **kwargs)
        guards.remember_db_state(instance)
        return instance

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        guards.check_row_read(self)
        super().refresh_from_db(*args, **kwargs)
        guards.remember_db_state(self)

    def validate_unique(self, exclude: Any = None) -> None:
        with guards.row_tenant_bound(self):
            super().validate_unique(exclude)

    def validate_constraints(self, exclude: Any = None) -> None:
        with guards.row_tenant_bound(self):
            super().validate_constraints(exclude)

    def _do_update(self, base_qs: Any, *args: Any, **kwargs: Any) -> Any:
        # The UPDATE of save() only matches this tenant's row, whatever the checks
        # in save() could not see (a row re-homed by a concurrent transaction).
        if not getattr(base_qs.model, "tenant_scoped", False):
            return super()._do_update(base_qs, *args, **kwargs)
        updated = super()._do_update(base_qs.filter(tenant_id=self.tenant_id), *args, **kwargs)
        if not updated and base_qs.filter(pk=self.pk).exists():
            raise guards.moved_error(self._meta.verbose_name)
        return updated


def _unscoped_base_manager(sender: type[models.Model], **kwargs: Any) -> None:
    # A subclass whose own Meta does not inherit TenantScopedModel.Meta loses
    # base_manager_name; Django's plain base manager would skip the write guards.
    if getattr(sender, "tenant_scoped", False) and sender._meta.base_manager_name is None:
        sender._meta.base_manager_name = "unscoped"
    if getattr(sender, "tenant_scoped", False) and not sender._meta.abstract:
        install_scoped_descriptors(sender)


class_prepared.connect(_unscoped_base_manager, dispatch_uid="tenancy.unscoped_base_manager")


def _tenant_file_storage(sender: type[models.Model], **kwargs: Any) -> None:
    # A scoped row's files are the tenant's too: file fields left on the default
    # storage get its tenant-scoped form (tenancy.storage), with no code in the model.
    if getattr(sender, "tenant_scoped", False) is True:
        use_tenant_storage(sender)


class_prepared.connect(_tenant_file_storage, dispatch_uid="tenancy.tenant_file_storage")


class TenantStatsBucket(models.Model):
    """Usage of one tenant during one hour, summed over every process."""

    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.CASCADE,
        to_field="tenant_id",
        related_name="stats_buckets",
        verbose_name=_("tenant"),
        db_index=False,  # the unique (tenant, hour) index serves every lookup by tenant
    )
    hour = models.DateTimeField(_("hour"), db_index=True)
    switches = models.PositiveBigIntegerField(_("switches"), default=0)
    requests = models.PositiveBigIntegerField(_("requests"), default=0)
    denied_requests = models.PositiveBigIntegerField(_("denied requests"), default=0)
    last_activity = models.DateTimeField(_("last activity"), null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "hour"], name="tenancy_stats_bucket_unique")
        ]
        ordering = ["-hour"]
        verbose_name = _("tenant statistics bucket")
        verbose_name_plural = _("tenant statistics buckets")

    def __str__(self) -> str:
        return f"{self.tenant_id} @ {self.hour:%Y-%m-%d %H}:00"


class TenantStatsBatch(models.Model):
    """A batch of shared counts folded into the buckets: written in the same transaction.

    A batch claimed from the shared cache is identified by the cache's epoch
    (a token that changes if the cache loses its statistics keys) and a
    sequence number. Its row makes a second fold of the same batch (after a
    crash between the commit and the cache cleanup) a no-op.
    """

    epoch = models.CharField(_("epoch"), max_length=32)
    seq = models.PositiveBigIntegerField(_("sequence number"))
    applied_at = models.DateTimeField(_("applied at"), db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["epoch", "seq"], name="tenancy_stats_batch_unique")
        ]
        verbose_name = _("tenant statistics batch")
        verbose_name_plural = _("tenant statistics batches")

    def __str__(self) -> str:
        return f"{self.epoch}:{self.seq}"


class TenantStatsDay(models.Model):
    """Usage of one tenant during one UTC day: the buckets rolled up by the flush."""

    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.CASCADE,
        to_field="tenant_id",
        related_name="stats_days",
        verbose_name=_("tenant"),
        db_index=False,  # the unique (tenant, day) index serves every lookup
    )
    day = models.DateField(_("day"))
    switches = models.PositiveBigIntegerField(_("switches"), default=0)
    requests = models.PositiveBigIntegerField(_("requests"), default=0)
    denied_requests = models.PositiveBigIntegerField(_("denied requests"), default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "day"], name="tenancy_stats_day_unique")
        ]
        ordering = ["-day"]
        verbose_name = _("tenant statistics day")
        verbose_name_plural = _("tenant statistics days")

    def __str__(self) -> str:
        return f"{self.tenant_id} @ {self.day:%Y-%m-%d}"


class TenantStatsHourTotal(models.Model):
    """Usage of every tenant together during one hour (the statistics page's chart and totals)."""

    hour = models.DateTimeField(_("hour"), unique=True)
    switches = models.PositiveBigIntegerField(_("switches"), default=0)
    requests = models.PositiveBigIntegerField(_("requests"), default=0)
    denied_requests = models.PositiveBigIntegerField(_("denied requests"), default=0)

    class Meta:
        ordering = ["-hour"]
        verbose_name = _("statistics hour total")
        verbose_name_plural = _("statistics hour totals")

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}:00"


class TenantStatsWindow(models.Model):
    """One tenant's usage over the days since ``since`` (the last 30), and when it was last used.

    Kept by the flush (increments) and rebased once a day from
    :class:`TenantStatsDay`; every column the admin sorts or filters on is indexed.
    """

    tenant = models.OneToOneField(
        Tenant,
        on_delete=models.CASCADE,
        to_field="tenant_id",
        related_name="stats_window",
        verbose_name=_("tenant"),
    )
    since = models.DateField(_("since"))
    switches = models.PositiveBigIntegerField(_("switches"), default=0, db_index=True)
    requests = models.PositiveBigIntegerField(_("requests"), default=0, db_index=True)
    denied_requests = models.PositiveBigIntegerField(_("denied requests"), default=0, db_index=True)
    #: The last switch or served request, at any time (not only within the window).
    last_activity = models.DateTimeField(_("last activity"), null=True, db_index=True)
    #: The last denied request, kept apart: a refused request is not activity.
    last_denied = models.DateTimeField(_("last denied request"), null=True)

    class Meta:
        verbose_name = _("tenant statistics window")
        verbose_name_plural = _("tenant statistics windows")

    def __str__(self) -> str:
        return f"{self.tenant_id} since {self.since:%Y-%m-%d}"


class TenantStatistics(Tenant):
    """The statistics page's entry in the admin's app list (a proxy: no table of its own)."""

    class Meta:
        proxy = True
        verbose_name = _("statistics")
        verbose_name_plural = _("statistics")


class UserRuntimeContext(models.Model):
    """Serialisable runtime settings of one user (in one tenant, or globally)."""

    user_uuid = models.CharField(_("user"), max_length=255)
    # "" when set outside any tenant; otherwise the tenant id current when set.
    scope = models.CharField(_("tenant scope"), max_length=TENANT_ID_MAX_LENGTH, blank=True)
    values = models.JSONField(_("values"), default=dict, blank=True)
    last_access = models.DateTimeField(_("last access"), db_index=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user_uuid", "scope"], name="tenancy_runtime_user_scope_unique"
            )
        ]
        ordering = ["-last_access"]
        verbose_name = _("user runtime context")
        verbose_name_plural = _("user runtime contexts")

    def __str__(self) -> str:
        return f"{self.user_uuid} ({self.scope or 'global'})"


class Conversation(TenantScopedModel):
    """A conversation of one agent in one tenant (``tenancy.memory.ContextManager``)."""

    deleted_with_tenant = True  # conversation memory goes with its tenant

    agent_id = models.CharField(_("agent id"), max_length=128)
    conversation_id = models.CharField(_("conversation id"), max_length=128)
    user_id = models.CharField(_("user id"), max_length=255, blank=True)
    session_id = models.CharField(_("session id"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta(TenantScopedModel.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "agent_id", "conversation_id"],
                name="tenancy_conversation_unique",
            )
        ]
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.agent_id}/{self.conversation_id}"


class Message(TenantScopedModel):
    """One message of a conversation; ``position`` keeps the order."""

    deleted_with_tenant = True

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    message_id = models.CharField(_("message id"), max_length=64, unique=True)
    position = models.PositiveIntegerField(_("position"))
    role = models.CharField(_("role"), max_length=32, blank=True)
    content = models.TextField(_("content"), blank=True)
    data = models.JSONField(_("data"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta(TenantScopedModel.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "position"], name="tenancy_message_position_unique"
            )
        ]
        ordering = ["conversation", "position"]
        verbose_name = _("message")
        verbose_name_plural = _("messages")

    def __str__(self) -> str:
        return f"{self.conversation_id}#{self.position} {self.role}"


class ConversationCollection(TenantScopedModel):
    """A collection registered for a conversation (one row each: no lost updates)."""

    deleted_with_tenant = True

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="collections"
    )
    collection_id = models.CharField(_("collection id"), max_length=128)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta(TenantScopedModel.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "collection_id"], name="tenancy_collection_unique"
            )
        ]
        ordering = ["created_at", "id"]
        verbose_name = _("conversation collection")
        verbose_name_plural = _("conversation collections")

    def __str__(self) -> str:
        return f"{self.conversation_id}: {self.collection_id}"
