"""The README's newcomer path, followed in a fresh project: built wheel, fresh venv, startproject.

The test reads the "Install in your project" section of README.md and does what
it says: installs the wheel built from this checkout into a new virtualenv,
applies the ``settings.py`` snippet to what ``django-admin startproject`` made,
writes the ``notes`` app and ``urls.py`` shown, runs every ``manage.py``
command shown (``check`` must report no issue), starts ``runserver`` and sends
the ``curl`` requests shown, comparing each answer with the README's.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import tenancy

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SECTION = README[README.index("## Install in your project") :]
SECTION = SECTION[: SECTION.index("\n## ", 1)]
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", SECTION, re.S)


def python_block(header: str) -> str:
    (block,) = [code for lang, code in BLOCKS if lang == "python" and code.startswith(header)]
    return block


def commands() -> list[str]:
    """Every ``manage.py`` command line of the section's shell blocks, in order."""
    lines = [line for lang, code in BLOCKS if lang == "sh" for line in code.splitlines()]
    return [line for line in lines if "manage.py" in line and not line.startswith("$")]


def curl_examples() -> list[tuple[str, str]]:
    """``(command, expected output)`` of each ``$ curl`` line of the section."""
    found = []
    for lang, code in BLOCKS:
        lines = code.splitlines()
        for i, line in enumerate(lines):
            if lang == "sh" and line.startswith("$ curl"):
                found.append((line[2:], lines[i + 1]))
    return found


def merge(existing: list[str], snippet: list[object]) -> list[str]:
    """Apply a README list (``...`` standing for what is there) to *existing*."""
    result = list(existing)
    anchor: int | None = None
    for item in snippet:
        if item is Ellipsis:
            continue
        assert isinstance(item, str)
        if item in result:
            anchor = result.index(item)
        else:
            anchor = len(result) if anchor is None else anchor + 1
            result.insert(anchor, item)
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def curl(command: str, port: int) -> str:
    """Send what a README ``curl -s [-u u:p] [-H h]... [-d k=v]... URL`` line sends."""
    args = shlex.split(command)[1:]
    headers: dict[str, str] = {}
    data: list[str] = []
    url = ""
    while args:
        arg = args.pop(0)
        if arg == "-s":
            continue
        if arg == "-u":
            headers["Authorization"] = "Basic " + base64.b64encode(args.pop(0).encode()).decode()
        elif arg == "-H":
            name, _, value = args.pop(0).partition(": ")
            headers[name] = value
        elif arg == "-d":
            data.append(args.pop(0))
        else:
            url = arg.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    body = "&".join(data).encode() if data else None
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read().decode()
    except urllib.error.HTTPError as error:
        return error.read().decode()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (path,) = out.glob("django_tenancy_kit-*.whl")
    return path


@pytest.mark.slow
def test_the_readme_install_path_works_in_a_fresh_project(wheel, tmp_path):
    assert "not published on PyPI yet" in SECTION
    assert f"pip install dist/django_tenancy_kit-{tenancy.__version__}-py3-none-any.whl" in SECTION
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "DJANGO_", "VIRTUAL_ENV"))
        and key not in ("DATABASE_URL", "CACHE_URL", "PYTHONPATH")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"

    def sh(line: str, cwd: Path) -> str:
        result = subprocess.run(
            ["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr

    sh(f"python -m pip install -q {shlex.quote(str(wheel))}", tmp_path)
    assert "environ" not in sh("python -m pip freeze", tmp_path)  # only the demo needs it
    sh("django-admin startproject mysite", tmp_path)
    project = tmp_path / "mysite"

    # The settings snippet, applied to the settings startproject wrote.
    settings_file = project / "mysite" / "settings.py"
    made: dict = {}
    exec(settings_file.read_text(), {"__file__": str(settings_file)}, made)
    snippet: dict = {}
    exec(python_block("# settings.py"), {}, snippet)
    apps = merge(made["INSTALLED_APPS"], snippet["INSTALLED_APPS"])
    middleware = merge(made["MIDDLEWARE"], snippet["MIDDLEWARE"])
    assert middleware.index("tenancy.middleware.TenantContextMiddleware") == (
        middleware.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1
    )
    with settings_file.open("a") as out:
        out.write(f"\nINSTALLED_APPS = {apps!r}\nMIDDLEWARE = {middleware!r}\n")

    server = None
    try:
        for line in commands():
            if "runserver" in line:
                port = free_port()
                server = subprocess.Popen(
                    [*shlex.split(line.split("#")[0]), f"127.0.0.1:{port}", "--noreload"],
                    cwd=project,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                continue
            output = sh(line, project)
            if "manage.py check" in line:
                assert output.strip() == "System check identified no issues (0 silenced).", output
            if "startapp notes" in line:  # "then add "notes" to INSTALLED_APPS"; the files shown
                with settings_file.open("a") as out:
                    out.write('\nINSTALLED_APPS += ["notes"]\n')
                for header, target in (
                    ("# notes/models.py", project / "notes" / "models.py"),
                    ("# notes/views.py", project / "notes" / "views.py"),
                    ("# urls.py", project / "mysite" / "urls.py"),
                ):
                    target.write_text(python_block(header))
        assert server is not None, "the README starts runserver"
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "runserver did not start"
                time.sleep(0.2)

        examples = curl_examples()
        assert any("X-Tenant-ID" not in command for command, _ in examples)
        assert any("X-Tenant-ID" in command for command, _ in examples)
        for command, expected in examples:
            assert json.loads(curl(command, port)) == json.loads(expected), command
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    log = server.stdout.read()
    assert "System check identified no issues (0 silenced)." in log, log
    assert "Traceback" not in log, log
