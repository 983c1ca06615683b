"""Headless mode's progress line, its quiet phases (no stall note during an eval) and its stderr prefix.

The Follower is fed records written by hand, on a clock the test moves: no child, no waiting.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from cockpit import rundir
from cockpit.headless import Follower
from cockpit.health import HealthConfig, HealthMonitor
from cockpit.plan import presets


class _Alive:
    """Stands for our own child: still running."""

    def poll(self) -> None:
        return None


def make_follower(tmp_path: Path, now: list[float]) -> tuple[Follower, io.StringIO, Path]:
    preset = presets.apply_overrides(
        presets.Preset(name="t"),
        {"train.max_steps": 100, "train.warmup_steps": 1, "train.eval_interval": 50},
    )
    run_dir = rundir.create_run_dir(preset, root=tmp_path)
    err = io.StringIO()
    monitor = HealthMonitor(config=HealthConfig(stall_min_s=5.0, stall_factor=5.0))
    follower = Follower(
        run_dir,
        process=_Alive(),  # type: ignore[arg-type]
        out=io.StringIO(),
        err=err,
        health=monitor,
        clock=lambda: now[0],
        progress_every_s=30.0,
    )
    return follower, err, run_dir


def feed(
    follower: Follower, run_dir: Path, now: list[float], records: list[dict[str, Any]]
) -> None:
    """Append each record at its own time and let the follower take it then."""
    for record in records:
        now[0] = record["time"]
        with open(run_dir / rundir.EVENTS_JSONL, "a") as handle:
            handle.write(json.dumps({"v": 1, **record}) + "\n")
        follower._take(follower.watcher.poll())


def start(t: float) -> dict[str, Any]:
    return {
        "event": "start",
        "step": 0,
        "time": t,
        "preset": "t",
        "device": "cpu",
        "max_steps": 100,
    }


def step(n: int, t: float) -> dict[str, Any]:
    return {"event": "step", "step": n, "time": t, "loss": 2.0, "tokens_per_s": 1234.0}


def test_a_progress_line_every_interval_with_elapsed_eta_and_throughput(tmp_path):
    now = [1000.0]
    follower, err, run_dir = make_follower(tmp_path, now)
    feed(follower, run_dir, now, [start(1000.0)] + [step(i, 1000.0 + i) for i in range(1, 11)])
    now[0] = 1020.0
    follower.show_progress()
    assert "progress" not in err.getvalue()  # the first comes one interval after the first step
    now[0] = 1031.0
    follower.show_progress()
    lines = [line for line in err.getvalue().splitlines() if "progress" in line]
    # one step a second, 90 to go, 21 s since step 10: ETA 69 s
    assert lines == ["gpt-cockpit: progress: step 10/100, elapsed 31.0s, ETA 1m09s, 1.2k tok/s"]
    now[0] = 1040.0
    follower.show_progress()
    assert err.getvalue().count("progress:") == 1  # not again before another interval
    now[0] = 1062.0
    follower.show_progress()
    assert err.getvalue().count("progress:") == 2


def test_no_stall_note_during_a_due_eval_but_one_while_training_is_silent(tmp_path):
    now = [1000.0]
    follower, err, run_dir = make_follower(tmp_path / "a", now)
    feed(follower, run_dir, now, [start(1000.0)] + [step(i, 1000.0 + i) for i in range(1, 51)])
    now[0] += 600.0  # step 50's eval is due: ten minutes of silence is an eval, not a stall
    follower._check_run()
    assert "[stalled]" not in err.getvalue()

    follower, err, run_dir = make_follower(tmp_path / "b", now := [1000.0])
    feed(follower, run_dir, now, [start(1000.0)] + [step(i, 1000.0 + i) for i in range(1, 41)])
    now[0] += 600.0
    follower._check_run()
    assert "warning: step 40: [stalled] no events for 600 s" in err.getvalue()


def test_tip_and_sample_lines_carry_the_prefix(tmp_path):
    now = [1000.0]
    follower, err, run_dir = make_follower(tmp_path, now)
    feed(
        follower,
        run_dir,
        now,
        [
            start(1000.0),
            {"event": "sample", "step": 1, "time": 1001.0, "text": "ROMEO:\nWhat light"},
            {
                "event": "warning",
                "step": 1,
                "time": 1002.0,
                "rule": "loss_spike",
                "severity": "warning",
                "message": "loss jumped",
                "tip": "lower the lr",
            },
        ],
    )
    lines = [line for line in err.getvalue().splitlines() if line]
    assert all(line.startswith("gpt-cockpit: ") for line in lines), lines
    assert "gpt-cockpit:   ROMEO:" in lines and "gpt-cockpit:   tip: lower the lr" in lines


# --------------------------------------------------------------------------- how a Ctrl-C ends


def test_the_end_says_the_signal_received_first_not_the_sigterm_headless_sends_after():
    import signal

    from cockpit.train.__main__ import _StopSwitch

    asked: list[str] = []

    class Trainer:
        def request_stop(self, why: str) -> None:
            asked.append(why)

    switch = _StopSwitch()
    switch.attach(Trainer())
    switch.handle(signal.SIGINT, None)  # the terminal's Ctrl-C reaches the whole group
    switch.handle(signal.SIGTERM, None)  # then headless passes it on
    assert switch.why == "SIGINT received" and set(asked) == {"SIGINT received"}


def test_a_killed_run_is_recorded_killed_but_one_that_wrote_its_end_keeps_it(tmp_path):
    preset = presets.Preset(name="t")
    run_dir = rundir.create_run_dir(preset, root=tmp_path / "a")
    rundir.update_run_info(run_dir, status="running", pid=2**22 + 12345)  # no such process
    assert rundir.record_killed(run_dir, "killed by a second Ctrl-C") == "killed"
    info = rundir.read_run_info(run_dir)
    assert (info.status, info.end_reason, info.end_message) == (
        "killed",
        "killed",
        "killed by a second Ctrl-C",
    )
    assert rundir.run_status(run_dir) == "killed"

    run_dir = rundir.create_run_dir(preset, root=tmp_path / "b")
    rundir.update_run_info(run_dir, status="running", pid=2**22 + 12345)
    with open(run_dir / rundir.EVENTS_JSONL, "a") as handle:
        handle.write(
            json.dumps({"v": 1, "event": "end", "step": 3, "time": 1.0, "reason": "stopped"})
        )
        handle.write("\n")
    assert rundir.record_killed(run_dir, "killed by a second Ctrl-C") == "stopped"
