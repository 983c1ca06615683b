"""The core is UI-free and torch-free: importing it (or asking for --help) loads neither."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cockpit


def core_modules() -> list[str]:
    """Every module of cockpit outside cockpit.train and cockpit.tui, found on disk (so a module
    that is added, moved or renamed is checked without editing a list), and the cockpit.train
    package itself: it is light, torch lives in its submodules."""
    package = Path(cockpit.__file__).parent
    names = set()
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(n for n in names if not n.startswith(("cockpit.train.", "cockpit.tui")))


CORE_MODULES = core_modules()

HEAVY = ("torch", "textual")

_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})))
"""

# Every core module imported in turn in one interpreter, the heavy modules loaded so far printed
# after each: while none is loaded, none was loaded by any module up to there, each on its own
# included (a module's imports are a subset of all of them). After the first that loads one, the
# modules that follow are probed each in a fresh interpreter (_PROBE), so a failure names its module.
_PROBE_ALL = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
    print(json.dumps([name, sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})]))
"""


@pytest.fixture(scope="module")
def loaded_in_turn() -> dict[str, list[str]]:
    """Core module -> heavy modules loaded once it and every module before it were imported."""
    lines = loaded_after_lines(_PROBE_ALL.format(heavy=set(HEAVY)), *CORE_MODULES)
    return dict(json.loads(line) for line in lines)


def loaded_after_lines(code: str, *args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


def loaded_after(code: str, *args: str) -> list[str]:
    return json.loads(loaded_after_lines(code, *args)[-1])


def test_the_core_is_found() -> None:
    assert {
        "cockpit.plan.presets",
        "cockpit.plan.estimate",
        "cockpit.__main__",
        "cockpit.train",
    } <= set(CORE_MODULES)
    assert not [m for m in CORE_MODULES if m.startswith(("cockpit.train.", "cockpit.tui"))]


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_neither_torch_nor_textual(module, loaded_in_turn):
    if loaded_in_turn[module] == []:
        return  # nothing heavy after it and all the modules before it: nor after it alone
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


def test_the_run_directory_loads_the_health_rules_only_for_a_watcher():
    """A process that only writes or reads a run (a trainer's lock, `stop`, the tests' fake
    trainer) does not pay for the health rules; RunWatcher, the faces' follower, brings them."""
    code = (
        "import json, sys\n"
        "from cockpit import rundir\n"
        "before = 'cockpit.health' in sys.modules\n"
        "from cockpit.rundir import RunWatcher\n"
        "from cockpit.rundir.watch import RunWatcher as Real\n"
        "print(json.dumps([before, 'cockpit.health' in sys.modules, RunWatcher is Real]))\n"
    )
    assert loaded_after(code) == [False, True, True]
