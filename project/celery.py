"""The demo's Celery app: a worker against ``CELERY_BROKER_URL``, eager tasks without one.

    CELERY_BROKER_URL=redis://127.0.0.1:6379/0 celery -A project worker -l INFO
"""

import os

from celery import Celery

from tenancy.contrib.celery import setup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("project")
app.config_from_object("django.conf:settings", namespace="CELERY")
setup(app)  # tasks carry the tenant, request id and user of whoever publishes them
app.autodiscover_tasks()
