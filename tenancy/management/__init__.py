"""``TenantCommand``: a management command that runs inside ``switch()`` for ``--tenant``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ..exceptions import TenancyError
from ..registry import bound_tenant_id, tenant_context

__all__ = ["TenantCommand"]


class TenantCommand(BaseCommand):
    """A command with a ``--tenant`` option whose ``handle()`` runs inside ``switch()``.

    Subclass it as you would ``BaseCommand``::

        class Command(TenantCommand):
            def handle(self, *args, **options):
                self.stdout.write(f"{Invoice.objects.count()} invoices")

    ``manage.py mycommand --tenant acme`` runs ``handle()`` with ``acme`` bound.
    Without ``--tenant`` it runs in the tenant already bound (as under
    ``manage.py tenancy run --tenant acme mycommand``) and fails with a
    ``CommandError`` when there is none. An unknown or inactive tenant is a
    ``CommandError`` too, raised before ``handle()`` starts.
    """

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.add_argument(
            "--tenant", metavar="TENANT_ID", help="Run inside this tenant (registered, active)."
        )
        return parser

    def execute(self, *args: Any, **options: Any) -> Any:
        tenant_id = options.get("tenant")
        if tenant_id is None:
            if bound_tenant_id() is None:
                raise CommandError(
                    "This command needs a tenant: pass --tenant TENANT_ID, or run it with "
                    "'manage.py tenancy run --tenant TENANT_ID ...'."
                )
            return super().execute(*args, **options)
        try:
            tenant_context.get_active_tenant(tenant_id)
        except TenancyError as exc:
            raise CommandError(exc.message) from exc
        with tenant_context.switch(tenant_id):
            return super().execute(*args, **options)
