"""Settings of the row-level security server test: the application role, through PgBouncer.

``TENANCY_RLS_DB_PORT``, ``TENANCY_RLS_DB_USER`` and ``TENANCY_RLS_BYPASS_ROLE``
come from the test that starts the server (tests/test_rls_server.py).
"""

import os

from tests.server_settings import *  # noqa: F403
from tests.server_settings import DATABASES, TENANCY

DATABASES["default"].update(
    {
        "HOST": "127.0.0.1",
        "PORT": os.environ["TENANCY_RLS_DB_PORT"],
        "USER": os.environ["TENANCY_RLS_DB_USER"],
        "PASSWORD": "",
        # Transaction pooling: no server-side cursors (they outlive a transaction).
        "DISABLE_SERVER_SIDE_CURSORS": True,
    }
)
TENANCY = {
    **TENANCY,
    "ROW_LEVEL_SECURITY": True,
    "RLS_BYPASS_ROLE": os.environ["TENANCY_RLS_BYPASS_ROLE"],
    "ACCESS_LOG": False,
}
ROOT_URLCONF = "tests.rls_views"
