"""The per-user run index: runs are found from any directory; moved or deleted runs drop out with a note."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from fake_trainer import cockpit_command
from test_headless import TINY

from cockpit import rundir, runs
from cockpit.plan.presets import apply_overrides, load_preset
from cockpit.runs import index as run_index


def make_run(root: Path, name: str = "tiny_char") -> Path:
    return rundir.create_run_dir(
        apply_overrides(load_preset("tiny_char"), {"name": name}), root=root
    )


def test_record_remembers_each_run_once_as_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = make_run(Path("elsewhere"))
    assert not run_dir.is_absolute()
    assert run_index.record(run_dir) and run_index.record(run_dir)
    assert run_index.index_path().read_text().splitlines() == [str(tmp_path / run_dir)]
    assert run_index.known_runs() == [tmp_path / run_dir]


def test_an_unwritable_index_is_no_error(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("GPT_COCKPIT_STATE", str(tmp_path / "afile" / "state"))
    assert run_index.record(make_run(tmp_path / "r")) is False
    assert run_index.known_runs() == []


def test_a_moved_or_deleted_run_is_dropped_with_a_note(tmp_path):
    kept, moved = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    for run_dir in (kept, moved):
        run_index.record(run_dir)
    moved.rename(tmp_path / "moved-away")
    notes: list[str] = []
    assert run_index.known_runs(notes.append) == [kept]
    assert len(notes) == 1 and "dropped 1 run" in notes[0] and str(moved) in notes[0]
    assert run_index.index_path().read_text().splitlines() == [str(kept)]  # dropped for good
    assert run_index.known_runs(notes.append) == [kept] and len(notes) == 1


def test_list_and_find_use_the_index_for_the_default_runs_folder_only(tmp_path):
    local = make_run(rundir.runs_root())  # the default folder ($GPT_COCKPIT_RUNS in tests)
    far = make_run(tmp_path / "project" / "runs", "far_one")
    run_index.record(far)
    run_index.record(local)  # in both: listed once
    assert sorted(s.run_dir.resolve() for s in runs.list_runs()) == sorted(
        [local.resolve(), far.resolve()]
    )
    assert runs.find_run(far.name) == far
    assert [s.run_dir for s in runs.list_runs(tmp_path / "project" / "runs")] == [far]
    other = tmp_path / "other"
    other.mkdir()
    assert runs.list_runs(other) == []


def test_a_gone_run_in_the_index_is_a_note_when_listing(tmp_path, capsys):
    gone = make_run(tmp_path / "x")
    run_index.record(gone)
    shutil.rmtree(gone)
    assert runs.list_runs() == []
    assert "gpt-cockpit: dropped 1 run" in capsys.readouterr().err
    assert runs.list_runs() == [] and capsys.readouterr().err == ""  # dropped from the file too


def test_an_indexed_run_that_lost_its_run_json_is_listed_as_damaged_not_dropped(tmp_path, capsys):
    damaged = make_run(tmp_path / "x")
    run_index.record(damaged)
    (damaged / rundir.RUN_JSON).unlink()
    (summary,) = runs.list_runs()
    assert summary.run_dir == damaged and summary.status == "damaged"
    assert "dropped" not in capsys.readouterr().err


def test_attach_last_finds_a_run_made_in_another_directory(tmp_path):
    """Launch in one directory (./runs there), then `attach last --no-ui` from another one."""
    env = {k: v for k, v in os.environ.items() if k != "GPT_COCKPIT_RUNS"}  # ./runs, as a user has
    env.update(FAKE_TRAINER="step_s=0.002", PYTHONUNBUFFERED="1")
    first, second = tmp_path / "project", tmp_path / "after-relogin"
    first.mkdir(), second.mkdir()
    made = subprocess.run(
        cockpit_command("--no-ui", "--max-steps", "20", *TINY),
        cwd=first, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    (run_dir,) = (first / "runs").iterdir()
    listed = subprocess.run(
        cockpit_command("runs", "--json"), cwd=second, env=env, capture_output=True, text=True, timeout=60
    )  # fmt: skip
    assert [json.loads(line)["path"] for line in listed.stdout.splitlines()] == [str(run_dir)]
    attached = subprocess.run(
        cockpit_command("attach", "last", "--no-ui"),
        cwd=second, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert attached.returncode == 0, attached.stderr
    assert f"attached to {run_dir}" in attached.stderr and "end: finished" in attached.stderr
    assert not (second / "runs").exists()
