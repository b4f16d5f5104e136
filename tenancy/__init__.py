"""tenancy: multi-tenancy and request context for Django.

Importable before apps are ready: the context and exceptions are plain Python,
everything that touches the registry is loaded on first use (PEP 562).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .current import (
    RuntimeContext,
    clear_context,
    get_context,
    get_current_agent_id,
    get_current_collection_id,
    get_current_context,
    get_current_conversation_id,
    get_current_request_id,
    get_current_session_id,
    get_current_tenant_id,
    get_current_user_id,
    get_full_context,
    reset_context,
    set_context,
    set_current_agent_id,
    set_current_collection_id,
    set_current_conversation_id,
    set_current_request_id,
    set_current_session_id,
    set_current_tenant_id,
    set_current_user_id,
)
from .exceptions import (
    CacheClearUnsupportedError,
    InvalidContextIdError,
    InvalidTenantIdError,
    ServiceError,
    TenancyError,
    TenancyUnavailableError,
    TenantAccessDenied,
    TenantAlreadyRegisteredError,
    TenantDeniedError,
    TenantHasDataError,
    TenantInactiveError,
    TenantInUseError,
    TenantNotRegisteredError,
    TenantRequiredError,
    UnsafeFileNameError,
)
from .ids import is_valid_tenant_id, validate_tenant_id

if TYPE_CHECKING:
    from .context import Context
    from .decorators import with_context
    from .registry import (
        TenantContext,
        activate_tenant,
        aswitch,
        deactivate_tenant,
        get_current_tenant,
        get_tenant,
        is_tenant_active,
        is_tenant_registered,
        iter_tenants,
        list_tenants,
        register_tenant,
        require_tenant,
        switch,
        tenant_context,
        unregister_tenant,
    )
    from .rls import bypass_rls
    from .state import TenantInfo
    from .stats.report import get_stats

__version__ = "0.1.0"

_REGISTRY = (
    "TenantContext",
    "activate_tenant",
    "aswitch",
    "deactivate_tenant",
    "get_current_tenant",
    "get_tenant",
    "is_tenant_active",
    "is_tenant_registered",
    "iter_tenants",
    "list_tenants",
    "register_tenant",
    "require_tenant",
    "switch",
    "tenant_context",
    "unregister_tenant",
)
# Loaded on first use: these modules reach the registry and Django's caches.
_LAZY = {
    "Context": "tenancy.context",
    "TenantInfo": "tenancy.state",
    "with_context": "tenancy.decorators",
    "bypass_rls": "tenancy.rls",
    "get_stats": "tenancy.stats.report",
    **dict.fromkeys(_REGISTRY, "tenancy.registry"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tenancy' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CacheClearUnsupportedError",
    "Context",
    "InvalidContextIdError",
    "InvalidTenantIdError",
    "RuntimeContext",
    "ServiceError",
    "TenancyError",
    "TenancyUnavailableError",
    "TenantAccessDenied",
    "TenantAlreadyRegisteredError",
    "TenantContext",
    "TenantDeniedError",
    "TenantHasDataError",
    "TenantInUseError",
    "TenantInactiveError",
    "TenantInfo",
    "TenantNotRegisteredError",
    "TenantRequiredError",
    "UnsafeFileNameError",
    "__version__",
    "activate_tenant",
    "aswitch",
    "bypass_rls",
    "clear_context",
    "deactivate_tenant",
    "get_context",
    "get_current_agent_id",
    "get_current_collection_id",
    "get_current_context",
    "get_current_conversation_id",
    "get_current_request_id",
    "get_current_session_id",
    "get_current_tenant",
    "get_current_tenant_id",
    "get_current_user_id",
    "get_full_context",
    "get_stats",
    "get_tenant",
    "is_tenant_active",
    "is_tenant_registered",
    "is_valid_tenant_id",
    "iter_tenants",
    "list_tenants",
    "register_tenant",
    "require_tenant",
    "reset_context",
    "set_context",
    "set_current_agent_id",
    "set_current_collection_id",
    "set_current_conversation_id",
    "set_current_request_id",
    "set_current_session_id",
    "set_current_tenant_id",
    "set_current_user_id",
    "switch",
    "tenant_context",
    "unregister_tenant",
    "validate_tenant_id",
    "with_context",
]
