"""Tenant resolvers: where a request's tenant claim comes from.

A resolver returns the raw claim (a string, not yet validated) or ``None``
when it has nothing to say; the middleware tries ``TENANCY["RESOLVERS"]`` in
order and checks the first claim against the registry. A claim is never
trusted: only a registered, active tenant is bound.

Resolvers are built once per settings change, so work that depends only on
settings belongs in ``__init__``. Under ASGI the middleware awaits
:meth:`TenantResolver.aresolve`; its default runs :meth:`~TenantResolver.resolve`
in a worker thread (safe for resolvers that read the database). Resolvers that
only look at the request override ``aresolve`` to skip that thread hop.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest
from django.http.request import split_domain_port

from .conf import tenancy_settings
from .membership import user_tenant_ids
from .request import meta_key

__all__ = ["HeaderResolver", "MembershipResolver", "SubdomainResolver", "TenantResolver"]


class TenantResolver:
    """Base class: override :meth:`resolve` (and :meth:`aresolve` if it needs no thread)."""

    #: True when :meth:`resolve` reads ``request.user`` (checked against MIDDLEWARE order).
    requires_user = False

    def resolve(self, request: HttpRequest) -> str | None:
        """Return the tenant id *request* claims, or ``None``."""
        raise NotImplementedError

    async def aresolve(self, request: HttpRequest) -> str | None:
        """Async :meth:`resolve`; by default runs it in a thread, as it may query the database."""
        return await sync_to_async(self.resolve)(request)


class HeaderResolver(TenantResolver):
    """The ``TENANCY["TENANT_HEADER"]`` header (``X-Tenant-ID`` by default).

    An empty header claims nothing, like a missing one.
    """

    def __init__(self) -> None:
        self.key = meta_key(tenancy_settings.TENANT_HEADER)

    def resolve(self, request: HttpRequest) -> str | None:
        return request.META.get(self.key) or None

    async def aresolve(self, request: HttpRequest) -> str | None:
        return request.META.get(self.key) or None


class SubdomainResolver(TenantResolver):
    """The first label of the host under ``TENANCY["SUBDOMAIN_BASE_DOMAIN"]``.

    With a base domain of ``example.com``, ``acme.example.com`` claims ``acme``;
    the base domain itself, deeper names and other hosts claim nothing. The host
    is read through ``request.get_host()``, so ``ALLOWED_HOSTS`` applies first.
    """

    #: Checked by ``manage.py check`` (``tenancy.E012``).
    needs_base_domain = True

    def __init__(self) -> None:
        base = tenancy_settings.SUBDOMAIN_BASE_DOMAIN
        # A missing or malformed base domain claims nothing (the check reports it).
        self.suffix = "." + base.lower().strip(".") if isinstance(base, str) and base else None

    def resolve(self, request: HttpRequest) -> str | None:
        suffix = self.suffix
        if suffix is None:
            return None
        try:
            host = request.get_host()
        except DisallowedHost:  # Django answers it with a 400 where the host matters
            return None
        host, _port = split_domain_port(host)
        if not host.endswith(suffix):
            return None
        label = host[: -len(suffix)]
        return label if label and "." not in label else None

    async def aresolve(self, request: HttpRequest) -> str | None:
        return self.resolve(request)


class MembershipResolver(TenantResolver):
    """The tenant of an authenticated user who is a member of exactly one tenant.

    Reads ``request.user`` (put ``TenantContextMiddleware`` after
    ``AuthenticationMiddleware``) and the cached memberships of that user.
    Users authenticated later by DRF (tokens) are not known yet at this point.
    """

    requires_user = True

    def resolve(self, request: HttpRequest) -> str | None:
        user: Any = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        ids = user_tenant_ids(user.pk)
        return next(iter(ids)) if len(ids) == 1 else None
