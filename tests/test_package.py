"""Packaging: an import-light root, a complete public API, and a wheel that ships everything."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import tenancy

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "tests.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_every_public_name_resolves():
    for name in tenancy.__all__:
        assert getattr(tenancy, name) is not None, name
    assert set(tenancy.__all__) <= set(dir(tenancy))


def test_root_imports_before_apps_are_ready_and_without_drf():
    out = run_python(
        "import sys, tenancy\n"
        "switch = tenancy.switch\n"  # lazily loaded: still no models, no DRF
        "print(tenancy.__version__, 'rest_framework' in sys.modules, "
        "'tenancy.models' in sys.modules)"
    )
    assert out == f"{tenancy.__version__} False False"


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tenancy.nope  # noqa: B018


def test_module_functions_are_the_default_registry():
    assert tenancy.switch.__self__ is tenancy.tenant_context
    assert tenancy.tenant_context.using == "default"
    assert tenancy.ServiceError is tenancy.TenancyError


@pytest.mark.slow
def test_built_wheel_ships_the_app_its_type_marker_licence_and_plugin(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("django_tenancy_kit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "tenancy/py.typed" in names
    assert "tenancy/migrations/0001_initial.py" in names
    assert not any(n.startswith(("tests/", "project/")) for n in names)
    archive = zipfile.ZipFile(wheel)
    info = f"django_tenancy_kit-{tenancy.__version__}.dist-info"
    assert f"{info}/licenses/LICENSE" in names
    entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert "[pytest11]\ntenancy = tenancy.pytest_plugin" in entry_points
    metadata = archive.read(f"{info}/METADATA").decode()
    assert "Classifier: Development Status :: 4 - Beta" in metadata
    assert "License-Expression: MIT" in metadata
    # django-environ is for the demo only.
    assert 'Requires-Dist: django-environ>=0.11; extra == "demo"' in metadata
    assert not re.search(r"^Requires-Dist: django-environ[^;]*$", metadata, re.M)


@pytest.mark.slow
def test_the_sdist_carries_the_docs_changelog_and_licence(tmp_path):
    # A copy of the tracked files: building writes egg-info into the source tree.
    source = tmp_path / "source"
    files = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    backend = tmp_path / "backend"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--target", str(backend), "setuptools>=77"],
        check=True,
        timeout=300,
        capture_output=True,
    )
    build = (
        "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", build, str(tmp_path)],
        cwd=source,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(backend)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    with tarfile.open(tmp_path / out.stdout.strip().splitlines()[-1]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "CHANGELOG.md", "docs/testing.md", "docs/logging.md"} <= names
