"""Settings of bench/rls.py: the test settings, serving the raw-SQL views of tests/rls_views.py."""

from tests.settings import *  # noqa: F403
from tests.settings import TENANCY

TENANCY = {**TENANCY, "ACCESS_LOG": False}
ROOT_URLCONF = "tests.rls_views"
