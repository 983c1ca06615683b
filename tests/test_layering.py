"""The layering of cockpit, as the import-linter contracts in pyproject.toml state it.

import-linter is a test dependency (the `test` extra): without it this module fails to import and
the run fails. It is never skipped, so a broken layer cannot pass unnoticed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from importlinter.api import read_configuration
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
CONTRACTS = {"torch-only-in-train", "textual-only-in-tui", "tui-not-train", "layers"}


def test_the_contracts_are_configured() -> None:
    config = read_configuration(str(PYPROJECT))
    assert config["session_options"]["root_packages"] == ["cockpit"]
    # without external packages in the graph, no contract could see torch or textual
    assert str(config["session_options"]["include_external_packages"]).lower() == "true"
    assert {c["id"] for c in config["contracts_options"]} >= CONTRACTS


def test_every_contract_is_kept(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # lint_imports puts the cwd on sys.path
    code = lint_imports(config_filename=str(PYPROJECT), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert code == 0, f"a layering contract is broken (run `lint-imports` to see it):\n{report}"


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("common/format.py", "import torch", "torch-only-in-train"),
        ("plan/presets.py", "import numpy", "torch-only-in-train"),
        ("plan/estimate.py", "import textual", "textual-only-in-tui"),
        ("runs/__init__.py", "import cockpit.train", "layers"),
        ("tui/app.py", "import cockpit.train", "tui-not-train"),
        ("headless/__init__.py", "import cockpit.tui.app", "layers"),
        ("plan/estimate.py", "import cockpit.runs", "layers"),
        ("common/numbers.py", "import cockpit.plan.gpu", "layers"),
        ("campaign/__init__.py", "import cockpit.headless", "layers"),
        ("rundir/info.py", "import cockpit.runs.index", "layers"),
        ("arch/gpt.py", "import cockpit.plan.presets", "layers"),
        ("arch/base.py", "import torch", "torch-only-in-train"),
    ],
)
def test_a_wrong_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    """The contracts are not vacuous: one bad import in a copy of the package breaks them."""
    shutil.copytree(ROOT / "cockpit", tmp_path / "cockpit")
    path = tmp_path / "cockpit" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(PYPROJECT)!r}, no_cache=True, no_logo=True))",
        ],
        cwd=tmp_path,  # the copy comes first on sys.path
        env={**os.environ, "COLUMNS": "250"},  # one line per contract in the report
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    config = read_configuration(str(PYPROJECT))
    name = next(c["name"] for c in config["contracts_options"] if c["id"] == broken)
    assert f"{name} BROKEN" in run.stdout, run.stdout
