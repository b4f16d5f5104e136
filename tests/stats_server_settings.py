"""Settings of the servers of tests/test_stats_servers.py: test settings, automatic flushes.

TENANCY_SERVER_DB_NAME  the test database (the one the test run created)
TENANCY_STATS_INTERVAL  STATS_FLUSH_INTERVAL of the server (default 1 s)
TENANCY_SQLITE_DOCS     set: the SQLite OPTIONS that docs/production.md recommends
"""

import os
import re
from pathlib import Path

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

ROOT_URLCONF = "tests.stats_app"
DATABASES["default"]["NAME"] = os.environ["TENANCY_SERVER_DB_NAME"]
TENANCY = {
    "STATS_AUTO_FLUSH": True,
    "STATS_FLUSH_INTERVAL": float(os.environ.get("TENANCY_STATS_INTERVAL", "1")),
}


def docs_sqlite_options() -> dict:
    """The OPTIONS of the SQLite settings block of docs/production.md, as written there."""
    docs = (Path(__file__).resolve().parent.parent / "docs" / "production.md").read_text()
    section = docs.split("## SQLite", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {"BASE_DIR": Path("/nonexistent")}
    exec(block, namespace)
    return namespace["DATABASES"]["default"]["OPTIONS"]


if os.environ.get("TENANCY_SQLITE_DOCS"):
    DATABASES["default"]["OPTIONS"] = docs_sqlite_options()
