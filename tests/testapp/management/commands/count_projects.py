"""A ``TenantCommand`` for the tests: count the bound tenant's projects."""

from tenancy.management import TenantCommand
from tests.testapp.models import Project


class Command(TenantCommand):
    help = "Print the bound tenant's number of projects."

    def add_arguments(self, parser):
        parser.add_argument("--label", default="projects")

    def handle(self, *args, **options):
        self.stdout.write(f"{Project.objects.count()} {options['label']}")
