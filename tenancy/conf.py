"""The ``TENANCY`` settings dict: documented defaults, read in one place.

Values are read lazily from ``settings.TENANCY`` and reloaded when Django sends
``setting_changed`` (so ``override_settings(TENANCY=...)`` works in tests).
Nothing is ever written into ``django.conf.settings``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed

__all__ = ["DEFAULTS", "tenancy_settings"]

DEFAULTS: dict[str, Any] = {
    # Request headers read by the middleware and written by propagation.
    "TENANT_HEADER": "X-Tenant-ID",
    "REQUEST_ID_HEADER": "X-Request-ID",
    "AGENT_HEADER": "X-Agent-ID",
    "CONVERSATION_HEADER": "X-Conversation-ID",
    "COLLECTION_HEADER": "X-Collection-ID",
    # Dotted paths of tenant resolvers, tried in order; the first claim wins.
    "RESOLVERS": ["tenancy.resolvers.HeaderResolver"],
    # Base domain for tenancy.resolvers.SubdomainResolver ("example.com").
    "SUBDOMAIN_BASE_DOMAIN": None,
    # Cache alias holding tenant state, and how long an entry lives (seconds).
    "CACHE_ALIAS": "default",
    "CACHE_TIMEOUT": 300,
    "CACHE_KEY_PREFIX": "tenancy",
    # After a cache failure the cache is skipped (the database answers) for this
    # many seconds, then tried again; a warning is logged at most once per
    # OUTAGE_LOG_INTERVAL seconds per cache (tenancy.outage).
    "CACHE_RETRY_INTERVAL": 1.0,
    "OUTAGE_LOG_INTERVAL": 60.0,
    # Unknown and inactive tenants get one 403 (code "tenant_denied") for callers
    # who are not members or staff, so tenant ids cannot be enumerated.
    "UNIFORM_DENIAL": False,
    # Tenants kept in this process's cache (the whole state with a local-memory
    # cache, the local copy in front of a shared one); beyond it the least
    # recently used are evicted one by one (CLOCK, see tenancy.state).
    "LOCAL_CACHE_SIZE": 100_000,
    # With a shared cache: how often (seconds, at most) a process checks the
    # shared state version and drops its local copy when another process changed
    # a tenant. A change is refused everywhere within this interval.
    "STATE_RECHECK_INTERVAL": 0.5,
    # Keys tenancy.cache.make_key leaves shared, whoever is bound (besides the
    # package's own CACHE_KEY_PREFIX keys): a session belongs to a user, not a tenant.
    "CACHE_SHARED_PREFIXES": ["django.contrib.sessions."],
    # Statistics: counters are flushed to the database this often (seconds). Without
    # a shared cache, a process killed with SIGKILL loses at most this interval's counts.
    "STATS_ENABLED": True,
    "STATS_FLUSH_INTERVAL": 1,
    # Keep counts in Redis as they happen (one Lua call per request), so a killed
    # process loses none: None = on when the STATS_CACHE_ALIAS cache is Redis.
    "STATS_SHARED": None,
    # The cache holding the shared counts; None = CACHE_ALIAS.
    "STATS_CACHE_ALIAS": None,
    # Flush without being asked: at the end of requests when due, from a daemon
    # thread every STATS_FLUSH_INTERVAL seconds, and at interpreter exit. Turn it
    # off where you call tenancy.stats.flush.flush_stats() yourself (test suites).
    "STATS_AUTO_FLUSH": True,
    # Tenant ids that can never be registered or bound.
    "RESERVED_TENANT_IDS": ["default"],
    # Global runtime settings read when no user is given (tenancy.runtime).
    "RUNTIME_DEFAULTS": {"provider": None, "model": None},
    # One access log line per request, on this logger.
    "ACCESS_LOG": True,
    "ACCESS_LOGGER": "tenancy.access",
    # Upper bound of tenancy.memory.ContextManager instances kept per process.
    "MEMORY_MAX_INSTANCES": 1024,
    # PostgreSQL row-level security on every tenant-scoped table (docs/rls.md), and
    # the NOLOGIN BYPASSRLS role that bypass() and the unscoped manager switch to.
    "ROW_LEVEL_SECURITY": False,
    "RLS_BYPASS_ROLE": None,
    # Add the tenant id to the W3C "baggage" header of outgoing calls (tenancy.propagation),
    # only to these hosts (ALLOWED_HOSTS patterns: "billing.internal", ".internal").
    "BAGGAGE": False,
    "BAGGAGE_HOSTS": [],
}


class TenancySettings:
    """Attribute access to ``settings.TENANCY`` merged over :data:`DEFAULTS`."""

    def __init__(self) -> None:
        self._cached: set[str] = set()

    @property
    def user_settings(self) -> dict[str, Any]:
        value = getattr(django_settings, "TENANCY", None) or {}
        return value if isinstance(value, dict) else {}

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Invalid TENANCY setting: {name!r}")
        value = self.user_settings.get(name, DEFAULTS[name])
        # Cache on the instance: later reads skip __getattr__ entirely.
        self._cached.add(name)
        setattr(self, name, value)
        return value

    def reload(self) -> None:
        for name in self._cached:
            delattr(self, name)
        self._cached.clear()


tenancy_settings = TenancySettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting in ("TENANCY", "CACHES"):
        tenancy_settings.reload()


setting_changed.connect(_reload, dispatch_uid="tenancy.conf.reload")
