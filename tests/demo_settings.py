"""Settings of the demo API's tests (tests/demo/): the test settings plus the demo app.

The main suite runs without the demo (tests/settings.py), so the app is proven
outside it; ``tests/test_demo.py`` runs tests/demo/ in a pytest of its own with
these settings. The test database gets a name of its own, so the two runs
never share one.
"""

from pathlib import Path

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES, INSTALLED_APPS, TEMPLATES

INSTALLED_APPS = [*INSTALLED_APPS, "project.demo"]
ROOT_URLCONF = "project.urls"

_default = DATABASES["default"]
if _default["ENGINE"].endswith("sqlite3"):
    _default["TEST"]["NAME"] = _default["TEST"]["NAME"].replace(".sqlite3", "-demo.sqlite3")
else:
    _default["TEST"]["NAME"] = f"test_{_default['NAME']}_demo"

# The demo's Celery app, eager: tasks run in the test process, in the publisher's context.
CELERY_BROKER_URL = "memory://"
CELERY_TASK_ALWAYS_EAGER = True
# The demo project's own templates (its landing page and admin branding).
TEMPLATES = [{**TEMPLATES[0], "DIRS": [Path(__file__).resolve().parent.parent / "templates"]}]
