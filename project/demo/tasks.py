"""The demo's Celery task: what a task sees of the context its publisher had bound."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from tenancy import get_full_context
from tenancy.log import get_logger

from .models import Note

logger = get_logger(__name__)


@shared_task(name="demo.context_report")
def context_report() -> dict[str, Any]:
    """Return the context this task runs in and the number of notes of its tenant."""
    notes = Note.objects.count()  # the bound tenant's notes only
    logger.info("Counted %s notes", notes)  # the log line carries the tenant and request id
    return {"context": get_full_context(), "notes": notes}
