"""The wheel: built offline, it ships the built-in presets, and an installed copy finds them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel once, with no index and no build isolation (so no network)."""
    pytest.importorskip(
        "hatchling", reason="hatchling builds the wheel (pip install -e '.[test]' brings it)"
    )
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            str(REPO),
            "-w",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    assert result.returncode == 0, result.stderr
    (built,) = out.glob("gpt_cockpit-*.whl")
    return built


def source_presets() -> dict[str, bytes]:
    found = {p.name: p.read_bytes() for p in (REPO / "presets").glob("*.json")}
    if not found:
        pytest.skip("presets/ holds no presets yet")
    return found


def test_wheel_ships_the_builtin_presets(wheel):
    source = source_presets()
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        shipped = {
            Path(n).name: archive.read(n)
            for n in names
            if n.startswith("cockpit/_builtin_presets/") and n.endswith(".json")
        }
    assert shipped == source
    assert "cockpit/__main__.py" in names and "cockpit/headless/__init__.py" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]


def test_wheel_declares_the_console_script(wheel):
    with zipfile.ZipFile(wheel) as archive:
        entry_points = next(
            archive.read(n).decode() for n in archive.namelist() if n.endswith("entry_points.txt")
        )
    assert "gpt-cockpit = cockpit.__main__:main" in entry_points


def test_installed_copy_finds_its_presets(wheel, tmp_path):
    source = source_presets()
    target = tmp_path / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    code = (
        "import json; from cockpit.plan import presets; "
        "print(json.dumps([str(presets.builtin_dir()), sorted(p.name for p in presets.list_presets())]))"
    )
    # Run outside the repository so the source tree cannot be imported instead of the installed copy.
    probe = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target), "PYTHONSAFEPATH": "1"},
    )
    assert probe.returncode == 0, probe.stderr
    folder, names = json.loads(probe.stdout)
    assert Path(folder) == target / "cockpit" / "_builtin_presets"
    assert names == sorted(Path(name).stem for name in source)
