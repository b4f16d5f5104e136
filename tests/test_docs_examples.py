"""The Python examples of docs/data.md, runtime.md, memory.md, celery.md, channels.md and
commands.md run as written.

Blocks that start with a file's name ("# models.py", "# settings.py", "# asgi.py") show
code that belongs in that file and are not run; ``Note``, ``Project`` and
``Task`` are the test app's models, the ones shown.
"""

from __future__ import annotations

import re
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
