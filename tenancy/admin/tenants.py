"""The tenant admin: state and usage at a glance, lifecycle through the registry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..current import get_current_tenant_id
from ..exceptions import TenantHasDataError, TenantInUseError, TenantNotRegisteredError
from ..models import Tenant, TenantMembership, TenantStatsBucket
from ..registry import tenant_context
from ..stats.flush import read_consistently
from ..stats.report import annotate_usage, pending_by_tenant, usage_of
from .dashboard import statistics_view
from .forms import TenantForm

__all__ = ["ActivityListFilter", "TenantAdmin", "TenantMembershipInline"]


class _Refused(Exception):
    """``unregister_tenant`` said no; the message says why."""


class TenantMembershipInline(admin.TabularInline):
    model = TenantMembership
    extra = 0
    autocomplete_fields = ["user"]


class ActivityListFilter(admin.SimpleListFilter):
    """Tenants by recorded activity (flushed statistics)."""

    title = _("activity")
    parameter_name = "activity"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("24h", _("In the last 24 hours")), ("never", _("Never used"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        buckets = TenantStatsBucket.objects.filter(tenant_id=OuterRef("tenant_id"))
        if self.value() == "24h":
            since = timezone.now() - timedelta(hours=24)
            return queryset.filter(Exists(buckets.filter(last_activity__gte=since)))
        if self.value() == "never":
            return queryset.filter(~Exists(buckets))
        return queryset


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantForm
    list_display = [
        "tenant_id",
        "name",
        "state",
        "members",
        "switches",
        "requests",
        "denied_requests",
        "last_activity",
    ]
    list_display_links = ["tenant_id", "name"]
    list_filter = ["active", ActivityListFilter, "created_at"]
    search_fields = ["tenant_id", "name"]
    ordering = ["tenant_id"]
    inlines = [TenantMembershipInline]
    actions = ["activate_selected", "deactivate_selected", "delete_selected"]

    # -- list -------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return annotate_usage(super().get_queryset(request))

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        # Add this process's pending counts, read with the page so none is seen twice.
        rows, pending = read_consistently(lambda: list(changelist.result_list.all()))
        extra = pending_by_tenant(pending)
        for row in rows:
            row.usage = usage_of(row, extra.get(row.tenant_id))
        changelist.result_list = rows
        return changelist

    @admin.display(description=_("state"), ordering="active")
    def state(self, obj: Tenant) -> str:
        if obj.active:
            return format_html('<span class="tenancy-badge tenancy-active">{}</span>', _("Active"))
        return format_html('<span class="tenancy-badge tenancy-inactive">{}</span>', _("Inactive"))

    @admin.display(description=_("members"), ordering="usage_members")
    def members(self, obj: Tenant) -> int:
        return obj.usage.members  # type: ignore[attr-defined]

    @admin.display(description=_("switches"), ordering="usage_switches")
    def switches(self, obj: Tenant) -> int:
        return obj.usage.switches  # type: ignore[attr-defined]

    @admin.display(description=_("requests"), ordering="usage_requests")
    def requests(self, obj: Tenant) -> int:
        return obj.usage.requests  # type: ignore[attr-defined]

    @admin.display(description=_("denied"), ordering="usage_denied_requests")
    def denied_requests(self, obj: Tenant) -> int:
        return obj.usage.denied_requests  # type: ignore[attr-defined]

    @admin.display(description=_("last activity"), ordering="usage_last_activity", empty_value="—")
    def last_activity(self, obj: Tenant) -> str | None:
        moment = obj.usage.last_activity  # type: ignore[attr-defined]
        if moment is None:
            return None
        # Compact, so the list fits beside the filters; the full time is in the tooltip.
        local = timezone.localtime(moment)
        return format_html(
            '<time datetime="{}" title="{}">{}</time>',
            moment.isoformat(),
            local.isoformat(timespec="seconds"),
            local.strftime("%Y-%m-%d %H:%M"),
        )

    # -- form -------------------------------------------------------------------

    def get_readonly_fields(self, request: HttpRequest, obj: Tenant | None = None) -> Any:
        # A tenant id is the key other rows point at: it never changes.
        return ("tenant_id", "created_at", "updated_at") if obj is not None else ()

    def get_fields(self, request: HttpRequest, obj: Tenant | None = None) -> Any:
        fields = ["tenant_id", "name", "active", "metadata"]
        return [*fields, "created_at", "updated_at"] if obj is not None else fields

    def save_model(self, request: HttpRequest, obj: Tenant, form: Any, change: bool) -> None:
        # Through the registry, so its signals fire as for code calling it.
        if not change:
            tenant_context.register_tenant(obj.tenant_id, obj.name, obj.metadata)
            if not obj.active:
                tenant_context.deactivate_tenant(obj.tenant_id)
            stored = Tenant.objects.get(tenant_id=obj.tenant_id)
            obj.pk, obj.created_at, obj.updated_at = stored.pk, stored.created_at, stored.updated_at
            obj._state.adding = False
            return
        if "active" in form.changed_data:
            wanted = obj.active
            obj.active = not wanted
            super().save_model(request, obj, form, change)
            self._set_active(obj.tenant_id, wanted)
            obj.active = wanted
            return
        super().save_model(request, obj, form, change)

    # -- actions ----------------------------------------------------------------

    @staticmethod
    def _set_active(tenant_id: str, active: bool) -> None:
        if active:
            tenant_context.activate_tenant(tenant_id)
        else:
            tenant_context.deactivate_tenant(tenant_id)

    def _change_state(self, request: HttpRequest, queryset: QuerySet[Any], active: bool) -> None:
        changed = unchanged = 0
        for tenant in queryset:
            if tenant.active == active:
                unchanged += 1
                continue
            self._set_active(tenant.tenant_id, active)
            self.log_change(request, tenant, "Activated." if active else "Deactivated.")
            changed += 1
        if active:
            done = ngettext(
                "%(count)d tenant was activated.", "%(count)d tenants were activated.", changed
            )
            same = ngettext(
                "%(count)d tenant was already active.",
                "%(count)d tenants were already active.",
                unchanged,
            )
        else:
            done = ngettext(
                "%(count)d tenant was deactivated.", "%(count)d tenants were deactivated.", changed
            )
            same = ngettext(
                "%(count)d tenant was already inactive.",
                "%(count)d tenants were already inactive.",
                unchanged,
            )
        if changed:
            self.message_user(request, done % {"count": changed}, messages.SUCCESS)
        if unchanged:
            self.message_user(request, same % {"count": unchanged}, messages.INFO)

    @admin.action(description=_("Activate selected tenants"), permissions=["change"])
    def activate_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._change_state(request, queryset, True)

    @admin.action(description=_("Deactivate selected tenants"), permissions=["change"])
    def deactivate_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._change_state(request, queryset, False)

    # -- deletion: the rules of unregister_tenant ----------------------------------

    @staticmethod
    def refusal(tenant_id: str) -> str | None:
        """Return why *tenant_id* cannot be unregistered now, or ``None``."""
        if get_current_tenant_id() == tenant_id:
            return TenantInUseError(tenant_id=tenant_id).message
        owners = tenant_context.models_with_data(tenant_id)
        if owners:
            return TenantHasDataError(tenant_id=tenant_id, models=owners).message
        return None

    @staticmethod
    def _unregister(tenant_id: str) -> None:
        try:
            tenant_context.unregister_tenant(tenant_id)
        except TenantNotRegisteredError:
            pass  # deleted meanwhile: what was asked is done
        except (TenantInUseError, TenantHasDataError) as exc:
            raise _Refused(exc.message) from exc

    def delete_model(self, request: HttpRequest, obj: Tenant) -> None:
        self._unregister(obj.tenant_id)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for tenant_id in queryset.values_list("tenant_id", flat=True):
            self._unregister(tenant_id)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        if obj is not None and self.has_delete_permission(request, obj):
            why = self.refusal(obj.tenant_id)
            if why is not None:
                self.message_user(request, why, messages.ERROR)
                return self._to_change_page(obj)
        try:
            return super().delete_view(request, object_id, extra_context)
        except _Refused as exc:  # data written since the check above
            self.message_user(request, str(exc), messages.ERROR)
            return self._to_change_page(obj)

    def _to_change_page(self, obj: Any) -> HttpResponseRedirect:
        opts = self.opts
        url = reverse(
            f"admin:{opts.app_label}_{opts.model_name}_change",
            args=[quote(obj.pk)],
            current_app=self.admin_site.name,
        )
        return HttpResponseRedirect(url)

    @admin.action(description=_("Delete selected %(verbose_name_plural)s"), permissions=["delete"])
    def delete_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> Any:
        """Django's confirmation page, but refused up front and deleted through the registry."""
        refusals = [why for t in queryset if (why := self.refusal(t.tenant_id)) is not None]
        if refusals:
            for why in refusals:
                self.message_user(request, why, messages.ERROR)
            return None
        if not request.POST.get("post"):
            return django_delete_selected(self, request, queryset)
        if self.get_deleted_objects(queryset, request)[2]:
            raise PermissionDenied
        deleted = 0
        for tenant in list(queryset):
            try:
                self._unregister(tenant.tenant_id)
            except _Refused as exc:  # data written since the check above
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.log_deletions(request, [tenant])  # type: ignore[arg-type]
                deleted += 1
        if deleted:
            message = ngettext(
                "%(count)d tenant was deleted.", "%(count)d tenants were deleted.", deleted
            )
            self.message_user(request, message % {"count": deleted}, messages.SUCCESS)
        return None

    # -- statistics page ----------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        opts = self.opts
        view = self.admin_site.admin_view(lambda request: statistics_view(self, request))
        name = f"{opts.app_label}_{opts.model_name}_statistics"
        return [path("statistics/", view, name=name), *super().get_urls()]
