"""Admin of tenancy: tenants with usage and lifecycle, a statistics page, scoped models.

Importing this module registers ``Tenant`` and ``UserRuntimeContext`` on the
default admin site (Django's admin autodiscovery does it for you). Projects
use :class:`TenantScopedAdmin` for their own tenant-scoped models::

    from django.contrib import admin
    from tenancy.admin import TenantScopedAdmin

    @admin.register(Note)
    class NoteAdmin(TenantScopedAdmin):
        list_display = ["title", "created_at"]
"""

from __future__ import annotations

from .runtime import UserRuntimeContextAdmin
from .scoped import TenantScopedAdmin
from .tenants import (
    ActivityListFilter,
    TenantAdmin,
    TenantMembershipInline,
    TenantStatisticsAdmin,
)

__all__ = [
    "ActivityListFilter",
    "TenantAdmin",
    "TenantMembershipInline",
    "TenantScopedAdmin",
    "TenantStatisticsAdmin",
    "UserRuntimeContextAdmin",
]
