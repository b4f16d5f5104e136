"""Receivers connected in ``TenancyConfig.ready()``: keep cached tenant state true."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from . import runtime
from .memory import ContextManager
from .registry import TenantInfo, invalidate_tenant, reset_all_caches
from .stats.counters import counters


def tenant_saved(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
    invalidate_tenant(instance.tenant_id, TenantInfo.from_model(instance), using)


def tenant_deleted(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
    invalidate_tenant(instance.tenant_id, None, using)


def settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("TENANCY", "CACHES"):
        reset_all_caches()


def tenant_unregistering(sender: Any, tenant: TenantInfo, using: str, **kwargs: Any) -> None:
    """Delete what the package keeps for a tenant being unregistered (see the signal)."""
    tenant_id = tenant.tenant_id
    runtime.forget_tenant(tenant_id)
    ContextManager.forget_tenant(tenant_id, using)

    def drop_pending_counts() -> None:
        # Not yet written: they would land in the buckets of a tenant registered again.
        pending = counters.take_pending()
        counters.restore_pending({key: v for key, v in pending.items() if key[0] != tenant_id})

    transaction.on_commit(drop_pending_counts, using=using)
