"""The exceptions of tenancy: one base class, a stable ``code`` and HTTP status each."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import SuspiciousFileOperation

__all__ = [
    "CacheClearUnsupportedError",
    "InvalidContextIdError",
    "InvalidTenantIdError",
    "ServiceError",
    "TenancyError",
    "TenancyUnavailableError",
    "TenantAccessDenied",
    "TenantAlreadyRegisteredError",
    "TenantDeniedError",
    "TenantHasDataError",
    "TenantInUseError",
    "TenantInactiveError",
    "TenantNotRegisteredError",
    "TenantRequiredError",
    "UnsafeFileNameError",
]


class TenancyError(Exception):
    """Base class of every tenancy error.

    ``code`` is stable and safe to show to API clients; ``status_code`` is the
    HTTP status used when the error reaches a view. The message is the one
    given, else ``tenant_message`` when a tenant id is given (formatted with
    ``tenant_id`` and the error itself as ``error``), else ``default_message``.
    """

    code: str = "tenancy_error"
    status_code: int = 400
    default_message: str = "A tenancy error occurred."
    tenant_message: str | None = None

    def __init__(self, message: str | None = None, *, tenant_id: str | None = None) -> None:
        self.tenant_id = tenant_id
        if message is None:
            if tenant_id is not None and self.tenant_message is not None:
                message = self.tenant_message.format(tenant_id=tenant_id, error=self)
            else:
                message = self.default_message
        self.message = message
        super().__init__(message)

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON body used for this error in HTTP responses."""
        return {"detail": self.message, "code": self.code}


#: The seeds' name for the base class: ``except ServiceError`` catches every tenancy error.
ServiceError = TenancyError


class TenantRequiredError(TenancyError, RuntimeError):
    """No valid tenant is bound where one is required."""

    code = "ERROR_TENANT_REQUIRED"
    status_code = 403
    default_message = (
        "No tenant context is active. "
        "Use 'with tenancy.switch(tenant_id):' to set a tenant context."
    )


class InvalidTenantIdError(TenancyError, ValueError):
    """A tenant id is not a lowercase slug of at most 63 characters, or is reserved."""

    code = "invalid_tenant_id"
    status_code = 400
    default_message = (
        "Tenant ids are lowercase slugs: a letter or digit, then letters, digits, "
        "'-' or '_', at most 63 characters; 'default' is reserved."
    )


class InvalidContextIdError(TenancyError, ValueError):
    """An agent, conversation or collection id is not a short, plain identifier."""

    code = "invalid_context_id"
    status_code = 400
    default_message = (
        "Agent, conversation and collection ids are 1 to 128 ASCII letters, digits, "
        "'.', '_', ':' or '-', starting with a letter or digit."
    )


class TenantNotRegisteredError(TenancyError, ValueError):
    """The tenant id is well-formed but no tenant is registered under it."""

    code = "tenant_not_registered"
    status_code = 403
    default_message = "Tenant is not registered. Use register_tenant() to create it."
    tenant_message = "Tenant {tenant_id!r} is not registered. Use register_tenant() to create it."


class TenantInactiveError(TenancyError, ValueError):
    """The tenant is registered but deactivated."""

    code = "tenant_inactive"
    status_code = 403
    default_message = "Tenant is not active. Use activate_tenant() to reactivate it."
    tenant_message = "Tenant {tenant_id!r} is not active. Use activate_tenant() to reactivate it."


class TenantAlreadyRegisteredError(TenancyError):
    """A tenant with this id already exists."""

    code = "tenant_already_registered"
    status_code = 409
    default_message = "Tenant is already registered."
    tenant_message = "Tenant {tenant_id!r} is already registered."


class TenantInUseError(TenancyError):
    """The tenant is the current tenant and cannot be unregistered."""

    code = "tenant_in_use"
    status_code = 409
    default_message = "Tenant is the current tenant and cannot be unregistered."
    tenant_message = (
        "Tenant {tenant_id!r} is the current tenant and cannot be unregistered. "
        "Leave its switch() block first."
    )


class TenantHasDataError(TenancyError):
    """Tenant-scoped rows still reference the tenant; nothing was deleted."""

    code = "tenant_has_data"
    status_code = 409
    default_message = "Tenant still owns tenant-scoped rows and cannot be unregistered."
    tenant_message = (
        "Tenant {tenant_id!r} still owns tenant-scoped rows{error.where}; nothing was "
        "deleted. Delete or move those rows first, or deactivate_tenant() instead."
    )

    def __init__(
        self,
        message: str | None = None,
        *,
        tenant_id: str | None = None,
        models: list[str] | None = None,
    ) -> None:
        self.models = list(models or [])
        super().__init__(message, tenant_id=tenant_id)

    @property
    def where(self) -> str:
        """The models that still hold rows, as the message names them (or nothing)."""
        return f" ({', '.join(self.models)})" if self.models else ""


class TenantAccessDenied(TenancyError):
    """The authenticated user is not a member of the current tenant."""

    code = "tenant_access_denied"
    status_code = 403
    default_message = "You are not a member of this tenant."


class TenantDeniedError(TenancyError):
    """The one refusal of ``TENANCY["UNIFORM_DENIAL"]``: unknown, inactive or not yours."""

    code = "tenant_denied"
    status_code = 403
    default_message = (
        "This tenant is not available: it is not registered, not active, or you are "
        "not one of its members."
    )


class TenancyUnavailableError(TenancyError):
    """Tenant state cannot be read: the database (and the cache) cannot be reached."""

    code = "tenancy_unavailable"
    status_code = 503
    default_message = (
        "Tenant state cannot be read right now: the database cannot be reached. Retry later."
    )


class UnsafeFileNameError(TenancyError, SuspiciousFileOperation):
    """A file name could leave the bound tenant's prefix (``..``, absolute, encoded, symlink)."""

    code = "unsafe_file_name"
    status_code = 400
    default_message = (
        "File names are relative paths inside the tenant's own directory: no '..', no "
        "leading '/', no backslashes, encoded separators or control characters, and no "
        "symlink that leads out of it."
    )


class CacheClearUnsupportedError(TenancyError):
    """The cache backend cannot list keys by prefix, so one tenant's keys cannot be removed."""

    code = "cache_clear_unsupported"
    status_code = 501
    default_message = (
        "This cache backend cannot remove keys by prefix. clear_tenant_cache() works on "
        "Django's RedisCache and LocMemCache; elsewhere let the keys expire, or change "
        "the cache's VERSION to drop every key at once."
    )
