"""What a valid identifier looks like: tenant ids and the ids carried in headers."""

from __future__ import annotations

import hashlib
import re
from typing import TypeGuard

from .conf import tenancy_settings
from .exceptions import InvalidTenantIdError

__all__ = [
    "CONTEXT_IDS",
    "HEADER_SETTINGS",
    "TENANT_ID_MAX_LENGTH",
    "describe_rejected",
    "is_valid_context_id",
    "is_valid_request_id",
    "is_valid_tenant_id",
    "validate_tenant_id",
]

TENANT_ID_MAX_LENGTH = 63
_TENANT_ID = re.compile(r"[a-z0-9][a-z0-9_-]*")
# Request, agent, conversation and collection ids: UUIDs, hex, ULIDs, slugs and
# similar; nothing that needs escaping in a header, a log line or a cache key.
_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
REQUEST_ID_MIN_LENGTH = 8
REQUEST_ID_MAX_LENGTH = 128
CONTEXT_ID_MAX_LENGTH = 128

#: The context keys holding agent, conversation and collection ids (``is_valid_context_id``).
CONTEXT_IDS = ("agent_id", "conversation_id", "collection_id")
#: The ``TENANCY`` setting naming the HTTP header of each id that travels in headers.
HEADER_SETTINGS = {
    "tenant_id": "TENANT_HEADER",
    "request_id": "REQUEST_ID_HEADER",
    **{key: f"{key.removesuffix('_id').upper()}_HEADER" for key in CONTEXT_IDS},
}


def is_valid_tenant_id(value: object) -> TypeGuard[str]:
    """Return True if *value* is a well-formed, non-reserved tenant id."""
    return (
        type(value) is str
        and 0 < len(value) <= TENANT_ID_MAX_LENGTH
        and value.isascii()
        and _TENANT_ID.fullmatch(value) is not None
        and value not in tenancy_settings.RESERVED_TENANT_IDS
    )


def validate_tenant_id(value: object) -> str:
    """Return *value* if it is a valid tenant id, else raise ``InvalidTenantIdError``.

    The message never repeats the raw value (it may hold control characters).
    """
    if is_valid_tenant_id(value):
        return value
    if isinstance(value, str) and value in tenancy_settings.RESERVED_TENANT_IDS:
        raise InvalidTenantIdError(
            f"Tenant id {value!r} is reserved and can never be used. "
            "Reserved ids are set by TENANCY['RESERVED_TENANT_IDS']."
        )
    raise InvalidTenantIdError(
        f"Invalid tenant id ({describe_rejected(value)}). Tenant ids are lowercase slugs: "
        "a letter or digit, then letters, digits, '-' or '_', at most "
        f"{TENANT_ID_MAX_LENGTH} characters."
    )


def is_valid_request_id(value: object) -> bool:
    """Return True if *value* is an acceptable incoming ``X-Request-ID``."""
    return (
        type(value) is str
        # Length first: the regex never sees an oversized value.
        and REQUEST_ID_MIN_LENGTH <= len(value) <= REQUEST_ID_MAX_LENGTH
        and value.isascii()
        and _PLAIN_ID.fullmatch(value) is not None
    )


def is_valid_context_id(value: object) -> bool:
    """Return True if *value* is an acceptable agent, conversation or collection id."""
    return (
        type(value) is str
        and 0 < len(value) <= CONTEXT_ID_MAX_LENGTH
        and value.isascii()
        and _PLAIN_ID.fullmatch(value) is not None
    )


def describe_rejected(value: object) -> str:
    """Describe a rejected value safely for logs: its length and a short hash, never the value."""
    if not isinstance(value, (str, bytes)):
        return f"type={type(value).__name__}"
    raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    digest = hashlib.sha256(raw).hexdigest()[:12]
    return f"length={len(value)} sha256={digest}"
