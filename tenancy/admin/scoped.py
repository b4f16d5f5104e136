"""``TenantScopedAdmin``: the admin of a tenant-scoped model shows every tenant's rows."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.admin.widgets import AutocompleteSelect
from django.db.models import ForeignKey, QuerySet
from django.http import HttpRequest
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from ..context import Context
from ..models import TenantScopedModel
from .forms import TenantScopedForm

__all__ = ["TenantScopedAdmin"]


class TenantScopedAdmin(admin.ModelAdmin):
    """Base ``ModelAdmin`` for ``TenantScopedModel`` subclasses.

    Lists rows of every tenant through the ``unscoped`` manager, with a tenant
    column and filter; the tenant of a new row is chosen in the form and never
    changes after. Writes run inside a context bound to the row's tenant, so the
    model's own checks pass whatever tenant the admin request itself carries.
    """

    form = TenantScopedForm

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = self.model.unscoped.get_queryset()
        ordering = self.get_ordering(request)
        return queryset.order_by(*ordering) if ordering else queryset

    def get_list_display(self, request: HttpRequest) -> Any:
        columns = list(super().get_list_display(request))
        return columns if "tenant_column" in columns else [*columns, "tenant_column"]

    def get_list_filter(self, request: HttpRequest) -> Any:
        filters = list(super().get_list_filter(request))
        return filters if "tenant" in filters else ["tenant", *filters]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        fields = kwargs["fields"] if "fields" in kwargs else self.get_fieldsets(request, obj)
        if fields is not None:  # None: every editable field, plus the form's own "tenant"
            # "tenant" is the form's own field: the model field is not editable.
            names = flatten_fieldsets(fields) if "fields" not in kwargs else fields
            kwargs["fields"] = [name for name in names if name != "tenant"]
        return super().get_form(request, obj, change, **kwargs)

    @admin.display(description=_("tenant"), ordering="tenant")
    def tenant_column(self, obj: TenantScopedModel) -> str:
        return obj.tenant_id

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_fields(request, obj))
        return fields if "tenant" in fields else ["tenant", *fields]

    def formfield_for_foreignkey(
        self,
        db_field: ForeignKey,
        request: HttpRequest,
        **kwargs: Any,
    ) -> Any:
        related = db_field.remote_field.model
        if not (isinstance(related, type) and issubclass(related, TenantScopedModel)):
            return super().formfield_for_foreignkey(db_field, request, **kwargs)
        # Built here: ForeignKey.formfield() reads the related model's scoped
        # default manager, which refuses to run without a bound tenant.
        kwargs.pop("using", None)
        if "widget" not in kwargs and db_field.name in self.get_autocomplete_fields(request):
            kwargs["widget"] = AutocompleteSelect(db_field, self.admin_site)
        field_options = {
            "queryset": related.unscoped.all(),
            "to_field_name": db_field.remote_field.field_name,
            "required": not db_field.blank,
            "blank": db_field.blank,
            "label": capfirst(db_field.verbose_name),
            "help_text": db_field.help_text,
            "limit_choices_to": db_field.get_limit_choices_to(),
            **kwargs,
        }
        return forms.ModelChoiceField(**field_options)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        with Context(tenant_id=obj.tenant_id):
            super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        with Context(tenant_id=form.instance.tenant_id):
            super().save_related(request, form, formsets, change)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        # In the row's own tenant, whatever tenant the admin request resolved to.
        with Context(tenant_id=obj.tenant_id):
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for tenant_id in queryset.values_list("tenant_id", flat=True).distinct():
            with Context(tenant_id=tenant_id):
                super().delete_queryset(request, queryset.filter(tenant_id=tenant_id))
