"""Context in every log line: a filter, a record factory, a logger adapter and two formatters.

The usual setup is the filter on your handlers and one of the formatters::

    LOGGING = {
        "version": 1,
        "filters": {"context": {"()": "tenancy.log.TenantContextFilter"}},
        "formatters": {"kv": {"()": "tenancy.log.KeyValueFormatter"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "filters": ["context"],
                "formatter": "kv",
            },
        },
        "root": {"handlers": ["console"], "level": "INFO"},
    }

which writes lines like::

    2025-10-11T14:32:15Z level=INFO logger=app message="Creating run" request_id=5f0c... \
        tenant_id=acme
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from .current import RuntimeContext, _get, get_context, set_log_fields
from .ids import CONTEXT_IDS
from .memo import remember

__all__ = [
    "CONTEXT_FIELDS",
    "ContextAwareLogger",
    "JSONFormatter",
    "KeyValueFormatter",
    "TenantContextFilter",
    "add_context_to_log_record",
    "get_context_log_prefix",
    "get_logger",
]

#: Record attributes set from the context; ``-`` when unset.
CONTEXT_FIELDS = ("request_id", "tenant_id", "user_id", *CONTEXT_IDS)
_UNSET = "-"
_PREFIX_PARTS = (("tenant_id", "t"), ("agent_id", "a"), ("conversation_id", "c"))


def get_context_log_prefix() -> str:
    """Return ``"[t:acme a:agent_12] "`` for the current context (only the parts that are set)."""
    return _prefix(get_context())


def _prefix(ctx: RuntimeContext | None) -> str:
    if ctx is None:
        return ""
    data = ctx._data
    parts = [
        f"{short}:{_printable(data[key])}"
        for key, short in _PREFIX_PARTS
        if data.get(key) is not None
    ]
    return f"[{' '.join(parts)}] " if parts else ""


def _printable(value: Any) -> str:
    """Return *value* as text that cannot break or forge a log line."""
    text = str(value)
    if text.isascii() and text.isprintable() and " " not in text and "]" not in text:
        return text
    return text.encode("unicode_escape").decode("ascii").replace(" ", "\\x20").replace("]", "\\x5d")


_UNSET_FIELDS = dict.fromkeys(CONTEXT_FIELDS, _UNSET)
_FIELD_NAMES = frozenset(CONTEXT_FIELDS)
# Every field but the request id, for the (tenant, user, agent, conversation,
# collection) ids seen lately: the snapshots of all requests of one tenant and
# user share one template, so making a snapshot's fields costs a lookup and a
# copy. Plain strings only (``1`` and ``True`` are one key, not one line).
_TEMPLATES: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()


def _compute_fields(ctx: RuntimeContext | None) -> dict[str, Any]:
    if ctx is None:
        fields = _UNSET_FIELDS.copy()
        fields["context_prefix"] = ""
        return fields
    data = ctx._data
    get = data.get
    key = (
        get("tenant_id"),
        get("user_id"),
        get("agent_id"),
        get("conversation_id"),
        get("collection_id"),
    )
    template = _TEMPLATES.get(key)
    if template is None:
        template = _UNSET_FIELDS.copy()
        for name, value in data.items():
            if value is not None and name in _FIELD_NAMES:
                template[name] = value
        template["request_id"] = _UNSET
        template["context_prefix"] = _prefix(ctx)
        if all(value is None or type(value) is str for value in key):
            remember(_TEMPLATES, key, template)
    fields = template.copy()
    request_id = get("request_id")
    if request_id is not None:
        fields["request_id"] = request_id
    return fields


_NO_CONTEXT = _compute_fields(None)


def _fields(ctx: RuntimeContext | None) -> dict[str, Any]:
    """Return the record attributes for *ctx*: every context field, ``-`` when unset.

    Computed once per snapshot and kept on it (a snapshot never changes, so
    they never go stale): the lines of a request share one dict. Copy it, never
    change it.
    """
    if ctx is None:
        return _NO_CONTEXT
    fields = ctx._log_fields
    if fields is None:
        fields = _compute_fields(ctx)
        set_log_fields(ctx, fields)
    return fields


def _apply(record: logging.LogRecord) -> bool:
    """Set the context fields that *record* does not carry yet (``extra`` wins).

    Records logged after the context is gone but with the request in ``extra``
    (Django's ``django.request`` warnings for 4xx responses) take the request
    id and tenant from that request. Returns True (the filter's answer).
    """
    # _fields() written out: this runs for every record.
    ctx = _get()
    fields = _NO_CONTEXT if ctx is None else (ctx._log_fields or _fields(ctx))
    attrs = record.__dict__
    if attrs.keys().isdisjoint(fields):
        attrs.update(fields)
    else:
        for key, value in fields.items():
            attrs.setdefault(key, value)
    if attrs["request_id"] == _UNSET and "request" in attrs:
        request = attrs["request"]
        request_id = getattr(request, "request_id", None)
        if isinstance(request_id, str):
            attrs["request_id"] = request_id
            tenant = getattr(request, "tenant", None)
            if tenant is not None and attrs["tenant_id"] == _UNSET:
                attrs["tenant_id"] = tenant.tenant_id
    return True


class TenantContextFilter(logging.Filter):
    """Copy the current context into every record, ``-`` when unset; never drops a record.

    Sets ``request_id``, ``tenant_id``, ``user_id``, ``agent_id``,
    ``conversation_id``, ``collection_id`` and ``context_prefix``, so format
    strings such as ``%(tenant_id)s`` never fail. Values already on the record
    (from ``extra=`` or :func:`add_context_to_log_record`) are kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return _apply(record)


class ContextAwareLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger that adds the current context to ``extra``, keeping the caller's ``extra``.

    ``ContextAwareLogger(__name__).info("Creating run", extra={"run_id": 7})``
    logs a record with ``run_id`` and every context field. With
    :func:`add_context_to_log_record` installed the records already carry the
    context, and the adapter adds nothing (logging refuses to overwrite them).
    """

    def __init__(self, logger: str | logging.Logger, extra: Mapping[str, object] | None = None):
        if isinstance(logger, str):
            logger = logging.getLogger(logger)
        super().__init__(logger, extra or {})

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        caller = kwargs.get("extra") or {}
        if _installed_factory is not None and logging.getLogRecordFactory() is _installed_factory:
            kwargs["extra"] = {**self.extra, **caller} if self.extra else caller
            return msg, kwargs
        kwargs["extra"] = {**_fields(get_context()), **(self.extra or {}), **caller}
        return msg, kwargs


def get_logger(name: str) -> ContextAwareLogger:
    """Return a :class:`ContextAwareLogger` for *name* (use ``get_logger(__name__)``)."""
    return ContextAwareLogger(name)


_factory_lock = threading.Lock()
_installed_factory: Callable[..., logging.LogRecord] | None = None


def add_context_to_log_record() -> None:
    """Make every new log record carry the context fields (installs a record factory once).

    The record factory wraps the current one; calling this again is a no-op.
    The values are those of the code that logs, even when a handler formats the
    record later in another thread. Once installed, ``extra=`` may not name a
    context field (logging refuses to overwrite record attributes).
    """
    global _installed_factory
    with _factory_lock:
        current = logging.getLogRecordFactory()
        if current is _installed_factory:
            return

        def record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = current(*args, **kwargs)
            record.__dict__.update(_fields(get_context()))
            return record

        _installed_factory = record_factory
        logging.setLogRecordFactory(record_factory)


# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_SKIP = _STANDARD | set(CONTEXT_FIELDS) | {"context_prefix"}
_SCALARS = (str, int, float, bool, type(None))
_BARE = re.compile(r"[A-Za-z0-9._:/@+-]+")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def _context_of(record: logging.LogRecord) -> dict[str, Any]:
    # Without a filter or factory, the context is that of the code formatting the record.
    _apply(record)
    attrs = record.__dict__
    return {key: attrs[key] for key in CONTEXT_FIELDS}


def _extras(record: logging.LogRecord) -> list[tuple[str, Any]]:
    """Return the scalar ``extra=`` values of *record* (objects such as a request are left out)."""
    return [
        (key, value)
        for key, value in record.__dict__.items()
        if key not in _SKIP and isinstance(value, _SCALARS) and not key.startswith("_")
    ]


def _utc(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))


def _kv(value: Any) -> str:
    """Render a value for a key=value line: bare when safe, else a JSON string (all escaped)."""
    text = _UNSET if value is None else value if isinstance(value, str) else str(value)
    return text if _BARE.fullmatch(text) else json.dumps(text)


class KeyValueFormatter(logging.Formatter):
    """One line per record: ``2025-10-11T14:32:15Z level=INFO message="..." request_id=...``.

    ``request_id`` and ``tenant_id`` are always written (``-`` when unset), the
    other context fields when set, then scalar ``extra=`` values. Values are
    quoted and escaped when needed (quotes, control characters, non-ASCII), so
    no value can break a line or forge a field.
    """

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            _utc(record),
            f"level={record.levelname}",
            f"logger={_kv(record.name)}",
            f"message={json.dumps(record.getMessage())}",
        ]
        for key, value in _context_of(record).items():
            if key in ("request_id", "tenant_id") or value not in (None, _UNSET):
                parts.append(f"{key}={_kv(value)}")
        for key, value in _extras(record):
            parts.append(f"{key if _KEY.fullmatch(key) else json.dumps(key)}={_kv(value)}")
        if record.exc_info:
            parts.append(f"exc_info={json.dumps(self.formatException(record.exc_info))}")
        if record.stack_info:
            parts.append(f"stack_info={json.dumps(self.formatStack(record.stack_info))}")
        return " ".join(parts)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context fields, scalar extras.

    Unset context fields are ``null``. Output is ASCII (``\\uXXXX`` escapes),
    one line per record whatever the values hold.
    """

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "timestamp": _utc(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _context_of(record).items():
            data[key] = None if value == _UNSET else value
        for key, value in _extras(record):
            data.setdefault(key, value)
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            data["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(data, default=str)
