"""Django application config of tenancy."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TenancyConfig(AppConfig):
    name = "tenancy"
    verbose_name = _("Tenancy")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import atexit

        from django.core.signals import setting_changed
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_delete, post_migrate, post_save

        from . import checks, membership, receivers, rls, signals
        from .models import Tenant, TenantMembership
        from .stats.flush import scheduler

        checks.register()
        post_save.connect(receivers.tenant_saved, sender=Tenant, dispatch_uid="tenancy.saved")
        post_delete.connect(receivers.tenant_deleted, sender=Tenant, dispatch_uid="tenancy.deleted")
        changed = membership.membership_changed
        post_save.connect(changed, sender=TenantMembership, dispatch_uid="tenancy.member.saved")
        post_delete.connect(changed, sender=TenantMembership, dispatch_uid="tenancy.member.deleted")
        setting_changed.connect(receivers.settings_changed, dispatch_uid="tenancy.settings")
        signals.tenant_unregistering.connect(
            receivers.tenant_unregistering, dispatch_uid="tenancy.unregistering"
        )
        # Row-level security (off by default): the tenant reaches PostgreSQL per
        # transaction, and migrate keeps each scoped table's policy as the setting says.
        connection_created.connect(rls.install, dispatch_uid="tenancy.rls.install")
        post_migrate.connect(rls.sync_after_migrate, dispatch_uid="tenancy.rls.migrate")
        # Counts still in memory at a clean exit are written, not lost.
        atexit.register(scheduler.shutdown)
