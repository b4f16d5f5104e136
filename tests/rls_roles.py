"""The roles of docs/rls.md (an application role, a bypass role) and PgBouncer, for the tests.

Role names are cluster-wide, so they carry the test database's name: test runs
on other databases of the same server keep their own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

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
        SyncToAsync.single_thread_executor.submit(lambda: connections[alias].close()).result()
        connections[alias].close()
        del connections[alias]
        del connections.settings[alias]


PGBOUNCER = "/usr/sbin/pgbouncer"


def find_pgbouncer() -> str | None:
    """Return the pgbouncer binary, installing Debian's package when missing and allowed."""
    found = shutil.which("pgbouncer") or (PGBOUNCER if os.access(PGBOUNCER, os.X_OK) else None)
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "pgbouncer"], env=env, check=False)
        found = shutil.which("pgbouncer") or (PGBOUNCER if os.access(PGBOUNCER, os.X_OK) else None)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def pgbouncer(pool_size: int):
    """Run PgBouncer in transaction pooling mode on a free port in front of the test server.

    Yields ``(host, port)``; the pool holds at most *pool_size* server connections
    per database and user, however many clients connect. Always stopped.
    """
    binary = find_pgbouncer()
    if binary is None:
        raise FileNotFoundError(
            "pgbouncer is not installed: run 'make pgbouncer' or 'apt-get install pgbouncer'"
        )
    host = connection.settings_dict["HOST"] or "127.0.0.1"
    db_port = connection.settings_dict["PORT"] or "5432"
    port = free_port()
    # pgbouncer refuses to run as root: it runs as nobody below, in a directory it may use.
    directory = Path(tempfile.mkdtemp(prefix="tenancy-pgbouncer-"))
    directory.chmod(0o777)
    users = directory / "users.txt"
    users.write_text("".join(f'"{role}" ""\n' for role in role_names()))
    ini = directory / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"* = host={host} port={db_port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {users}\n"
        f"pool_mode = transaction\ndefault_pool_size = {pool_size}\nmin_pool_size = 0\n"
        "reserve_pool_size = 0\nmax_client_conn = 500\n"
        f"logfile = {directory / 'pgbouncer.log'}\npidfile = {directory / 'pgbouncer.pid'}\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
    )
    command = [binary, str(ini)]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "nobody"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline, "pgbouncer did not start"
            time.sleep(0.05)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def walled_database():
    """Make the roles, turn the setting on and migrate as the owner; undo it all after.

    Yields the bypass role's name.
    """
    from django.conf import settings
    from django.core.management import call_command
    from django.test import override_settings

    _app, bypass = create_roles()
    override = override_settings(
        TENANCY={**settings.TENANCY, "ROW_LEVEL_SECURITY": True, "RLS_BYPASS_ROLE": bypass}
    )
    override.enable()
    try:
        call_command("migrate", verbosity=0)
        yield bypass
    finally:
        override.disable()
        call_command("migrate", verbosity=0)  # the setting off: the policies go
        drop_roles()
