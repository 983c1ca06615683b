"""The type checker: mypy over the whole package as [tool.mypy] in pyproject.toml configures it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: mypy's own TOML reader
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
LOOSE = {"tui", "train"}  # checked, not strict: the app face and the training child


def mypy_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]


def test_every_core_package_is_checked_strictly():
    """A new core package is strict from its first file: it must be named in the override."""
    strict = next(o for o in mypy_config()["overrides"] if o.get("disallow_untyped_defs"))
    named = {m.removeprefix("cockpit.").removesuffix(".*") for m in strict["module"]}
    packages = {p.parent.name for p in (ROOT / "cockpit").glob("*/__init__.py")}
    assert packages - LOOSE <= named, f"not strict: {sorted(packages - LOOSE - named)}"
    assert mypy_config()["warn_unused_ignores"] is True


def test_the_package_type_checks():
    """mypy finds nothing; its report is the failure message (cache in .mypy_cache)."""
    proc = subprocess.run(
        [sys.executable, "-m", "mypy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"mypy:\n{proc.stdout}{proc.stderr}"
