"""Signals: SIGTERM/SIGINT/SIGHUP stop gracefully with a checkpoint; a second SIGINT exits at
once, leaving only whole files.

Real children (runs.launch, signals blocked until the child's handler is in place) take a
SIGTERM at the spawn and the second SIGINT; `gpt-cockpit stop`'s SIGTERM to a real child is
checked on tests/test_run_lock.py's live trainer (tiny_runs.assert_stopped_with_a_checkpoint).
SIGINT and SIGHUP reach the same handler: they are sent to this process while it runs the
child's entry point (tiny_runs.train_in_process), one torch start-up fewer each. The torn
checkpoint write happens in a forked copy of this process, which dies in the middle of it as a
second Ctrl-C's os._exit does.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from tiny_runs import (
    assert_stopped_with_a_checkpoint,
    events_of,
    home_env,
    make_run,
    train_in_process,
    wait_forked,
)

from cockpit import rundir, runs
from cockpit.train import checkpoint as ckpt
from cockpit.train.__main__ import STOPPING

pytestmark = pytest.mark.slow


def launch_slow(tmp_path, step_ms: int, *overrides: str, until_step: int, until: str = "step"):
    """A real child of a long run whose steps sleep `step_ms`, once it has written the `until`
    record (a step, a checkpoint...) of step `until_step` or later."""
    run_dir = make_run(
        tmp_path,
        "train.max_steps=100000",
        "train.eval_interval=0",
        "train.log_interval=2",
        *overrides,
    )
    env = {**home_env(tmp_path), "GPT_COCKPIT_FAULT": f"slow_step_ms={step_ms}"}
    handle = runs.launch(run_dir, device="cpu", detach=False, env=env)
    try:
        deadline = time.monotonic() + 60
        while not [r for r in events_of(run_dir, until) if r["step"] >= until_step]:
            assert handle.poll() is None, (run_dir / "console.log").read_text()
            assert time.monotonic() < deadline, "no steps within 60 s"
            time.sleep(0.05)
    except BaseException:
        handle.process.kill()
        handle.process.wait(timeout=30)
        raise
    return run_dir, handle


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_sigint_and_sighup_stop_with_a_checkpoint(tmp_path, sig):
    """A Ctrl-C or a dropped SSH session, sent to the process that trains once it has logged
    step 4; the run is long and has a clock (max_time_s) only so a lost signal cannot hang."""
    run_dir = make_run(
        tmp_path,
        "train.max_steps=100000",
        "train.max_time_s=120",
        "train.eval_interval=0",
        "train.log_interval=2",
    )
    sent: list[int] = []

    def send_at_step_4() -> None:
        deadline = time.monotonic() + 60
        while not [r for r in events_of(run_dir, "step") if r["step"] >= 4]:
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        sent.append(events_of(run_dir, "step")[-1]["step"])
        os.kill(os.getpid(), sig)  # the trainer's handler is in place until its run has ended

    sender = threading.Thread(target=send_at_step_4, daemon=True)
    sender.start()
    proc = train_in_process(run_dir)
    sender.join(timeout=10)
    assert sent, "no step 4 within 60 s"
    assert proc.returncode == 0, proc.stderr
    assert STOPPING in proc.stderr
    assert_stopped_with_a_checkpoint(run_dir, sig)
    assert events_of(run_dir, "end")[-1]["step"] >= sent[0]


def test_second_sigint_exits_at_once(tmp_path):
    # Long steps (1.5 s): the first SIGINT asks for a stop, the second arrives while that step
    # runs; a checkpoint after every step, so there are checkpoints to tear. The first goes once
    # step 2's checkpoint is written, so it lands in step 3: sent at step 2's record, it could land
    # during step 2's eval and checkpoint, and the run then stopped at once, before the second.
    run_dir, handle = launch_slow(
        tmp_path, 1500, "train.eval_interval=1", until_step=2, until="checkpoint"
    )
    try:
        stop_twice(run_dir, handle)
    finally:
        if handle.poll() is None:
            handle.process.kill()
            handle.process.wait(timeout=30)
    assert not events_of(run_dir, "end")
    folder = run_dir / "checkpoints"
    assert (folder / "last.pt").is_file()
    for path in folder.glob("*.pt"):  # whatever carries a real name is whole
        ckpt.load_checkpoint(path)
    assert rundir.run_status(run_dir) == "crashed"


def stop_twice(run_dir, handle) -> None:
    """A SIGINT, then a second once the child has heard the first: it exits at once (130)."""
    os.kill(handle.pid, signal.SIGINT)
    # The second only once the child has heard the first: two SIGINTs that reach a process
    # before its handler runs are one signal (a loaded machine can hold it back that long).
    deadline = time.monotonic() + 30
    while STOPPING not in (run_dir / rundir.CONSOLE_LOG).read_text(errors="replace"):
        assert time.monotonic() < deadline, "the child never reported the first SIGINT"
        time.sleep(0.005)
    os.kill(handle.pid, signal.SIGINT)
    assert handle.process.wait(timeout=60) == 130


def test_exit_during_a_checkpoint_write_leaves_only_whole_files(tmp_path):
    import torch

    def state(step: int) -> dict:
        return {
            "format": ckpt.FORMAT_VERSION,
            "step": step,
            "model": {"w": torch.randn(256, 256)},
            "optimizer": {},
            "preset": {},
        }

    ckpt.save_last(tmp_path, state(1))
    second = state(2)
    pid = os.fork()
    if pid == 0:  # the copy: half a file, then exit at once as a second Ctrl-C does
        try:

            def torn_save(obj, handle, *args, **kwargs):
                handle.write(b"PK\x03\x04" + b"\x00" * 50_000)
                handle.flush()
                os._exit(130)

            torch.save = torn_save  # in the copy only
            ckpt.save_last(tmp_path, second)
        finally:
            os._exit(1)  # never back into pytest
    assert wait_forked(pid, "the torn writer", timeout=60) == 130
    assert list(tmp_path.glob(".last.pt.*.tmp"))  # the torn write is there, under a temp name only
    loaded = ckpt.load_latest(tmp_path)
    assert loaded.path.name == "last.pt" and loaded.state["step"] == 1 and not loaded.problems
    assert ckpt.load_checkpoint(tmp_path / "last.prev.pt")["step"] == 1
    assert ckpt.remove_stale_temps(tmp_path) and not list(tmp_path.glob(".*.tmp"))


def test_sigterm_right_after_the_spawn_is_a_stop_not_a_crash(tmp_path):
    """Before the interpreter has even started, a stop must wait for the child's handler."""
    run_dir = make_run(tmp_path, "train.max_steps=100000", "train.eval_interval=0", name="early")
    handle = runs.launch(run_dir, device="cpu", detach=False, env=home_env(tmp_path))
    os.kill(handle.pid, signal.SIGTERM)  # at once: the child is at most a fork
    assert handle.process.wait(timeout=120) == 0, (run_dir / "console.log").read_text()
    assert events_of(run_dir, "end")[-1]["reason"] == "stopped"
    assert rundir.run_status(run_dir) == "stopped"
