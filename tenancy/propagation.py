"""The context across process boundaries: HTTP headers in, HTTP headers out.

Outgoing calls carry the current context in the headers named by
:data:`HEADERS` (the ``TENANCY`` header settings); a receiving service reads
them back with :func:`setup_context_from_headers` (or the middleware does).
Ready hooks for HTTP clients live in :mod:`tenancy.contrib.requests` and
:mod:`tenancy.contrib.httpx`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from contextvars import Token
from typing import Any, TypeVar

from .conf import tenancy_settings
from .current import RuntimeContext, bind, get_context, reset_context
from .ids import (
    CONTEXT_IDS,
    HEADER_SETTINGS,
    describe_rejected,
    is_valid_context_id,
    is_valid_request_id,
    is_valid_tenant_id,
    validate_tenant_id,
)
from .otel import baggage_allowed, baggage_header
from .registry import tenant_context

__all__ = [
    "BAGGAGE_HEADER",
    "HEADERS",
    "add_context_to_headers",
    "context_headers",
    "extract_context_from_headers",
    "run_public_context",
    "set_context_headers",
    "setup_context_from_headers",
]

logger = logging.getLogger("tenancy.propagation")

T = TypeVar("T")

_SETTINGS = tuple(HEADER_SETTINGS.items())
_VALID: dict[str, Callable[[object], bool]] = {
    "tenant_id": is_valid_tenant_id,
    "request_id": is_valid_request_id,
    **dict.fromkeys(CONTEXT_IDS, is_valid_context_id),
}


class _Headers(Mapping[str, str]):
    """Context key -> header name, read from the ``TENANCY`` settings at each use."""

    def __getitem__(self, key: str) -> str:
        for name, setting in _SETTINGS:
            if name == key:
                return getattr(tenancy_settings, setting)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _setting in _SETTINGS)

    def __len__(self) -> int:
        return len(_SETTINGS)

    def __repr__(self) -> str:
        return f"HEADERS({dict(self)!r})"


#: The propagated context keys and their header names:
#: ``{"tenant_id": "X-Tenant-ID", "request_id": "X-Request-ID", "agent_id": "X-Agent-ID", ...}``.
HEADERS: Mapping[str, str] = _Headers()
#: The W3C baggage header, which carries ``tenant.id`` to the hosts of ``TENANCY["BAGGAGE_HOSTS"]``.
BAGGAGE_HEADER = "baggage"


def _lower(headers: Mapping[str, Any]) -> dict[str, Any]:
    return {str(name).lower(): value for name, value in headers.items()}


def extract_context_from_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    """Return the context carried by *headers*: ``{"tenant_id": "acme", ...}``.

    Header names match case-insensitively. Malformed values are left out (and
    logged by length and hash only); nothing is checked against the registry.
    """
    incoming = _lower(headers)
    found: dict[str, str] = {}
    for key, header in HEADERS.items():
        value = incoming.get(header.lower())
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if not value:
            continue
        if _VALID[key](value):
            found[key] = value
        else:
            logger.info("Ignored an invalid %s header (%s)", header, describe_rejected(value))
    return found


def context_headers(ctx: RuntimeContext | None = None, *, url: str | None = None) -> dict[str, str]:
    """Return the headers that carry *ctx* (default: the current context) in a call to *url*.

    With ``TENANCY["BAGGAGE"]`` on and *url*'s host in ``TENANCY["BAGGAGE_HOSTS"]``,
    a ``baggage: tenant.id=<id>`` header too.
    """
    if ctx is None:
        ctx = get_context()
        if ctx is None:
            return {}
    data = ctx._data
    headers = {}
    for key, header in HEADERS.items():
        value = data.get(key)
        if value is not None:
            text = str(value)
            # A value no header may carry is left out, never sent raw.
            if text.isascii() and text.isprintable() and 0 < len(text) <= 1024:
                headers[header] = text
    tenant_id = data.get("tenant_id")
    if url is not None and is_valid_tenant_id(tenant_id) and baggage_allowed(url):
        headers[BAGGAGE_HEADER] = baggage_header(tenant_id)
    return headers


def add_context_to_headers(
    headers: Mapping[str, str] | None = None, *, url: str | None = None
) -> dict[str, str]:
    """Return a copy of *headers* with the current context added (for a call to *url*).

    Headers the caller already set (any case) are kept as they are; a
    ``baggage`` header the caller set gets ``tenant.id`` added to its members
    (when *url* may receive it).
    """
    result = dict(headers or {})
    present = {name.lower(): name for name in result}
    for name, value in context_headers(url=url).items():
        existing = present.get(name.lower())
        if existing is None:
            result[name] = value
        elif name == BAGGAGE_HEADER:
            result[existing] = _merge_baggage(result[existing], value)
    return result


def set_context_headers(headers: MutableMapping[str, str], url: Any = None) -> None:
    """Add the current context to *headers* in place, for a call to *url*.

    *headers* is a case-insensitive mapping (``requests``' and ``httpx``'s
    request headers); what is already set is kept, a ``baggage`` header gets
    ``tenant.id`` added. Used by :mod:`tenancy.contrib.requests` and
    :mod:`tenancy.contrib.httpx`.
    """
    for name, value in context_headers(url=None if url is None else str(url)).items():
        if name not in headers:
            headers[name] = value
        elif name == BAGGAGE_HEADER:
            headers[name] = _merge_baggage(headers[name], value)


def _merge_baggage(existing: str, member: str) -> str:
    tenant_id = member.partition("=")[2]
    return baggage_header(tenant_id, existing)


def setup_context_from_headers(headers: Mapping[str, Any]) -> list[tuple[Token[Any], str]]:
    """Bind the context carried by *headers*; return ``(token, name)`` pairs to undo it.

    Undo in reverse order, in the same frame::

        tokens = setup_context_from_headers(message.headers)
        try:
            ...
        finally:
            for token, name in reversed(tokens):
                reset_context(token, name)

    Only a registered, active tenant is bound: an unknown or inactive one raises
    ``TenantNotRegisteredError`` / ``TenantInactiveError`` before anything is
    bound (a cold lookup reads the database). Malformed values are ignored.
    """
    values = extract_context_from_headers(headers)
    tenant_id = values.get("tenant_id")
    if tenant_id is not None:
        tenant_context.get_active_tenant(tenant_id)
    return [(bind({key: value}), key) for key, value in values.items()]


async def run_public_context(
    coro: Awaitable[T], tenant_id: str = "public", agent_id: str | None = None
) -> T:
    """Await *coro* with ``tenant_id`` (default ``"public"``) and *agent_id* bound.

    For work that serves no particular tenant: the tenant id only has to be
    well-formed, not registered. The previous context is restored afterwards,
    also on exceptions.
    """
    try:
        validate_tenant_id(tenant_id)
        if agent_id is not None and not is_valid_context_id(agent_id):
            raise ValueError(f"Invalid agent id ({describe_rejected(agent_id)}).")
    except ValueError:
        close = getattr(coro, "close", None)
        if close is not None:
            close()  # never awaited: close it rather than leak a warning
        raise
    values: dict[str, str] = {"tenant_id": tenant_id}
    if agent_id is not None:
        values["agent_id"] = agent_id
    token = bind(values)
    try:
        return await coro
    finally:
        reset_context(token)
