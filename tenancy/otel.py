"""OpenTelemetry: the context on the current span, and the tenant in W3C baggage.

Optional: with ``opentelemetry-api`` installed (``pip install
django-tenancy-kit[otel]``), :func:`annotate_span` sets ``tenant.id``,
``request.id`` and ``enduser.id`` (and ``tenancy.denied``, the refusal code)
on the current span when it is recording. The middleware calls it once per
request; task and websocket integrations call it right after binding their
context, and again on a refusal. Without the package nothing is imported:
:data:`AVAILABLE` is False and callers skip the call.

Baggage (``TENANCY["BAGGAGE"] = True``) is plain W3C header text and needs no
package: :func:`baggage_header` is what :mod:`tenancy.propagation` adds to
outgoing calls, only for the hosts of ``TENANCY["BAGGAGE_HOSTS"]``, since
baggage travels in every header of every call that carries it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from django.http.request import validate_host

from .conf import tenancy_settings
from .current import get_context

try:  # the only place tenancy imports OpenTelemetry
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - exercised in a subprocess without the package
    _trace = None  # type: ignore[assignment]

__all__ = [
    "ATTRIBUTES",
    "AVAILABLE",
    "BAGGAGE_KEY",
    "DENIED_ATTRIBUTE",
    "annotate_span",
    "baggage_allowed",
    "baggage_header",
    "recording_span",
    "set_attributes",
]

#: True when ``opentelemetry-api`` is importable.
AVAILABLE = _trace is not None
#: Span attribute of each context key.
ATTRIBUTES = (("tenant_id", "tenant.id"), ("request_id", "request.id"), ("user_id", "enduser.id"))
#: Span attribute holding the code of a refusal (``tenant_not_registered``...).
DENIED_ATTRIBUTE = "tenancy.denied"
#: The baggage member carrying the tenant id.
BAGGAGE_KEY = "tenant.id"


def annotate_span(values: Mapping[str, Any] | None = None, code: str | None = None) -> None:
    """Set the context's ids (and a refusal *code*) on the current span, if it is recording.

    *values* is a mapping with ``tenant_id``, ``request_id``, ``user_id`` (any
    may be missing); by default the current context. ``None`` values are left
    out; user ids are set as strings. Does nothing without ``opentelemetry-api``.
    """
    span = recording_span()
    if span is None:
        return
    if values is None:
        ctx = get_context()
        values = {} if ctx is None else ctx.variables
    set_attributes(span, values, code)


def recording_span() -> Any:
    """Return the current span if it is recording, else ``None`` (also without the package)."""
    if _trace is None:
        return None
    span = _trace.get_current_span()
    return span if span.is_recording() else None


def set_attributes(span: Any, values: Mapping[str, Any], code: str | None = None) -> None:
    """Set *values*' ids and the refusal *code* on *span* (see :func:`annotate_span`)."""
    attributes = {}
    for key, attribute in ATTRIBUTES:
        value = values.get(key)
        if value is not None:
            attributes[attribute] = value if isinstance(value, str) else str(value)
    if code is not None:
        attributes[DENIED_ATTRIBUTE] = code
    if attributes:
        span.set_attributes(attributes)


def baggage_allowed(url: str | None) -> bool:
    """Return True if ``TENANCY["BAGGAGE"]`` is on and *url*'s host is in ``BAGGAGE_HOSTS``."""
    if not url or not tenancy_settings.BAGGAGE:
        return False
    try:
        host = urlsplit(str(url)).hostname
    except ValueError:
        return False
    return host is not None and validate_host(host, tenancy_settings.BAGGAGE_HOSTS)


def baggage_header(tenant_id: str, existing: str | None = None) -> str:
    """Return the ``baggage`` header value *existing* with ``tenant.id`` added (or kept).

    A ``tenant.id`` member already in *existing* is kept as it is: the caller set it.
    """
    member = f"{BAGGAGE_KEY}={quote(tenant_id, safe='')}"
    if not existing or not existing.strip():
        return member
    names = {part.split("=", 1)[0].strip() for part in existing.split(",")}
    if BAGGAGE_KEY in names:
        return existing
    return f"{existing},{member}"
