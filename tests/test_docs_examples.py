"""The Python examples of docs/data.md, docs/runtime.md and docs/memory.md run as written.

Blocks that start with "# models.py" or "# settings.py" show code that belongs in
those files and are not run; ``Note`` is the test app's model, the one shown.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.db import connections

import tenancy
from tenancy import runtime
from tenancy.memory import ContextManager
from tests.testapp.models import Note

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def runnable_blocks(name: str) -> list[str]:
    text = (DOCS / name).read_text()
    return [
        block
        for block in BLOCK.findall(text)
        if not block.lstrip().startswith(("# models.py", "# settings.py"))
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", ["data.md", "runtime.md", "memory.md"])
def test_doc_examples_run(name, tenants, capsys):
    blocks = runnable_blocks(name)
    assert blocks, f"{name} has no runnable example"
    namespace: dict = {"__name__": "docs", "Note": Note}
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
    }[name]
    assert expected in out
