"""--runs-dir (and $GPT_COCKPIT_RUNS) naming an unusable place: one line, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cockpit import rundir
from cockpit.__main__ import main
from cockpit.common.diagnostics import EXIT_USAGE
from cockpit.plan.presets import load_preset


@pytest.fixture
def afile(tmp_path):
    path = tmp_path / "afile"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["--no-ui", "--runs-dir", "{afile}/sub"],
        ["--no-ui", "--runs-dir", "{afile}"],
        ["--runs-dir", "/proc/nope/runs"],  # the app: it could not create its runs folder
        ["runs", "--runs-dir", "{afile}"],
        ["attach", "last", "--no-ui", "--runs-dir", "{afile}"],
        ["compare", "a", "b", "--runs-dir", "{afile}"],  # the commands on finished runs too
        ["export", "last", "--to", "out", "--runs-dir", "{afile}"],
    ],
)
def test_an_unusable_runs_dir_is_one_line_and_exit_2(argv, afile, capsys):
    argv = [a.format(afile=afile) for a in argv]
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gpt-cockpit: error: --runs-dir "), err


def test_an_unusable_runs_folder_from_the_environment_names_the_variable(
    afile, monkeypatch, capsys
):
    monkeypatch.setenv("GPT_COCKPIT_RUNS", str(afile / "sub"))
    assert main(["--no-ui"]) == EXIT_USAGE
    assert "$GPT_COCKPIT_RUNS" in capsys.readouterr().err


def test_runs_dir_is_accepted_after_the_run_commands(tmp_path, capsys):
    run_dir = rundir.create_run_dir(load_preset("tiny_char"), root=tmp_path / "mine")
    assert main(["runs", "--json", "--runs-dir", str(tmp_path / "mine")]) == 0
    assert str(run_dir) in capsys.readouterr().out
    assert main(["stop", "last", "--runs-dir", str(tmp_path / "empty")]) == EXIT_USAGE
    assert "no run 'last' under" in capsys.readouterr().err
    assert (
        main(["runs", "--runs-dir", str(tmp_path / "not-yet")]) == 0
    )  # nothing there yet: no runs


def test_the_command_line_shows_no_traceback(afile):
    result = subprocess.run(
        [sys.executable, "-m", "cockpit", "--no-ui", "--runs-dir", str(afile / "sub")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"gpt-cockpit: error: --runs-dir {afile}/sub: cannot create it (Not a directory)"
    ]
