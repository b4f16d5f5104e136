"""The demo pages: the landing page, the admin branding, the docs, and the token endpoint."""

import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model

import tenancy
from project.demo.models import Note
from tenancy.models import TenantMembership

# Runs with tests/demo_settings.py (the demo app installed), from tests/test_demo.py.
pytestmark = pytest.mark.urls("project.urls")


def test_the_landing_page_links_the_admin_the_api_and_the_docs(client):
    response = client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    for href in ('href="/admin/"', 'href="/api/public/status"', 'href="/docs/"'):
        assert href in body, href
    assert client.get("/api/public/status").status_code == 200


def test_the_admin_carries_the_demo_branding(client):
    body = client.get("/admin/login/").content.decode()
    assert "<title>Log in | tenancy demo</title>" in body
    assert ">tenancy demo</a>" in body


def test_the_docs_are_served_as_text_and_nothing_else(client):
    index = client.get("/docs/").content.decode()
    assert 'href="/docs/README.md"' in index and 'href="/docs/testing.md"' in index
    page = client.get("/docs/testing.md")
    assert page.status_code == 200
    assert page.content.decode().startswith("# Testing your project")
    for name in ("../pyproject.toml", "..%2Fpyproject.toml", "settings.py", "nope.md"):
        assert client.get(f"/docs/{name}").status_code == 404, name


@pytest.mark.django_db
def test_a_demo_user_gets_a_token_and_calls_the_api_with_it(client, acme):
    alice = get_user_model().objects.create_user("alice", password="tenancy-demo")
    TenantMembership.objects.create(tenant_id="acme", user=alice)
    with tenancy.switch("acme"):
        Note.objects.create(title="Launch plan", created_by=alice)

    refused = client.post("/api/token", {"username": "alice", "password": "wrong"})
    assert refused.status_code == 400
    token = client.post("/api/token", {"username": "alice", "password": "tenancy-demo"}).json()
    headers = {"Authorization": f"Token {token['token']}", "X-Tenant-ID": "acme"}
    notes = client.get("/api/notes/", headers=headers)
    assert notes.status_code == 200
    assert [note["title"] for note in notes.json()] == ["Launch plan"]


@pytest.mark.django_db
def test_the_readme_calls_to_the_demo_api_answer_as_shown(client):
    """The "Try it" section of README.md: a token for alice, then her notes in two tenants."""
    from django.core.management import call_command

    call_command("seed_demo")
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Try it") : readme.index("## Install in your project")]
    (block,) = [b for b in re.findall(r"```sh\n(.*?)```", section, re.S) if "/api/token" in b]
    lines = block.replace("\\\n", " ").splitlines()
    assert lines[0].startswith("$ TOKEN=$(curl -s -d username=alice -d password=tenancy-demo ")
    token = client.post("/api/token", {"username": "alice", "password": "tenancy-demo"}).json()
    calls = [(line, lines[i + 1]) for i, line in enumerate(lines) if line.startswith("$ curl")]
    assert len(calls) == 2
    for line, expected in calls:
        args = shlex.split(line[2:].replace("$TOKEN", token["token"]))
        headers = dict(args[i + 1].split(": ", 1) for i, arg in enumerate(args) if arg == "-H")
        response = client.get(urlsplit(args[-1]).path, headers=headers)
        assert response.json() == json.loads(expected), line
