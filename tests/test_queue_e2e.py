"""A night in small: a 2-value sweep and one more tiny CPU run (three entries for two cores: one
waits for a slot), the scheduler detached, killed with SIGKILL midway (and one training child
with it), restarted: every entry done, one run directory each, none started twice, the resumed
run's losses those of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tiny_runs import TINY, events_of, step_losses, train_in_process, write_corpus

from cockpit import rundir
from cockpit.campaign.locations import scheduler_lock_path
from cockpit.campaign.lock import holder_pid
from cockpit.campaign.store import Queue

REPO = Path(__file__).resolve().parents[1]
SETS = [*TINY, "train.max_steps=40", "train.eval_interval=10", "train.log_interval=5"]


def cockpit(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "cockpit", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def log_kinds(queue: Queue) -> list[str]:
    return [line["kind"] for line in queue.log_lines()]


def checkpointed_and_running(queue: Queue):
    for e in queue.entries(states=["running"]):
        if e.run_dir and any(r["step"] < 40 for r in events_of(Path(e.run_dir), "checkpoint")):
            info = rundir.read_run_info(e.run_dir)
            if info.status == "running" and info.step < 35:
                return e
    return None


def test_a_killed_scheduler_restarted_finishes_the_night(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus = write_corpus(tmp_path)
    monkeypatch.setenv("GPT_COCKPIT_CPU_THREADS", "1")  # every run on one thread: comparable losses
    # each run waits after step 20 (checkpointed) until the test has killed what it kills: a
    # window to be killed midway in, where slowing every step by 150 ms cost each run 6 s
    release = tmp_path / "killed"
    monkeypatch.setenv("GPT_COCKPIT_FAULT", f"hold_at_step=20,hold_s=60,hold_until={release}")
    sets = [a for s in [*SETS, f"data.source={corpus}"] for a in ("--set", s)]
    added = cockpit(
        "queue",
        "add",
        "tiny_char",
        *sets,
        "--device",
        "cpu",
        "--sweep",
        "train.lr=3e-3,1e-3",
        cwd=tmp_path,
    )
    assert added.returncode == 0, added.stderr
    more = cockpit(
        "queue",
        "add",
        "tiny_char",
        *sets,
        "--set",
        "model.n_layer=2",
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    assert more.returncode == 0, more.stderr

    started = cockpit("queue", "run", "--tick", "0.25", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    scheduler = holder_pid(scheduler_lock_path())
    assert scheduler and scheduler > 0
    argv = Path(f"/proc/{scheduler}/cmdline").read_bytes().split(b"\0")
    assert argv[argv.index(b"--tick") + 1] == b"0.25"  # the detached scheduler got its tick
    with Queue() as queue:
        wait_for(lambda: checkpointed_and_running(queue), 180, "a run with a checkpoint")
        victim = checkpointed_and_running(queue)
        os.kill(scheduler, signal.SIGKILL)  # the scheduler, mid-night
        wait_for(lambda: holder_pid(scheduler_lock_path()) is None, 10, "the lock to go")
        child = rundir.read_run_info(victim.run_dir).pid
        os.kill(child, signal.SIGKILL)  # and one run with it, as the OOM killer would

        again = cockpit("queue", "run", "--tick", "0.25", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        wait_for(lambda: "adopted" in log_kinds(queue), 60, "the run that lived on, adopted")
        release.touch()  # the window was needed once: every run trains straight on from here
        wait_for(lambda: holder_pid(scheduler_lock_path()) is None, 300, "the night to end")
        entries = queue.entries()
        log = log_kinds(queue)

    assert [e.state for e in entries] == ["done"] * 3, [(e.id, e.state, e.reason) for e in entries]
    run_dirs = sorted(Path(os.environ["GPT_COCKPIT_RUNS"]).iterdir())
    assert sorted(Path(e.run_dir) for e in entries) == run_dirs  # exactly one directory each
    killed = next(e for e in entries if e.id == victim.id)
    assert len(killed.retries) == 1 and killed.attempts == 2
    assert "adopted" in log and log[-1] == "queue-empty"
    for e in entries:
        starts = events_of(Path(e.run_dir), "start")
        assert len(starts) == (2 if e.id == victim.id else 1)  # none started twice
    assert events_of(Path(killed.run_dir), "start")[-1]["resumed_from"] in (10, 20, 30)

    # the same preset trained straight through, in this process, on one thread
    monkeypatch.delenv("GPT_COCKPIT_FAULT")
    reference = rundir.create_run_dir(rundir.load_run_preset(killed.run_dir), tmp_path / "straight")
    assert train_in_process(reference).returncode == 0
    assert step_losses(Path(killed.run_dir)) == step_losses(reference)  # exactly, step for step
