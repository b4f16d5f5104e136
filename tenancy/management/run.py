"""Run a management command inside ``switch()``, one tenant after another."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from io import TextIOBase

from django.core.management import call_command

from ..registry import tenant_context

__all__ = ["active_tenant_ids", "run_for_tenants"]


def active_tenant_ids() -> list[str]:
    """Return the ids of every active tenant, in id order (read a page of rows at a time)."""
    return [info.tenant_id for info in tenant_context.iter_tenants(active=True)]


def run_for_tenants(
    tenant_ids: Iterable[str],
    command: str,
    args: Sequence[str] = (),
    *,
    stdout: TextIOBase,
    stderr: TextIOBase,
) -> list[str]:
    """Run ``command args`` once per tenant, each inside ``switch(tenant_id)``.

    Write one progress line per tenant to *stdout*, and what a failed run
    raised to *stderr*; a failure does not stop the tenants after it. Return
    the ids of the tenants whose run failed (an unknown or inactive tenant
    fails before its command starts).
    """
    ids = list(tenant_ids)
    failed = []
    for number, tenant_id in enumerate(ids, 1):
        stdout.write(f"[{number}/{len(ids)}] {tenant_id}: {command}\n")
        try:
            with tenant_context.switch(tenant_id):
                call_command(command, *args, stdout=stdout, stderr=stderr)
        except (Exception, SystemExit) as exc:
            failed.append(tenant_id)
            stderr.write(f"[{number}/{len(ids)}] {tenant_id}: failed: {_describe(exc)}\n")
        else:
            stdout.write(f"[{number}/{len(ids)}] {tenant_id}: done\n")
    return failed


def _describe(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    # One line, printable: a failure must not break or forge the progress output.
    return text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
