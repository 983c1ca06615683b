"""Resume: the same losses as an uninterrupted run, fallback from a corrupt last.pt, kill -9 leaves a usable run."""

from __future__ import annotations

import os
import signal
import time

import pytest
from tiny_runs import (
    SHARED_STOP_STEP,
    copy_run,
    events_of,
    make_run,
    step_losses,
    train_in_fork,
    train_in_process,
)

from cockpit import rundir, runs
from cockpit.train import checkpoint as ckpt

pytestmark = pytest.mark.slow


def test_resume_equals_the_uninterrupted_run(tmp_path, finished_run, stopped_run):
    # the same run trained straight through, and stopped gracefully after SHARED_STOP_STEP
    assert events_of(stopped_run, "end")[-1]["reason"] == "stopped"
    assert rundir.read_run_info(stopped_run).status == "stopped"
    parted = copy_run(stopped_run, tmp_path / "parted")
    second = train_in_process(parted, resume=True)
    assert second.returncode == 0, second.stderr

    starts = events_of(parted, "start")
    assert [s["resumed_from"] for s in starts] == [None, SHARED_STOP_STEP]
    assert events_of(parted, "end")[-1]["reason"] == "finished"
    expected, got = step_losses(finished_run), step_losses(parted)
    assert sorted(got) == list(range(1, 61))
    assert got == expected  # exactly, step for step
    val = [(e["step"], e["val_loss"]) for e in events_of(finished_run, "eval")]
    assert len(val) == 3  # evals before and after the stop
    assert [(e["step"], e["val_loss"]) for e in events_of(parted, "eval")] == val
    assert rundir.read_run_info(parted).status == "finished"


def test_corrupt_last_falls_back_to_previous(tmp_path, stopped_run):
    run_dir = copy_run(stopped_run, tmp_path / "run")  # stopped at 25, the eval before at 20
    folder = run_dir / "checkpoints"
    assert ckpt.load_checkpoint(folder / "last.prev.pt")["step"] == 20
    data = (folder / "last.pt").read_bytes()
    (folder / "last.pt").write_bytes(data[: len(data) // 3])  # a torn file under the real name

    proc = train_in_process(run_dir, resume=True)
    assert proc.returncode == 0, proc.stderr
    warning = [w for w in events_of(run_dir, "warning") if w["rule"] == "checkpoint"][-1]
    assert "last.pt" in warning["message"] and "last.prev.pt" in warning["message"]
    assert events_of(run_dir, "start")[-1]["resumed_from"] == 20
    assert events_of(run_dir, "end")[-1]["reason"] == "finished"


def test_both_checkpoints_bad_is_a_clear_error(tmp_path, stopped_run):
    run_dir = copy_run(stopped_run, tmp_path / "run")
    for name in ("last.pt", "last.prev.pt"):
        (run_dir / "checkpoints" / name).write_bytes(b"garbage")
    proc = train_in_process(run_dir, resume=True)
    assert proc.returncode == 1
    assert (
        "last.pt" in proc.stderr
        and "last.prev.pt" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    assert events_of(run_dir, "end")[-1]["reason"] == "error"
    assert rundir.read_run_info(run_dir).status == "error"


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    run_dir = make_run(tmp_path)
    proc = train_in_process(run_dir, resume=True)
    assert proc.returncode == 1 and "no usable checkpoint" in proc.stderr


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def test_kill_9_leaves_a_loadable_checkpoint_and_reads_as_crashed(tmp_path):
    run_dir = make_run(tmp_path, "train.max_steps=100000", "train.eval_interval=10")
    handle = runs.launch(
        run_dir, device="cpu", detach=False, env={"GPT_COCKPIT_FAULT": "slow_step_ms=10"}
    )
    try:
        wait_for(lambda: any(c["kind"] == "last" for c in events_of(run_dir, "checkpoint")))
        wait_for(lambda: events_of(run_dir, "step") and events_of(run_dir, "step")[-1]["step"] > 12)
        os.kill(handle.pid, signal.SIGKILL)
        handle.process.wait(timeout=30)
    finally:
        if handle.poll() is None:
            handle.process.kill()
    state = ckpt.load_latest(run_dir / "checkpoints").state
    assert state["step"] % 10 == 0 and state["step"] >= 10
    assert not events_of(run_dir, "end")
    assert rundir.run_status(run_dir) == "crashed"
    assert rundir.read_run_info(run_dir).status == "running"  # a reader derives it, writes nothing

    proc = train_in_process(run_dir, resume=True, fault="stop_at_step=" + str(state["step"] + 3))
    assert proc.returncode == 0, proc.stderr
    assert events_of(run_dir, "start")[-1]["resumed_from"] == state["step"]


def test_die_at_step_is_a_crash_without_end(tmp_path):
    """The fault's os._exit(1) ends the process that trains (a fork of this one, no new torch)."""
    run_dir = make_run(tmp_path, "train.eval_interval=10")
    assert train_in_fork(run_dir, fault="die_at_step=15", timeout=120) == 1
    assert not events_of(run_dir, "end")
    assert ckpt.load_latest(run_dir / "checkpoints").state["step"] == 10


def edit_preset(run_dir, section: str, key: str, value) -> None:
    import json

    path = run_dir / rundir.PRESET_JSON
    preset = json.loads(path.read_text())
    preset[section][key] = value
    path.write_text(json.dumps(preset))


def test_resume_refuses_a_preset_whose_batch_size_changed(tmp_path, stopped_run):
    run_dir = copy_run(stopped_run, tmp_path / "run")
    edit_preset(run_dir, "train", "batch_size", 8)
    before = len(events_of(run_dir, "step"))
    proc = train_in_process(run_dir, resume=True)
    assert proc.returncode == 1
    assert "train.batch_size is 8 but the checkpoint was trained with 4" in proc.stderr
    assert events_of(run_dir, "end")[-1]["reason"] == "error"
    assert len(events_of(run_dir, "step")) == before  # not one step trained on the changed preset


def test_resume_says_when_another_preset_field_changed(tmp_path, stopped_run):
    run_dir = copy_run(stopped_run, tmp_path / "run")
    edit_preset(run_dir, "train", "log_interval", 7)
    proc = train_in_process(run_dir, resume=True, fault="stop_at_step=27")
    assert proc.returncode == 0, proc.stderr
    (warning,) = [w for w in events_of(run_dir, "warning") if w["rule"] == "preset_changed"]
    assert "train.log_interval 5 -> 7" in warning["message"]
