"""The tree stays as ruff checks it: lint rules (complexity <= 15 included) and `ruff format`.

pyproject.toml's [tool.ruff] holds the rules; ruff is a test dependency, so a missing
ruff is an error here, never a skip.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--no-cache", str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_ruff_check_is_clean():
    result = _ruff("check", "--output-format", "concise")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_leaves_nothing_to_change():
    result = _ruff("format", "--check")
    assert result.returncode == 0, result.stdout + result.stderr
