"""The core is UI-free and torch-free: importing it (or asking for --help) loads neither."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time

import pytest

CORE_MODULES = [
    "cockpit.presets",
    "cockpit.events",
    "cockpit.rundir",
    "cockpit.rundir.events",
    "cockpit.rundir.info",
    "cockpit.rundir.watch",
    "cockpit.run_history",
    "cockpit.runs",
    "cockpit.estimate",
    "cockpit.gpu",
    "cockpit.health",
    "cockpit.health_base",
    "cockpit.headless",
    "cockpit.plan_cli",
    "cockpit.runs_cli",
    "cockpit.format",
    "cockpit.tokenizers",
    "cockpit.corpus",
    "cockpit.diagnostics",
    "cockpit.fsutil",
    "cockpit.__main__",
    "cockpit.train",  # the package itself; torch lives in its submodules
]
HEAVY = ("torch", "textual")

_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})))
"""


def loaded_after(code: str, *args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_neither_torch_nor_textual(module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} has not landed yet")
    assert loaded_after(_PROBE.format(heavy=set(HEAVY)), module) == []


def test_help_is_fast_and_light():
    code = (
        "import json, sys, contextlib, io\n"
        "from cockpit.__main__ import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {set(HEAVY)!r})))\n"
    )
    assert loaded_after(code) == []
    best = min(_time_help() for _ in range(3))  # the best of three: this machine is noisy
    assert best < 1.0, f"gpt-cockpit --help took {best:.2f}s"


def _time_help() -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "cockpit", "--help"], capture_output=True, text=True, timeout=60
    )
    elapsed = time.perf_counter() - started
    assert result.returncode == 0 and "usage: gpt-cockpit" in result.stdout
    return elapsed
