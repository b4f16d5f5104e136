"""The repository's README and docs/ pages, served as plain text by the demo."""

from __future__ import annotations

from pathlib import Path

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import escape

ROOT = Path(__file__).resolve().parent.parent.parent


def pages() -> dict[str, Path]:
    """Return ``{name: path}`` of the pages served: README.md and docs/*.md, nothing else."""
    found = {"README.md": ROOT / "README.md"}
    found.update({path.name: path for path in sorted((ROOT / "docs").glob("*.md"))})
    return {name: path for name, path in found.items() if path.is_file()}


def docs_index(request: HttpRequest) -> HttpResponse:
    links = "".join(
        f'<li><a href="{reverse("docs-page", args=[name])}">{escape(name)}</a></li>'
        for name in pages()
    )
    return HttpResponse(f"<!doctype html><title>tenancy docs</title><h1>Docs</h1><ul>{links}</ul>")


def docs_page(request: HttpRequest, name: str) -> HttpResponse:
    # Only names listed by pages(): no path from the URL ever reaches the file system.
    path = pages().get(name)
    if path is None:
        raise Http404("No such page.")
    return HttpResponse(path.read_text(), content_type="text/markdown; charset=utf-8")
