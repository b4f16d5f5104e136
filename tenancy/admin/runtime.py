"""A read-only list of users' runtime settings (``tenancy.runtime``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..models import UserRuntimeContext
from .dashboard import format_moment

__all__ = ["UserRuntimeContextAdmin"]

#: Rows used within this many hours are active; the cleanup command's default age.
ACTIVE_HOURS = 24


class ActiveContextFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("active", _("Active (used in the last 24 hours)")), ("stale", _("Stale"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        since = timezone.now() - timedelta(hours=ACTIVE_HOURS)
        if self.value() == "active":
            return queryset.filter(last_access__gte=since)
        if self.value() == "stale":
            return queryset.filter(last_access__lt=since)
        return queryset


@admin.register(UserRuntimeContext)
class UserRuntimeContextAdmin(admin.ModelAdmin):
    """What each user has set; read-only (the settings are changed through ``tenancy.runtime``)."""

    list_display = ["user_uuid", "scope_label", "values", "last_used", "is_active"]
    list_filter = [ActiveContextFilter, "scope"]
    search_fields = ["user_uuid", "scope"]
    ordering = ["-last_access"]

    @admin.display(description=_("tenant scope"), ordering="scope")
    def scope_label(self, obj: UserRuntimeContext) -> str:
        return obj.scope or str(_("global"))

    @admin.display(description=_("last access"), ordering="last_access")
    def last_used(self, obj: UserRuntimeContext) -> str:
        return format_moment(obj.last_access)

    @admin.display(description=_("active"), boolean=True)
    def is_active(self, obj: UserRuntimeContext) -> bool:
        return obj.last_access >= timezone.now() - timedelta(hours=ACTIVE_HOURS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
