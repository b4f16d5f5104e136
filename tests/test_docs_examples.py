"""The Python examples of docs/data.md, runtime.md, memory.md, celery.md, channels.md and
commands.md run as written.

Blocks that start with a file's name ("# models.py", "# settings.py", "# asgi.py") show
code that belongs in that file and are not run; ``Note``, ``Project`` and
``Task`` are the test app's models, the ones shown.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connections

import tenancy
from tenancy import runtime
from tenancy.memory import ContextManager
from tests.testapp.models import Note, Project, Task

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
FILE_NAME = re.compile(r"# [\w/.-]+\.py\n")


def runnable_blocks(name: str) -> list[str]:
    text = (DOCS / name).read_text()
    return [
        block
        for block in BLOCK.findall(text)
        if not FILE_NAME.match(block.lstrip())
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "name", ["data.md", "runtime.md", "memory.md", "celery.md", "channels.md", "commands.md"]
)
def test_doc_examples_run(name, tenants, capsys):
    blocks = runnable_blocks(name)
    assert blocks, f"{name} has no runnable example"
    namespace: dict = {"__name__": "docs", "Note": Note, "Project": Project, "Task": Task}
    try:
        for block in blocks:
            exec(compile(block, str(DOCS / name), "exec"), namespace)
    finally:
        ContextManager._registry.clear()
        runtime._live.clear()
        connections.close_all()
    assert tenancy.get_context() is None
    out = capsys.readouterr().out
    expected = {
        "data.md": "no tenant bound: no rows",
        "runtime.md": "anthropic",
        "memory.md": "['collection-789']",
        "celery.md": "['acme', 'globex']",
        "channels.md": "4403 tenant_not_registered",
        "commands.md": "[2/2] globex: done",
    }[name]
    assert expected in out
    if name == "data.md":
        assert "tasks moved: 0" in out and "still in: Rocket" in out


LOGGING_RUN = """
import logging, sys
from django.conf import settings
namespace = {}
exec(sys.argv[1], namespace)
settings.configure(DEBUG=True, LOGGING=namespace["LOGGING"], INSTALLED_APPS=["tenancy"])
import django
django.setup()
logging.getLogger("django.request").warning("Forbidden: %s", "/api/notes/")
logging.getLogger("django.server").info('"GET /api/notes/ HTTP/1.1" 403 138')
logging.getLogger("app").info("Creating run")
"""


def test_the_logging_example_formats_djangos_own_lines_once():
    """docs/logging.md's LOGGING, under Django's default logging: every line formatted, once."""
    (block,) = [b for b in BLOCK.findall((DOCS / "logging.md").read_text()) if "LOGGING" in b]
    result = subprocess.run(
        [sys.executable, "-c", LOGGING_RUN, block],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "")},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 3, lines
    for line, logger in zip(lines, ("django.request", "django.server", "app"), strict=True):
        assert f" logger={logger} " in line, line
        assert " request_id=- tenant_id=-" in line, line


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "cache.md",
            [
                "globex plan: free",
                "acme plan: enterprise",
                "no tenant bound: refused",
                "removed 1 key",
                "globex still has: free",
            ],
        ),
        (
            "storage.md",
            [
                "reports/q1.txt /media/tenants/acme/reports/q1.txt",
                "globex sees it: False",
                "refused: unsafe_file_name\n" * 3,
            ],
        ),
        ("observability.md", ["'tenant.id': 'initech'", "'tenancy.denied': 'tenant_inactive'"]),
    ],
)
def test_infrastructure_doc_examples_run(name, expected, tenants, tmp_path, capsys):
    from django.test import override_settings

    blocks = [b for b in runnable_blocks(name) if not b.lstrip().startswith("# storages.py")]
    assert blocks, f"{name} has no runnable example"
    namespace: dict = {"__name__": "docs"}
    with override_settings(MEDIA_ROOT=str(tmp_path), MEDIA_URL="/media/"):
        for block in blocks:
            exec(compile(block, str(DOCS / name), "exec"), namespace)
    assert tenancy.get_context() is None
    out = capsys.readouterr().out
    for line in expected:
        assert line in out, out
