"""The tenant admin: state and usage at a glance, lifecycle through the registry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import F, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..current import get_current_tenant_id
from ..exceptions import TenantHasDataError, TenantInUseError, TenantNotRegisteredError
from ..models import Tenant, TenantMembership, TenantStatistics
from ..registry import tenant_context
from ..stats.flush import read_consistently
from ..stats.report import page_usage, tenant_detail, with_usage
from .dashboard import MOMENT_FORMAT, format_moment, statistics_view
from .forms import TenantForm

__all__ = ["ActivityListFilter", "TenantAdmin", "TenantMembershipInline", "TenantStatisticsAdmin"]


class _Refused(Exception):
    """``unregister_tenant`` said no; the message says why."""


class TenantMembershipInline(admin.TabularInline):
    model = TenantMembership
    extra = 0
    autocomplete_fields = ["user"]


class ActivityListFilter(admin.SimpleListFilter):
    """Tenants by their last activity (switches and served requests; indexed, flushed figures)."""

    title = _("activity")
    parameter_name = "activity"
    HOURS = {"24h": 24, "30d": 30 * 24}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("24h", _("In the last 24 hours")),
            ("30d", _("In the last 30 days")),
            ("idle", _("Not in the last 30 days")),
            ("never", _("Never used")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value in self.HOURS:
            since = timezone.now() - timedelta(hours=self.HOURS[value])
            return queryset.filter(stats_window__last_activity__gte=since)
        if value == "idle":
            since = timezone.now() - timedelta(hours=self.HOURS["30d"])
            return queryset.exclude(stats_window__last_activity__gte=since)
        if value == "never":
            return queryset.filter(
                Q(stats_window__isnull=True) | Q(stats_window__last_activity__isnull=True)
            )
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
    list_per_page = 50
    list_filter = ["active", ActivityListFilter, "created_at"]
    search_fields = ["tenant_id", "name"]
    ordering = ["tenant_id"]
    inlines = [TenantMembershipInline]
    actions = ["activate_selected", "deactivate_selected", "delete_selected"]

    # -- list -------------------------------------------------------------------
    # Usage is the last 30 days, read from each row's window (joined, indexed):
    # a page costs the same queries and time for 3 tenants or 100,000.

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return with_usage(super().get_queryset(request))

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        # Add this process's pending counts, read with the page so none is seen twice.
        rows, pending = read_consistently(lambda: list(changelist.result_list.all()))
        for row, usage in zip(rows, page_usage(rows, pending), strict=True):
            row.usage = usage
        changelist.result_list = rows
        return changelist

    @admin.display(description=_("state"), ordering="active")
    def state(self, obj: Tenant) -> str:
        if obj.active:
            return format_html('<span class="tenancy-badge tenancy-active">{}</span>', _("Active"))
        return format_html('<span class="tenancy-badge tenancy-inactive">{}</span>', _("Inactive"))

    @admin.display(description=_("members"))
    def members(self, obj: Tenant) -> int:
        return obj.usage.members  # type: ignore[attr-defined]

    @admin.display(
        description=_("switches (30 d)"),
        ordering=F("stats_window__switches").desc(nulls_last=True),
    )
    def switches(self, obj: Tenant) -> int:
        return obj.usage.switches  # type: ignore[attr-defined]

    @admin.display(
        description=_("requests (30 d)"),
        ordering=F("stats_window__requests").desc(nulls_last=True),
    )
    def requests(self, obj: Tenant) -> int:
        return obj.usage.requests  # type: ignore[attr-defined]

    @admin.display(
        description=_("denied (30 d)"),
        ordering=F("stats_window__denied_requests").desc(nulls_last=True),
    )
    def denied_requests(self, obj: Tenant) -> str:
        usage = obj.usage  # type: ignore[attr-defined]
        if usage.last_denied is None:
            return str(usage.denied_requests)
        last = timezone.localtime(usage.last_denied).strftime(MOMENT_FORMAT)
        title = _("last denied request: %(moment)s") % {"moment": last}
        return format_html('<span title="{}">{}</span>', title, usage.denied_requests)

    @admin.display(
        description=_("last activity"),
        ordering=F("stats_window__last_activity").desc(nulls_last=True),
    )
    def last_activity(self, obj: Tenant) -> str:
        # Switches and served requests only: a denied request is not activity.
        return format_moment(obj.usage.last_activity)  # type: ignore[attr-defined]

    # -- change page: this tenant's usage ----------------------------------------------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if obj is not None:
            detail = tenant_detail(obj.tenant_id)
            context["tenancy_usage"] = {
                "detail": detail,
                "last_activity": format_moment(detail.last_activity),
                "last_denied": format_moment(detail.last_denied),
                "rows": [
                    (_("Switches"), detail.last_24h.switches, detail.last_30d.switches),
                    (_("Requests"), detail.last_24h.requests, detail.last_30d.requests),
                    (
                        _("Denied requests"),
                        detail.last_24h.denied_requests,
                        detail.last_30d.denied_requests,
                    ),
                ],
            }
        return super().change_view(request, object_id, form_url, context)

    # -- form -------------------------------------------------------------------

    def get_readonly_fields(self, request: HttpRequest, obj: Tenant | None = None) -> Any:
        # A tenant id is the key other rows point at: it never changes.
        return ("tenant_id", "created", "updated") if obj is not None else ()

    def get_fields(self, request: HttpRequest, obj: Tenant | None = None) -> Any:
        fields = ["tenant_id", "name", "active", "metadata"]
        return [*fields, "created", "updated"] if obj is not None else fields

    # The one format of moments of these pages, not the project's DATETIME_FORMAT.
    @admin.display(description=_("created at"))
    def created(self, obj: Tenant) -> str:
        return format_moment(obj.created_at)

    @admin.display(description=_("updated at"))
    def updated(self, obj: Tenant) -> str:
        return format_moment(obj.updated_at)

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


@admin.register(TenantStatistics)
class TenantStatisticsAdmin(admin.ModelAdmin):
    """The statistics page as an entry of the tenancy section of the admin index.

    Viewing it needs the *view tenant* permission, as the page itself.
    """

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        opts = Tenant._meta
        return request.user.has_perm(f"{opts.app_label}.view_{opts.model_name}")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        tenants = self.admin_site._registry[Tenant]
        return statistics_view(tenants, request)

    def get_urls(self) -> list[URLPattern]:
        opts = self.opts
        view = self.admin_site.admin_view(self.changelist_view)
        return [path("", view, name=f"{opts.app_label}_{opts.model_name}_changelist")]
