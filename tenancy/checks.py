"""System checks: misconfiguration of ``TENANCY`` is reported by ``manage.py check``."""

from __future__ import annotations

import re
import sys
from typing import Any

from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from .conf import DEFAULTS, tenancy_settings
from .ids import HEADER_SETTINGS

_HEADER = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_HEADER_KEYS = tuple(HEADER_SETTINGS.values())


def _error(msg: str, hint: str, id: str) -> checks.CheckMessage:
    return checks.Error(msg, hint=hint, id=id)


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Check the ``TENANCY`` dict against :data:`tenancy.conf.DEFAULTS`."""
    raw = getattr(settings, "TENANCY", {})
    if not isinstance(raw, dict):
        return [
            _error(
                "TENANCY must be a dict.",
                "Set TENANCY = {...} in your settings, with keys from tenancy.conf.DEFAULTS.",
                "tenancy.E001",
            )
        ]
    errors: list[checks.CheckMessage] = []
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        errors.append(
            checks.Warning(
                f"Unknown TENANCY keys: {', '.join(unknown)}.",
                hint="Check the spelling; the keys are listed in tenancy.conf.DEFAULTS.",
                id="tenancy.W001",
            )
        )
    conf = {**DEFAULTS, **raw}
    for key in _HEADER_KEYS:
        value = conf[key]
        if not isinstance(value, str) or not _HEADER.fullmatch(value):
            errors.append(
                _error(
                    f"TENANCY[{key!r}] must be an HTTP header name like 'X-Tenant-ID'.",
                    "Use letters, digits and '-' only.",
                    "tenancy.E002",
                )
            )
    if conf["CACHE_ALIAS"] not in getattr(settings, "CACHES", {}):
        errors.append(
            _error(
                f"TENANCY['CACHE_ALIAS'] is {conf['CACHE_ALIAS']!r}, which is not in CACHES.",
                "Name one of the aliases defined in CACHES (usually 'default').",
                "tenancy.E003",
            )
        )
    errors.extend(_redis_timeouts(getattr(settings, "CACHES", {}).get(conf["CACHE_ALIAS"])))
    stats_alias = conf["STATS_CACHE_ALIAS"]
    if stats_alias is not None and stats_alias not in getattr(settings, "CACHES", {}):
        errors.append(
            _error(
                f"TENANCY['STATS_CACHE_ALIAS'] is {stats_alias!r}, which is not in CACHES.",
                "Name a Redis cache of CACHES, or None to use CACHE_ALIAS.",
                "tenancy.E015",
            )
        )
    if conf["STATS_SHARED"] not in (None, True, False):
        errors.append(
            _error(
                "TENANCY['STATS_SHARED'] must be None, True or False.",
                "None (the default) keeps counts in Redis when the statistics cache is Redis.",
                "tenancy.E016",
            )
        )
    resolvers = conf["RESOLVERS"]
    if not isinstance(resolvers, (list, tuple)) or not resolvers:
        errors.append(
            _error(
                "TENANCY['RESOLVERS'] must be a non-empty list of dotted paths.",
                "For example ['tenancy.resolvers.HeaderResolver'].",
                "tenancy.E004",
            )
        )
    else:
        for path in resolvers:
            try:
                if not isinstance(path, str):
                    raise TypeError(path)
                resolver = import_string(path)
            except (ImportError, TypeError, ValueError):
                errors.append(
                    _error(
                        f"TENANCY['RESOLVERS'] names {path!r}, which cannot be imported.",
                        "Use a dotted path to a resolver class, e.g. "
                        "'tenancy.resolvers.SubdomainResolver'.",
                        "tenancy.E004",
                    )
                )
                continue
            if getattr(resolver, "needs_base_domain", False):
                base = conf["SUBDOMAIN_BASE_DOMAIN"]
                if not isinstance(base, str) or not base.strip("."):
                    errors.append(
                        _error(
                            f"{path} needs TENANCY['SUBDOMAIN_BASE_DOMAIN'].",
                            "Set it to the domain tenants are subdomains of, e.g. "
                            "'example.com' (acme.example.com claims 'acme').",
                            "tenancy.E012",
                        )
                    )
    reserved = conf["RESERVED_TENANT_IDS"]
    if not isinstance(reserved, (list, tuple, set, frozenset)) or "default" not in reserved:
        errors.append(
            _error(
                "TENANCY['RESERVED_TENANT_IDS'] must be a list that contains 'default'.",
                "'default' is never a valid tenant id; add your own reserved ids beside it.",
                "tenancy.E005",
            )
        )
    for key in (
        "CACHE_TIMEOUT",
        "STATS_FLUSH_INTERVAL",
        "STATE_RECHECK_INTERVAL",
        "CACHE_RETRY_INTERVAL",
        "OUTAGE_LOG_INTERVAL",
    ):
        value = conf[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            errors.append(
                _error(
                    f"TENANCY[{key!r}] must be a positive number of seconds.",
                    f"The default is {DEFAULTS[key]}.",
                    "tenancy.E006",
                )
            )
    for key in ("STATS_ENABLED", "STATS_AUTO_FLUSH", "BAGGAGE", "UNIFORM_DENIAL"):
        if not isinstance(conf[key], bool):
            errors.append(
                _error(
                    f"TENANCY[{key!r}] must be True or False.",
                    f"The default is {DEFAULTS[key]}.",
                    "tenancy.E011",
                )
            )
    if not isinstance(conf["RUNTIME_DEFAULTS"], dict):
        errors.append(
            _error(
                "TENANCY['RUNTIME_DEFAULTS'] must be a dict.",
                "For example {'provider': 'openai', 'model': 'gpt-4o-mini'}.",
                "tenancy.E007",
            )
        )
    for key in ("MEMORY_MAX_INSTANCES", "LOCAL_CACHE_SIZE"):
        value = conf[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            errors.append(
                _error(
                    f"TENANCY[{key!r}] must be a positive integer.",
                    f"The default is {DEFAULTS[key]}.",
                    "tenancy.E008",
                )
            )
    for key in ("CACHE_SHARED_PREFIXES", "BAGGAGE_HOSTS"):
        value = conf[key]
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(item, str) and item for item in value
        ):
            errors.append(
                _error(
                    f"TENANCY[{key!r}] must be a list of non-empty strings.",
                    f"The default is {DEFAULTS[key]!r}.",
                    "tenancy.E013",
                )
            )
    errors.extend(_baggage_warnings(conf))
    logger_name = conf["ACCESS_LOGGER"]
    if not isinstance(logger_name, str) or not logger_name:
        errors.append(
            _error(
                "TENANCY['ACCESS_LOGGER'] must be a logger name.",
                f"The default is {DEFAULTS['ACCESS_LOGGER']!r}; turn the line off with "
                "TENANCY['ACCESS_LOG'] = False.",
                "tenancy.E010",
            )
        )
    return errors


# The socket timeouts of each Redis backend's OPTIONS: without them a Redis that
# stops answering holds every request that looks a tenant up (redis-py waits forever).
_REDIS_TIMEOUTS = {
    "django.core.cache.backends.redis.RedisCache": ("socket_connect_timeout", "socket_timeout"),
    "django_redis.cache.RedisCache": ("SOCKET_CONNECT_TIMEOUT", "SOCKET_TIMEOUT"),
}


def _redis_timeouts(cache: Any) -> list[checks.CheckMessage]:
    """``tenancy.W006`` for a Redis tenant cache whose socket timeouts are not set."""
    if not isinstance(cache, dict):
        return []
    names = _REDIS_TIMEOUTS.get(str(cache.get("BACKEND", "")))
    options = cache.get("OPTIONS") or {}
    missing = [name for name in names or () if name not in options]
    if not missing:
        return []
    return [
        checks.Warning(
            f"The Redis cache of TENANCY['CACHE_ALIAS'] sets no {' or '.join(missing)}: "
            "a Redis that stops answering would hold every request that looks a tenant up.",
            hint=f"Add {', '.join(f'{name!r}: 0.5' for name in missing)} to its OPTIONS "
            "(see docs/production.md).",
            id="tenancy.W006",
        )
    ]


def _baggage_warnings(conf: dict[str, Any]) -> list[checks.CheckMessage]:
    """Baggage on, but sent nowhere (no host) or everywhere (``*``)."""
    hosts = conf["BAGGAGE_HOSTS"]
    if conf["BAGGAGE"] is not True or not isinstance(hosts, (list, tuple)):
        return []
    if not hosts:
        return [
            checks.Warning(
                "TENANCY['BAGGAGE'] is on but TENANCY['BAGGAGE_HOSTS'] is empty: no outgoing "
                "call carries the tenant in its baggage header.",
                hint="List the hosts that may receive it, e.g. ['billing.internal', "
                "'.svc.cluster.local'], or turn BAGGAGE off.",
                id="tenancy.W004",
            )
        ]
    if "*" in hosts:
        return [
            checks.Warning(
                "TENANCY['BAGGAGE_HOSTS'] contains '*': every outgoing call, to any host, "
                "carries the tenant id in its baggage header.",
                hint="Name your own services instead ('billing.internal', '.internal').",
                id="tenancy.W005",
            )
        ]
    return []


_MIDDLEWARE = "tenancy.middleware.TenantContextMiddleware"
_AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"


def _subclass_index(class_path: str, candidate_paths: list[str]) -> int:
    """Return the index of the first of *candidate_paths* that is *class_path* or a subclass.

    As ``django.contrib.auth.checks`` does: a project's own subclass of a
    middleware counts as that middleware. -1 when none is.
    """
    cls = import_string(class_path)
    for index, path in enumerate(candidate_paths):
        try:
            candidate = import_string(path)
        except (ImportError, TypeError, ValueError):
            continue
        if isinstance(candidate, type) and issubclass(candidate, cls):
            return index
    return -1


def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Resolvers that read ``request.user`` need the middleware after AuthenticationMiddleware."""
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    ours = _subclass_index(_MIDDLEWARE, middleware)
    if ours < 0:
        return [
            checks.Warning(
                f"{_MIDDLEWARE} is not in MIDDLEWARE: requests get no request id and no "
                "tenant, so TenantRequired and @tenant_required refuse every request.",
                hint=f"Add {_MIDDLEWARE!r} to MIDDLEWARE, after "
                "AuthenticationMiddleware (ignore this in a project that only switches "
                "tenants outside requests).",
                id="tenancy.W002",
            )
        ]
    raw = getattr(settings, "TENANCY", {})
    resolvers = raw.get("RESOLVERS", DEFAULTS["RESOLVERS"]) if isinstance(raw, dict) else []
    needs_user = []
    for path in resolvers if isinstance(resolvers, (list, tuple)) else []:
        try:
            if getattr(import_string(path), "requires_user", False):
                needs_user.append(path)
        except ImportError:
            continue  # reported by check_settings
    if not needs_user:
        return []
    if 0 <= _subclass_index(_AUTH_MIDDLEWARE, middleware) < ours:
        return []
    return [
        _error(
            f"{_MIDDLEWARE} must come after {_AUTH_MIDDLEWARE} in MIDDLEWARE: "
            f"{', '.join(needs_user)} reads request.user.",
            f"Move {_MIDDLEWARE!r} below {_AUTH_MIDDLEWARE!r}.",
            "tenancy.E009",
        )
    ]


def scoped_reference_warnings(models: Any) -> list[checks.CheckMessage]:
    """Warn for each foreign key, one-to-one or many-to-many of *models* to a scoped model

    that is declared on a model which is not tenant-scoped itself: reads and
    writes through it are not scoped, so they cross tenants.
    """
    found: list[checks.CheckMessage] = []
    for model in models:
        if getattr(model, "tenant_scoped", False):
            continue
        for field in [*model._meta.local_fields, *model._meta.local_many_to_many]:
            related: Any = getattr(field, "related_model", None)
            # The marker is True on scoped model classes; a lazy reference is a str.
            if getattr(related, "tenant_scoped", False) is not True:
                continue
            label = model._meta.label
            found.append(
                checks.Warning(
                    f"{label}.{field.name} references the tenant-scoped model "
                    f"{related._meta.label}, but {label} is not tenant-scoped: reads and "
                    "writes through this field cross tenants.",
                    hint=f"Make {label} a TenantScopedModel, or reach "
                    f"{related._meta.label} rows only through its scoped manager "
                    "(objects), never through this field.",
                    obj=field,
                    id="tenancy.W003",
                )
            )
    return found


def check_scoped_references(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``tenancy.W003`` for installed models that reach scoped rows through a relation."""
    from django.apps import apps

    configs = app_configs if app_configs is not None else apps.get_app_configs()
    return scoped_reference_warnings(m for config in configs for m in config.get_models())


_APP_ROLE_HINT = (
    "Connect the application as a role without SUPERUSER or BYPASSRLS: "
    "CREATE ROLE tenancy_app LOGIN; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN "
    "SCHEMA public TO tenancy_app; GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "
    "tenancy_app; run migrate as the tables' owner (see docs/rls.md)."
)


def check_rls_engines(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``tenancy.E020``: row-level security needs PostgreSQL on every database."""
    from django.db import connections

    if not tenancy_settings.ROW_LEVEL_SECURITY:
        return []
    return [
        _error(
            f"TENANCY['ROW_LEVEL_SECURITY'] needs PostgreSQL; database {alias!r} is "
            f"{connections[alias].vendor}.",
            "Use PostgreSQL, or set TENANCY['ROW_LEVEL_SECURITY'] = False.",
            "tenancy.E020",
        )
        for alias in connections
        if connections[alias].vendor != "postgresql"
    ]


def _migrating() -> bool:
    # ``manage.py migrate`` runs the database checks before migrating: there the
    # connected role is the tables' owner, and migrating is what creates the policies.
    return len(sys.argv) > 1 and sys.argv[1] == "migrate"


def check_rls_database(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """``tenancy.E021``-``E023``: the connected role, the bypass role and each table's policy."""
    from django.db import connections

    from . import rls

    if not tenancy_settings.ROW_LEVEL_SECURITY or _migrating():
        return []
    errors: list[checks.CheckMessage] = []
    for alias in databases or ():
        connection = connections[alias]
        if connection.vendor != "postgresql":
            continue
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles "
                "WHERE rolname = current_user"
            )
            user, superuser, bypasses = cursor.fetchone()
            role = tenancy_settings.RLS_BYPASS_ROLE
            cursor.execute(
                "SELECT rolbypassrls, pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles "
                "WHERE rolname = %s",
                [role if isinstance(role, str) else ""],
            )
            bypass_role = cursor.fetchone()
        if superuser or bypasses:
            errors.append(
                _error(
                    f"Database {alias!r} is used as role {user!r}, which "
                    f"{'is a superuser' if superuser else 'has BYPASSRLS'}: PostgreSQL applies "
                    "no row-level security to it.",
                    _APP_ROLE_HINT,
                    "tenancy.E021",
                )
            )
        if bypass_role is None or not all(bypass_role):
            errors.append(
                _error(
                    f"TENANCY['RLS_BYPASS_ROLE'] ({role!r}) is not a BYPASSRLS role that role "
                    f"{user!r} of database {alias!r} may switch to: the unscoped manager and "
                    "the admin's cross-tenant views would see only the bound tenant's rows.",
                    "CREATE ROLE tenancy_bypass NOLOGIN BYPASSRLS; GRANT tenancy_bypass TO "
                    "tenancy_app; grant it the application role's table privileges, and set "
                    "TENANCY['RLS_BYPASS_ROLE'] = 'tenancy_bypass' (see docs/rls.md).",
                    "tenancy.E023",
                )
            )
        errors.extend(
            _error(
                f"Table {state.table!r} of {state.model} in database {alias!r} "
                + (
                    "does not exist."
                    if not state.exists
                    else f"lacks its policy {rls.POLICY!r} (row-level security enabled and "
                    "forced, rows of the bound tenant only)."
                ),
                f"Run 'python manage.py migrate --database {alias}' as the tables' owner.",
                "tenancy.E022",
            )
            for state in rls.table_states(alias)
            if not state.walled
        )
    return errors


def register() -> None:
    checks.register(check_settings, checks.Tags.compatibility)
    checks.register(check_middleware, checks.Tags.compatibility)
    checks.register(check_scoped_references, checks.Tags.models)
    checks.register(check_rls_engines, checks.Tags.compatibility)
    checks.register(check_rls_database, checks.Tags.database)
