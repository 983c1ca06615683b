"""Two `resume`s of one stopped run at once: one trainer, and the loser says who has the run."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from fake_trainer import use_fake_trainer
from tiny_runs import wait_forked

from cockpit import rundir
from cockpit.__main__ import main
from cockpit.cli import runs as runs_cli
from cockpit.plan.presets import Preset, apply_overrides

TRIALS = 20
AT_ONCE = 10  # trials raced side by side, so twenty stay quick


def stopped_run(root: Path, name: str, max_steps: int = 5000) -> Path:
    preset = apply_overrides(
        Preset(name=name), {"train.max_steps": max_steps, "train.warmup_steps": 2}
    )
    run_dir = rundir.create_run_dir(preset, root=root)
    rundir.update_run_info(run_dir, status="stopped", end_reason="stopped", step=0)
    # the fake trainer's checkpoint (JSON under the real name): a run with one can be resumed
    (run_dir / rundir.CHECKPOINTS / "last.pt").write_text('{"step": 0, "best_val": 9.0}')
    return run_dir


class Resume:
    """`gpt-cockpit resume RUN --no-ui` in a forked copy of this process (no interpreter to
    start, so twenty races stay quick), its stderr in a file; the training child is the fake."""

    def __init__(self, root: Path, run_dir: Path, err: Path) -> None:
        self.err = err
        self.pid = os.fork()
        if self.pid == 0:  # the copy: run the command, never return into pytest
            code = 1
            try:
                fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 2)
                os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
                code = main(["--runs-dir", str(root), "resume", run_dir.name, "--no-ui"])
            finally:
                sys.stderr.flush()
                os._exit(code)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> int:
        if self.returncode is None:  # not reaped by a poll yet
            self.returncode = wait_forked(self.pid, f"resume {self.pid}", timeout)
        return self.returncode


def starts(run_dir: Path) -> int:
    return sum(
        1 for r in rundir.read_events(run_dir / rundir.EVENTS_JSONL) if r["event"] == "start"
    )


def test_two_resumes_at_once_give_one_trainer_and_a_loser_that_says_why(
    tmp_path, monkeypatch, capsys
):
    root = tmp_path / "runs"
    # each trainer takes the run's lock as the real child does, then steps until stopped
    use_fake_trainer(monkeypatch, lock=1, step_s=0.02)
    # One resume here first, of a run that ends by itself: the modules a resume loads on its way
    # (the follower, the pre-launch checks, the GPU and host probes) are then in every fork from
    # the start, as in copies of one process, instead of each of the forty loading them again.
    warm = stopped_run(root, "warm-up", max_steps=3)
    assert main(["--runs-dir", str(root), "resume", warm.name, "--no-ui"]) == 0
    assert "end: finished" in capsys.readouterr().err
    # the loser waits for the winner's trainer to take the lock so it can name it: a loaded
    # machine can take longer than the product's few seconds to start twenty interpreters, and
    # the loser would then say "still starting" (true, but not the line this test is about)
    monkeypatch.setattr(runs_cli, "HOLDER_WAIT_S", 60.0)  # the forked resumes inherit it
    outcomes = []
    for batch in range(TRIALS // AT_ONCE):
        races = []
        for i in range(AT_ONCE):
            run_dir = stopped_run(root, f"race{batch}-{i}")
            both = [Resume(root, run_dir, tmp_path / f"{run_dir.name}.{n}.err") for n in (1, 2)]
            races.append((run_dir, *both))
        for run_dir, first, second in races:
            deadline = time.monotonic() + 60
            while first.poll() is None and second.poll() is None:
                assert time.monotonic() < deadline, "neither resume ended"
                time.sleep(0.02)
            loser, winner = (first, second) if first.poll() is not None else (second, first)
            holder = rundir.lock_holder(run_dir)
            assert winner.poll() is None, "both resumes ended: the winner should still train"
            rundir.stop_run(run_dir)
            assert winner.wait(timeout=30) == 0
            err = loser.err.read_text()
            outcomes.append((run_dir.name, loser.returncode, holder, err, starts(run_dir)))
    for name, code, holder, err, started in outcomes:
        assert code == 2, (name, err)
        assert holder, f"{name}: nobody held the run while the winner trained"
        assert f"{name} is already being trained by pid {holder}; stop it first" in err, err
        assert "crashed" not in err and "Traceback" not in err, err
        assert started == 1, f"{name}: {started} trainers started"
