"""Row-level security: the tenant wall inside PostgreSQL, per transaction, safe behind a pooler.

With ``TENANCY["ROW_LEVEL_SECURITY"] = True``, ``migrate`` leaves every concrete
tenant-scoped table with row-level security enabled and forced and one policy,
:data:`POLICY`: a row is visible and writable only where its tenant column
equals ``current_setting('tenancy.tenant_id', true)``. With no tenant bound that
setting is empty, so no row matches.

The bound tenant reaches PostgreSQL through an execute wrapper installed on
every new connection. Before a statement runs it asks the driver (locally, no
round trip) whether a transaction is open:

- none is (autocommit, or the first statement of an ``atomic()`` block): the
  statement is sent as ``SELECT set_config('tenancy.tenant_id', 'acme', true);
  <statement>`` in one round trip, one implicit or explicit transaction;
- one is, and this connection already set the same tenant in it: the statement
  is sent as it is, so inside ``atomic()`` only the first statement (and the
  first after a ``switch()``) carries the setting;
- ``ROLLBACK TO SAVEPOINT`` may undo the setting: the next statement sends it again.

``set_config(..., true)`` is transaction-local: when the transaction ends the
setting is gone, so a pooled server connection (PgBouncer in transaction mode,
RDS Proxy) never carries one request's tenant into another's transaction.

:func:`bypass` (and the ``unscoped`` manager, and so the admin's cross-tenant
views) runs statements as ``TENANCY["RLS_BYPASS_ROLE"]``, a ``NOLOGIN
BYPASSRLS`` role the application role is a member of, switched to with the
transaction-local ``set_config('role', ..., true)``: the policies stay on.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar, Token
from dataclasses import asdict, dataclass
from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from .conf import tenancy_settings
from .current import get_current_tenant_id
from .ids import is_valid_tenant_id
from .memo import remember

__all__ = [
    "POLICY",
    "SETTING",
    "TableState",
    "bypass",
    "bypass_if_on",
    "bypass_rls",
    "bypassed",
    "enabled",
    "install",
    "policy_expression",
    "scoped_tables",
    "sync_policies",
    "table_states",
]

#: The transaction-local setting holding the bound tenant.
SETTING = "tenancy.tenant_id"
#: The name of the one policy on each scoped table.
POLICY = "tenancy_tenant"

_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]*")
# libpq's PQtransactionStatus: no transaction open, and one open and healthy.
_IDLE = 0
_INTRANS = 2

_BYPASS: ContextVar[bool] = ContextVar("tenancy_rls_bypass", default=False)
_NO_BLOCK = nullcontext()


def enabled(connection: BaseDatabaseWrapper) -> bool:
    """Return True if row-level security is on and *connection* is PostgreSQL."""
    return bool(tenancy_settings.ROW_LEVEL_SECURITY) and connection.vendor == "postgresql"


class bypass:
    """Run the block's statements as ``TENANCY["RLS_BYPASS_ROLE"]``: every tenant's rows.

    ``with bypass():`` or ``async with bypass():``, for admin and maintenance
    code that must see across tenants; the ``unscoped`` manager runs its
    statements in this block. Nothing changes while ``ROW_LEVEL_SECURITY`` is
    off. The block binds a :class:`~contextvars.ContextVar`, so it covers the
    code inside it, tasks created and ``sync_to_async`` calls made inside it,
    and nothing else; in PostgreSQL the role switch is transaction-local and
    ends with the statement's transaction at the latest. One object per block.
    """

    __slots__ = ("_token",)

    def __init__(self) -> None:
        self._token: Token[bool] | None = None

    def __enter__(self) -> None:
        if self._token is not None:
            raise RuntimeError("This bypass() block is already entered; call bypass() again.")
        self._token = _BYPASS.set(True)

    def __exit__(self, *exc_info: object) -> None:
        token, self._token = self._token, None
        if token is not None:
            _BYPASS.reset(token)

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__()


#: ``tenancy.bypass_rls()``: the same block, from the package root.
bypass_rls = bypass


def bypass_if_on() -> AbstractContextManager[None]:
    """Return a :class:`bypass` block while ``ROW_LEVEL_SECURITY`` is on, else a no-op block.

    For the lookups that must see every tenant's rows to refuse a cross-tenant
    write (the write guards) and for the ``unscoped`` manager.
    """
    return bypass() if tenancy_settings.ROW_LEVEL_SECURITY else _NO_BLOCK


def bypassed() -> bool:
    """Return True inside a :class:`bypass` block."""
    return _BYPASS.get()


def _bypass_role() -> str:
    role = tenancy_settings.RLS_BYPASS_ROLE
    if not isinstance(role, str) or not _ROLE_NAME.fullmatch(role):
        raise ImproperlyConfigured(
            "TENANCY['RLS_BYPASS_ROLE'] must name a NOLOGIN BYPASSRLS role the application "
            "role is a member of (a lowercase identifier, like 'tenancy_bypass'); "
            "see docs/rls.md."
        )
    return role


# The SQL sent ahead of a statement, by (tenant, bypass, role possibly switched).
_PREFIXES: OrderedDict[tuple[str, bool, bool], str] = OrderedDict()
_RESTORE_ROLE = (
    "set_config('role', coalesce(nullif(current_setting('tenancy.role', true), ''), "
    "current_user), true)"
)


def _prefix(tenant: str, bypassed: bool, restore: bool) -> str:
    key = (tenant, bypassed, restore)
    sql = _PREFIXES.get(key)
    if sql is None:
        # The tenant is inlined: it passed is_valid_tenant_id (no quote, no %).
        parts = [f"set_config('{SETTING}', '{tenant}', true)"]
        if bypassed:
            # The role to come back to is kept (once per transaction) beside it.
            parts.append(
                "set_config('tenancy.role', coalesce(nullif(current_setting('tenancy.role', "
                "true), ''), current_user), true)"
            )
            parts.append(f"set_config('role', '{_bypass_role()}', true)")
        elif restore:
            parts.append(_RESTORE_ROLE)
        sql = "SELECT " + ", ".join(parts) + "; "
        remember(_PREFIXES, key, sql)
    return sql


# The literal sent for a bound tenant id: itself when well-formed, else "" (no tenant).
_TENANT_LITERALS: OrderedDict[Any, str] = OrderedDict()


def _tenant_literal(tenant: Any) -> str:
    try:
        return _TENANT_LITERALS[tenant]
    except KeyError:
        literal = tenant if is_valid_tenant_id(tenant) else ""
        return remember(_TENANT_LITERALS, tenant, literal)
    except TypeError:  # unhashable: not a tenant id
        return ""


def _forget(*, setting: str, **kwargs: Any) -> None:
    # The literals depend on RESERVED_TENANT_IDS, the prefixes on RLS_BYPASS_ROLE.
    if setting == "TENANCY":
        _PREFIXES.clear()
        _TENANT_LITERALS.clear()


setting_changed.connect(_forget, dispatch_uid="tenancy.rls.forget")


def _execute(
    execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    """Execute wrapper: the bound tenant reaches PostgreSQL in the statement's transaction."""
    if not tenancy_settings.ROW_LEVEL_SECURITY:
        return execute(sql, params, many, context)
    connection = context["connection"]
    wanted = (_tenant_literal(get_current_tenant_id()), _BYPASS.get())
    pgconn = connection._tenancy_rls_pgconn
    status = pgconn.transaction_status
    if status == _INTRANS:
        sent = connection._tenancy_rls_sent
        if sent == wanted:  # the warm path inside atomic(): nothing to add
            return execute(sql, params, many, context)
    elif status == _IDLE:
        sent = None
    else:  # busy or failed: the statement fails on its own
        return execute(sql, params, many, context)
    if sql.__class__ is str and sql.startswith("ROLLBACK TO SAVEPOINT"):
        connection._tenancy_rls_sent = None  # it may undo what was set after the savepoint
        return execute(sql, params, many, context)
    # In an open transaction whose state is unknown or bypassed, the role is put back.
    prefix = _prefix(wanted[0], wanted[1], status == _INTRANS and (sent is None or sent[1]))
    cursor = context["cursor"].cursor
    if many or sql.__class__ is not str or cursor.__class__ not in _COMBINING:
        result = _execute_apart(connection, prefix, execute, sql, params, many, context)
    else:
        result = execute(prefix + sql, params, many, context)
        cursor.nextset()  # to the statement's own result, past set_config's
    connection._tenancy_rls_sent = wanted if pgconn.transaction_status == _INTRANS else None
    return result


class _Combining(dict[type, bool]):
    """``cursor class in _COMBINING``: may the cursor send two statements in one query?"""

    def __missing__(self, cursor_class: type) -> bool:
        # psycopg's client-side binding cursor (Django's default) sends several
        # statements as one simple query; server-side binding and server cursors cannot.
        try:
            import psycopg
        except ImportError:  # psycopg2: one statement at a time
            combines = False
        else:
            combines = issubclass(cursor_class, psycopg.ClientCursor) and not issubclass(
                cursor_class, psycopg.ServerCursor
            )
        self[cursor_class] = combines
        return combines

    def __contains__(self, cursor_class: object) -> bool:
        return self[cursor_class]  # type: ignore[index]


_COMBINING = _Combining()


def _execute_apart(
    connection: Any,
    prefix: str,
    execute: Callable[..., Any],
    sql: Any,
    params: Any,
    many: bool,
    context: dict[str, Any],
) -> Any:
    """Send *prefix* as its own statement, in a transaction shared with the statement."""
    if connection.get_autocommit():
        with transaction.atomic(using=connection.alias):
            with connection.connection.cursor() as cursor:
                cursor.execute(prefix)
            return execute(sql, params, many, context)
    with connection.connection.cursor() as cursor:
        cursor.execute(prefix)
    return execute(sql, params, many, context)


def install(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """``connection_created`` receiver: add the execute wrapper to a PostgreSQL connection."""
    connection._tenancy_rls_sent = None  # type: ignore[attr-defined]
    if not enabled(connection):
        return
    raw = connection.connection
    # libpq's transaction status, read without a round trip (psycopg, or psycopg2's info).
    connection._tenancy_rls_pgconn = getattr(raw, "pgconn", None) or raw.info  # type: ignore[attr-defined]
    if _execute not in connection.execute_wrappers:
        connection.execute_wrappers.append(_execute)


# -- the policies -------------------------------------------------------------------


def policy_expression(column: str) -> str:
    """Return the policy's condition for the tenant column *column* (quoted)."""
    return f"({column} = current_setting('{SETTING}', true))"


def scoped_tables(app_label: str | None = None) -> list[tuple[str, str, str]]:
    """Return ``(model label, table, tenant column)`` of every concrete tenant-scoped model."""
    found = []
    models = apps.get_app_config(app_label).get_models() if app_label else apps.get_models()
    for model in models:
        meta = model._meta
        if not getattr(model, "tenant_scoped", False) or meta.proxy or not meta.managed:
            continue
        # The table holding the tenant column (a multi-table child's is its parent's).
        for field in meta.local_concrete_fields:
            if field.name == "tenant" and field.column:
                found.append((meta.label, meta.db_table, field.column))
    return sorted(found, key=lambda row: row[1])


@dataclass(frozen=True)
class TableState:
    """Row-level security of one scoped table, as PostgreSQL reports it."""

    model: str
    table: str
    exists: bool
    enabled: bool
    forced: bool
    policy: bool

    @property
    def walled(self) -> bool:
        """True when the table has row-level security enabled, forced, and its policy."""
        return self.exists and self.enabled and self.forced and self.policy

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "walled": self.walled}


def table_states(using: str = "default", app_label: str | None = None) -> list[TableState]:
    """Return the :class:`TableState` of every scoped table (of *app_label*) in *using*."""
    connection = connections[using]
    tables = scoped_tables(app_label)
    if not tables:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, EXISTS ("
            "  SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = %s"
            "  AND p.polcmd = '*' AND p.polpermissive"
            "  AND pg_get_expr(p.polqual, p.polrelid) = pg_get_expr(p.polwithcheck, p.polrelid)"
            "  AND pg_get_expr(p.polqual, p.polrelid) LIKE %s)"
            " FROM pg_class c WHERE c.relname = ANY(%s) AND c.relkind = 'r'"
            " AND pg_table_is_visible(c.oid)",
            [POLICY, f"%current_setting('{SETTING}'::text, true)%", [t for _m, t, _c in tables]],
        )
        rows = {name: (rls, forced, policy) for name, rls, forced, policy in cursor.fetchall()}
    states = []
    for label, table, _column in tables:
        rls, forced, policy = rows.get(table, (False, False, False))
        states.append(TableState(label, table, table in rows, rls, forced, policy))
    return states


def sync_policies(using: str = "default", app_label: str | None = None) -> list[str]:
    """Make the scoped tables' policies match the setting; return the tables changed.

    On: enable and force row-level security and create :data:`POLICY` where it
    is missing. Off: drop :data:`POLICY` and disable row-level security where it
    is there. Tables without the policy are left alone while off (their row-level
    security is not this package's). Run as the tables' owner.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return []
    on = bool(tenancy_settings.ROW_LEVEL_SECURITY)
    quote = connection.ops.quote_name
    columns = {table: column for _m, table, column in scoped_tables(app_label)}
    changed = []
    with transaction.atomic(using=using), connection.cursor() as cursor:
        for state in table_states(using, app_label):
            if not state.exists or (state.walled == on and (on or not state.policy)):
                continue
            table = quote(state.table)
            cursor.execute(f"DROP POLICY IF EXISTS {quote(POLICY)} ON {table}")
            if on:
                condition = policy_expression(quote(columns[state.table]))
                cursor.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
                cursor.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
                cursor.execute(
                    f"CREATE POLICY {quote(POLICY)} ON {table} "
                    f"USING {condition} WITH CHECK {condition}"
                )
            else:
                cursor.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
                cursor.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
            changed.append(state.table)
    return changed


def sync_after_migrate(sender: Any, using: str = "default", **kwargs: Any) -> None:
    """``post_migrate`` receiver: the policies of *sender*'s scoped tables follow the setting."""
    if getattr(sender, "models_module", None) is not None:
        sync_policies(using, sender.label)
