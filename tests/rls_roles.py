"""The roles of docs/rls.md, made in the test database: an application role and a bypass role.

Role names are cluster-wide, so they carry the test database's name: test runs
on other databases of the same server keep their own.
"""

from __future__ import annotations

import contextlib

from django.db import connection, connections

GRANTS = """
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO {app}, {bypass};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app}, {bypass};
"""


def role_names() -> tuple[str, str]:
    base = connection.settings_dict["NAME"].replace("-", "_")
    return f"{base}_app", f"{base}_bypass"


def create_roles() -> tuple[str, str]:
    """Create (again) the LOGIN application role and the NOLOGIN BYPASSRLS role it may use."""
    app, bypass = role_names()
    drop_roles()
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {app} LOGIN NOSUPERUSER NOBYPASSRLS")
        cursor.execute(f"CREATE ROLE {bypass} NOLOGIN BYPASSRLS")
        cursor.execute(f"GRANT {bypass} TO {app}")
        cursor.execute(GRANTS.format(app=app, bypass=bypass))
    return app, bypass


def drop_roles() -> None:
    with connection.cursor() as cursor:
        for role in role_names():
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
            if cursor.fetchone():
                cursor.execute(f"DROP OWNED BY {role}")
                cursor.execute(f"DROP ROLE {role}")


@contextlib.contextmanager
def app_alias(alias: str, **settings):
    """Add database alias *alias*: the test database, as the application role."""
    app, _bypass = role_names()
    connections.settings[alias] = {
        **connection.settings_dict,
        "USER": app,
        "PASSWORD": "",
        **settings,
    }
    try:
        yield alias
    finally:
        from asgiref.sync import SyncToAsync

        # Async tests reach it from asgiref's thread too, which has its own connection.
        SyncToAsync.single_thread_executor.submit(connections[alias].close).result()
        connections[alias].close()
        del connections[alias]
        del connections.settings[alias]
