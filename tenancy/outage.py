"""What the package does when its cache or its database cannot be reached.

Every call the package makes into Django's cache goes through a
:class:`GuardedCache` (:func:`guarded_cache`): an exception of the backend
(redis ``ConnectionError``, ``TimeoutError``, anything else it raises) is a
miss for a read and a no-op for a write, so lookups fall back to the database
and requests keep being served with the same isolation. After a failure the
cache is left alone for ``TENANCY["CACHE_RETRY_INTERVAL"]`` seconds, then
tried again: recovery needs nothing but the cache coming back. The keys this
process failed to write or delete meanwhile are deleted when it does, so no
state older than the outage is read from it afterwards.

A warning is logged at most once per ``TENANCY["OUTAGE_LOG_INTERVAL"]``
seconds per cache, with the error (escaped) and how many failures it stands
for; a line at INFO says when the cache is back.

:func:`database_guard` turns the database's ``OperationalError`` and
``InterfaceError`` during a tenant lookup into :class:`TenancyUnavailableError`
(HTTP 503, code ``tenancy_unavailable``), which the middleware answers as JSON.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.cache import caches
from django.core.signals import setting_changed
from django.db.utils import InterfaceError, OperationalError

from .conf import tenancy_settings
from .exceptions import TenancyUnavailableError

__all__ = [
    "GuardedCache",
    "database_guard",
    "describe_error",
    "guarded_cache",
    "report_failure",
    "reset_outage_state",
]

logger = logging.getLogger("tenancy.outage")
_monotonic = time.monotonic
# At most this many keys are remembered for deletion once a cache is back.
_STALE_LIMIT = 10_000
_MAX_DESCRIPTION = 200


def describe_error(exc: BaseException) -> str:
    """Return ``Type: 'message'``, escaped and shortened: safe in any log line."""
    message = str(exc)
    if len(message) > _MAX_DESCRIPTION:
        message = message[:_MAX_DESCRIPTION] + "..."
    return f"{type(exc).__name__}: {message!r}"


class _Warnings:
    """One warning per interval and per subject; the failures between two are counted."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last: dict[str, float] = {}
        self.suppressed: dict[str, int] = {}

    def warn(self, subject: str, message: str, *args: Any) -> None:
        now = _monotonic()
        with self.lock:
            last = self.last.get(subject)
            if last is not None and now - last < float(tenancy_settings.OUTAGE_LOG_INTERVAL):
                self.suppressed[subject] = self.suppressed.get(subject, 0) + 1
                return
            self.last[subject] = now
            skipped = self.suppressed.pop(subject, 0)
        if skipped:
            logger.warning(message + " (and %d times since the last warning)", *args, skipped)
        else:
            logger.warning(message, *args)

    def forget(self, subject: str) -> None:
        with self.lock:
            self.last.pop(subject, None)
            self.suppressed.pop(subject, None)


_warnings = _Warnings()


def report_failure(subject: str, exc: BaseException, consequence: str) -> None:
    """Log that *subject* failed with *exc*, at most once per ``OUTAGE_LOG_INTERVAL``."""
    _warnings.warn(subject, "%s failed (%s): %s", subject, describe_error(exc), consequence)


class _Health:
    """Whether one cache alias answers, shared by every :class:`GuardedCache` of it."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.subject = f"The cache {alias!r}"
        self.lock = threading.Lock()
        self.retry_at = 0.0  # while in the future, calls are skipped
        self.failing = False
        # Keys whose write or delete failed: their cached value may be stale.
        self.stale: set[str] = set()
        self.overflowed = False

    def usable(self) -> bool:
        return not self.failing or _monotonic() >= self.retry_at

    def failed(self, exc: BaseException, keys: Any = ()) -> None:
        with self.lock:
            self.failing = True
            self.retry_at = _monotonic() + float(tenancy_settings.CACHE_RETRY_INTERVAL)
            for key in keys:
                if len(self.stale) >= _STALE_LIMIT:
                    self.overflowed = True
                    break
                self.stale.add(key)
        report_failure(self.subject, exc, "served from the database until it answers again")

    def skipped(self, keys: Any = ()) -> None:
        """A write skipped while the cache is failing: its keys may hold stale state."""
        with self.lock:
            for key in keys:
                if len(self.stale) >= _STALE_LIMIT:
                    self.overflowed = True
                    break
                self.stale.add(key)

    def recovered(self, cache: Any) -> None:
        """Delete the keys written during the outage, then mark the cache healthy."""
        with self.lock:
            if not self.failing:
                return
            stale, self.stale = self.stale, set()
            overflowed, self.overflowed = self.overflowed, False
            self.failing = False
        if stale:
            try:
                cache.delete_many(list(stale))
            except Exception as exc:  # down again: keep them for the next recovery
                self.failed(exc, stale)
                return
        _warnings.forget(self.subject)
        logger.info("%s answers again (%d stale keys deleted).", self.subject, len(stale))
        if overflowed:
            logger.warning(
                "%s missed more than %d writes during the outage: entries older than it "
                "may be read until they expire (TENANCY['CACHE_TIMEOUT'] seconds).",
                self.subject,
                _STALE_LIMIT,
            )


_health: dict[str, _Health] = {}
_health_lock = threading.Lock()


def _health_of(alias: str) -> _Health:
    health = _health.get(alias)
    if health is None:
        with _health_lock:
            health = _health.setdefault(alias, _Health(alias))
    return health


class GuardedCache:
    """A Django cache whose failures are misses and no-ops, logged; see the module docstring.

    Reads return their default (``get``) or nothing found; writes return what
    the backend would for "not written". ``incr``/``decr`` still raise
    ``ValueError`` for a missing key, as Django's API says, and return
    ``None`` when the cache failed.
    """

    def __init__(self, cache: Any, alias: str) -> None:
        self.cache = cache
        self.alias = alias
        self.health = _health_of(alias)

    def __repr__(self) -> str:
        return f"GuardedCache({self.alias!r})"

    @property
    def available(self) -> bool:
        """False while the cache is failing and not due to be tried again."""
        return self.health.usable()

    def _call(self, default: Any, keys: Any, write: bool, method: str, *args: Any) -> Any:
        health = self.health
        if health.failing:
            if _monotonic() < health.retry_at:
                if write:
                    health.skipped(keys)
                return default
        try:
            result = getattr(self.cache, method)(*args)
        except Exception as exc:
            if method in ("incr", "decr") and isinstance(exc, ValueError):
                raise  # a missing key, not a failure
            health.failed(exc, keys if write else ())
            return default
        if health.failing:
            health.recovered(self.cache)
        return result

    def get(self, key: str, default: Any = None) -> Any:
        return self._call(default, (), False, "get", key, default)

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        return self._call({}, (), False, "get_many", keys)

    def has_key(self, key: str) -> bool:
        return bool(self._call(False, (), False, "has_key", key))

    def add(self, key: str, value: Any, timeout: Any = None) -> bool:
        # A skipped add leaves nothing stale: it never overwrites.
        return bool(self._call(False, (), False, "add", key, value, timeout))

    def set(self, key: str, value: Any, timeout: Any = None) -> None:
        self._call(None, (key,), True, "set", key, value, timeout)

    def set_many(self, data: dict[str, Any], timeout: Any = None) -> list[str]:
        failed = list(data)
        return self._call(failed, failed, True, "set_many", data, timeout)

    def delete(self, key: str) -> bool:
        return bool(self._call(False, (key,), True, "delete", key))

    def delete_many(self, keys: list[str]) -> None:
        self._call(None, list(keys), True, "delete_many", keys)

    def touch(self, key: str, timeout: Any = None) -> bool:
        return bool(self._call(False, (), False, "touch", key, timeout))

    # A failed incr() is not remembered as stale: deleting a counter would lose counts.

    def incr(self, key: str, delta: int = 1) -> Any:
        return self._call(None, (), False, "incr", key, delta)

    def decr(self, key: str, delta: int = 1) -> Any:
        return self._call(None, (), False, "decr", key, delta)

    def clear(self) -> None:
        self._call(None, (), False, "clear")


def reset_outage_state() -> None:
    """Forget every cache's health and the warnings logged (tests; sent when CACHES change)."""
    with _health_lock:
        _health.clear()
    with _warnings.lock:
        _warnings.last.clear()
        _warnings.suppressed.clear()


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "CACHES":
        reset_outage_state()


setting_changed.connect(_settings_changed, dispatch_uid="tenancy.outage.reset")


def guarded_cache(alias: str | None = None) -> GuardedCache:
    """Return the cache *alias* (default ``TENANCY["CACHE_ALIAS"]``) behind its guard."""
    if alias is None:
        alias = tenancy_settings.CACHE_ALIAS
    return GuardedCache(caches[alias], alias)


@contextmanager
def database_guard(what: str = "Tenant state") -> Iterator[None]:
    """Raise :class:`TenancyUnavailableError` for a database that cannot be reached.

    Only ``OperationalError`` and ``InterfaceError`` (connection refused, lost,
    timed out): any other database error is a bug to see, not an outage.
    """
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        report_failure("The database", exc, f"{what} cannot be read: answering 503")
        raise TenancyUnavailableError() from exc
