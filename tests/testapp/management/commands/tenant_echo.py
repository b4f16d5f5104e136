"""A plain command for the tests of ``tenancy run``: print the bound tenant and the arguments."""

from django.core.management.base import BaseCommand, CommandError

import tenancy


class Command(BaseCommand):
    help = "Print the bound tenant and the arguments; fail inside the tenants given to --fail-in."

    def add_arguments(self, parser):
        parser.add_argument("words", nargs="*")
        parser.add_argument("--fail-in", action="append", default=[])
        parser.add_argument("--shout", action="store_true")

    def handle(self, *args, **options):
        tenant_id = tenancy.get_current_tenant_id()
        if tenant_id in options["fail_in"]:
            raise CommandError(f"refusing to run in {tenant_id}")
        words = " ".join(options["words"])
        self.stdout.write(
            f"tenant={tenant_id} words={words.upper() if options['shout'] else words}"
        )
