"""One trainer per run: the lifelong lock on a run directory, and atomic creation of one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cockpit import rundir
from cockpit.__main__ import main
from cockpit.plan.presets import Preset, apply_overrides

REPO = Path(__file__).resolve().parent.parent


def tiny() -> Preset:
    return apply_overrides(Preset(name="tiny"), {"train.max_steps": 20, "train.warmup_steps": 2})


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir()) if p.is_file()}


def test_a_second_lock_on_a_run_is_refused_and_names_the_holder(tmp_path):
    run_dir = rundir.create_run_dir(tiny(), tmp_path / "r")
    assert rundir.lock_holder(run_dir) is None
    assert not (run_dir / rundir.TRAIN_LOCK).exists(), "a probe must not create the lock file"
    first = rundir.TrainLock(run_dir)
    try:
        assert rundir.lock_holder(run_dir) == os.getpid()
        with pytest.raises(rundir.RunBusy, match=f"already being trained by pid {os.getpid()}"):
            rundir.TrainLock(run_dir, wait_s=0.1)
    finally:
        first.release()
    assert rundir.lock_holder(run_dir) is None
    rundir.TrainLock(run_dir).release()  # free again once released


def test_the_child_refuses_a_run_another_process_trains(tmp_path):
    """`python -m cockpit.train --resume` on a live run: one line, exit 2, nothing written, and
    no torch loaded (its default `--device auto` asks torch about CUDA only once it holds the run)."""
    run_dir = rundir.create_run_dir(tiny(), tmp_path / "r")
    holder = rundir.TrainLock(run_dir)
    before = snapshot(run_dir)
    no_torch = tmp_path / "no_torch" / "torch"  # a torch that fails loudly if anything loads it
    no_torch.mkdir(parents=True)
    (no_torch / "__init__.py").write_text('raise ImportError("torch was loaded")\n')
    path = os.pathsep.join([str(no_torch.parent), os.environ.get("PYTHONPATH", "")])
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "cockpit.train", "--run-dir", str(run_dir), "--resume"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": path},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.release()
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "already being trained by pid" in lines[0], proc.stderr
    after = snapshot(run_dir)
    after.pop(rundir.TRAIN_LOCK, None)
    before.pop(rundir.TRAIN_LOCK, None)
    assert after == before
    assert not (run_dir / rundir.EVENTS_JSONL).exists()


HOLD = """
import sys, time
from cockpit import rundir
lock = rundir.TrainLock(sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""


@pytest.fixture
def held_run(tmp_path):
    """A run whose lock another process holds, while run.json names a dead pid."""
    run_dir = rundir.create_run_dir(tiny(), tmp_path / "runs" / "held")
    rundir.update_run_info(run_dir, status="running", pid=2**22 + 7, pid_start_time=1.0)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield run_dir, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_a_held_run_is_live_resume_is_refused_and_stop_reaches_the_holder(held_run, capsys):
    run_dir, proc = held_run
    assert rundir.run_status(run_dir) == "running"  # not crashed: its trainer holds it
    code = main(["--runs-dir", str(run_dir.parent), "resume", str(run_dir), "--no-ui"])
    assert code == 2
    assert f"held is already being trained by pid {proc.pid}; stop it first" in (
        capsys.readouterr().err
    )
    assert rundir.stop_run(run_dir)  # the holder's pid, not run.json's dead one
    assert proc.wait(timeout=10) == -signal.SIGTERM


def test_two_creations_of_one_run_directory_race_and_one_wins(tmp_path):
    target = tmp_path / "r"
    barrier = threading.Barrier(8)
    results: list[object] = []

    def create() -> None:
        barrier.wait()
        try:
            results.append(rundir.create_run_dir(tiny(), target))
        except rundir.RunError as exc:
            results.append(exc)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(r, Path) for r in results) == 1, results
    assert not [p for p in target.iterdir() if p.name.startswith(".")], "a temp file was left"


def test_fresh_run_ids_never_collide_under_a_race(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "strftime", lambda _fmt: "20260101-000000")
    barrier = threading.Barrier(6)
    made: list[Path] = []

    def create() -> None:
        barrier.wait()
        made.append(rundir.create_run_dir(tiny(), root=tmp_path))

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 6


def test_the_trainers_next_write_restores_an_overwritten_run_json(tmp_path):
    run_dir = rundir.create_run_dir(tiny(), tmp_path / "r")
    lock = rundir.TrainLock(run_dir)  # as the child holds it
    try:
        rundir.update_run_info(run_dir, status="running", pid=os.getpid(), device="cpu", step=0)
        # Someone rewrites run.json while the trainer runs, keeping three fields.
        (run_dir / rundir.RUN_JSON).write_text(
            json.dumps({"run_id": "r", "step": 5, "best_val_loss": 2.0})
        )
        assert rundir.run_status(run_dir) == "running"  # the lock still says who is live
        rundir.update_run_info(run_dir, step=10, best_val_loss=1.5)  # the trainer's next eval
        info = rundir.read_run_info(run_dir)
        assert (info.status, info.pid, info.device, info.preset_name) == (
            "running",
            os.getpid(),
            "cpu",
            "tiny",
        )
        assert (info.step, info.best_val_loss) == (10, 1.5)
    finally:
        lock.release()
    # Without the lock, a writer changes only what it names, as before.
    (run_dir / rundir.RUN_JSON).write_text(json.dumps({"run_id": "r", "step": 5}))
    assert rundir.update_run_info(run_dir, step=6).status == "unknown"


@pytest.mark.slow
def test_an_overwritten_run_json_does_not_hide_a_live_trainer(tmp_path, capsys):
    """A real child: run.json rewritten by someone else, then `gpt-cockpit stop`, whose SIGTERM
    to the lock's holder stops it with a checkpoint (the stop signals' real child, see
    tests/test_signals.py)."""
    from tiny_runs import assert_stopped_with_a_checkpoint, events_of, make_run

    from cockpit import runs

    run_dir = make_run(tmp_path, "train.max_steps=100000", "train.eval_interval=5", name="live")
    handle = runs.launch(
        run_dir, device="cpu", detach=False, env={"GPT_COCKPIT_FAULT": "slow_step_ms=20"}
    )
    try:
        deadline = time.monotonic() + 120
        while not events_of(run_dir, "step"):
            assert handle.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        (run_dir / rundir.RUN_JSON).write_text(
            json.dumps({"run_id": "live", "step": 1, "best_val_loss": 9.0})
        )
        assert main(["--runs-dir", str(tmp_path), "runs"]) == 0
        assert "running" in capsys.readouterr().out
        step = events_of(run_dir, "step")[-1]["step"]
        while not [e for e in events_of(run_dir, "eval") if e["step"] > step]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # the trainer writes run.json whole just after its eval record: wait for that write
        while (info := rundir.read_run_info(run_dir)).step <= step:
            assert handle.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert (
            info.status == "running" and info.preset_name == "tiny_test" and info.pid == handle.pid
        )
        assert main(["--runs-dir", str(tmp_path), "stop", "live"]) == 0
        assert handle.process.wait(timeout=60) == 0
    finally:
        if handle.poll() is None:
            handle.process.kill()
            handle.process.wait()
    assert_stopped_with_a_checkpoint(run_dir, signal.SIGTERM)
