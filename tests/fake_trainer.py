"""A torch-free stand-in for the training child, for tests of every reader of a run directory.

It takes the child's own command line (`--run-dir DIR --device D [--resume]`),
reads DIR/preset.json and writes what the real child writes: run.json updates,
events.jsonl with start/step/eval/sample/checkpoint/warning/end records, and a
small fake checkpoint. SIGTERM or a first SIGINT stops after the current step
with a checkpoint and `end` reason stopped; a second SIGINT exits at once (130).

Behaviour knobs come from the FAKE_TRAINER environment variable (so they pass
through `runs.launch`), comma-separated `key=value`:

    step_s=0.01        seconds per step (default 0.002)
    die_at=K           os._exit(1) after step K, with no `end` event (a crash)
    error_at=K         raise at step K: `error` + `end` crashed, exit 1
    warn_at=K          a loss_spike `warning` event at step K
    nan_at=K           step K's loss is NaN
    halt_at=K          stop at step K with `end` halted, exit 1
    ignore_term=1      ignore SIGTERM (to test --kill)
    bad_line_at=K      write a corrupt line into events.jsonl after step K
    mfu=0.31           add this MFU (a fraction) to step events
    start_delay=X      seconds of "setup" before run.json says running and `start` is written
    pause_at=K         after step K, write nothing for pause_s seconds (a stall); a stop
                       request ends the pause early (the trainer then stops as asked)
    pause_s=X          length of that pause (default 2)
    lock=1             take the run's train lock first, as the real child: a run another
                       trainer holds is refused with its one line and exit 2

Use from tests:

    use_fake_trainer(monkeypatch, step_s=0.01)   # runs.launch now starts this file
    python tests/fake_trainer.py cockpit --no-ui ...   # the real CLI, with this child
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from cockpit import rundir  # noqa: E402  (not cockpit.runs: the child itself never launches)
from cockpit.common.fsutil import atomic_write_text  # noqa: E402
from cockpit.rundir import (  # noqa: E402
    CheckpointEvent,
    EndEvent,
    ErrorEvent,
    EvalEvent,
    EventWriter,
    SampleEvent,
    StartEvent,
    StepEvent,
    WarningEvent,
)

SAMPLE_TEXT = "def main():\n    return 0\n"


def parse_options(text: str | None) -> dict[str, float]:
    """FAKE_TRAINER's `k=v,k=v` as a dict of floats."""
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        if "=" in part:
            key, _, value = part.partition("=")
            out[key.strip()] = float(value)
    return out


def fake_command(run_dir: Path, *, device: str = "auto", resume: bool = False) -> list[str]:
    """The argv that starts this fake child (same shape as runs.child_command)."""
    cmd = [sys.executable, str(HERE), "--run-dir", str(run_dir), "--device", device]
    if resume:
        cmd.append("--resume")
    return cmd


def use_fake_trainer(monkeypatch: Any, **options: float) -> None:
    """Make runs.launch start this fake child, with FAKE_TRAINER set from `options`."""
    from cockpit import runs

    monkeypatch.setattr(runs, "child_command", fake_command)
    monkeypatch.setenv("FAKE_TRAINER", ",".join(f"{k}={v}" for k, v in options.items()))


def cockpit_command(*args: str) -> list[str]:
    """argv that runs `gpt-cockpit ARGS` with this fake child in place of the real one."""
    return [sys.executable, str(HERE), "cockpit", *args]


def fake_loss(step: int) -> float:
    """A falling, slightly wiggly loss curve (deterministic)."""
    return 1.5 + 3.0 * math.exp(-step / 40.0) + 0.02 * math.sin(step)


def cosine_lr(step: int, lr: float, min_lr: float, warmup: int, max_steps: int) -> float:
    """nanoGPT's get_lr: linear warmup, cosine to min_lr."""
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    ratio = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


class FakeTrainer:
    """Writes one run's worth of realistic records into a run directory."""

    def __init__(self, run_dir: Path, device: str, resume: bool, options: dict[str, float]) -> None:
        self.run_dir = run_dir
        self.options = options
        self.preset = rundir.load_run_preset(run_dir)
        self.device = "cpu" if device == "auto" else device
        self.resume = resume
        self.stop_requested = 0
        self.writer = EventWriter(run_dir / rundir.EVENTS_JSONL)
        self.best_val = math.inf
        self.step = 0
        self.ended = False

    def on_signal(self, signum: int, _frame: Any) -> None:
        """First SIGINT/SIGTERM/SIGHUP: stop after this step; a second SIGINT: exit at once
        (unless training is over and only the end is being written, as the real child)."""
        if signum == signal.SIGTERM and self.options.get("ignore_term"):
            return
        self.stop_requested += 1
        if self.stop_requested > 1 and signum == signal.SIGINT and not self.ended:
            os._exit(130)

    def opt(self, key: str) -> int | None:
        value = self.options.get(key)
        return None if value is None else int(value)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGHUP, self.on_signal)  # a dropped session stops like SIGTERM
        # runs.launch starts a child with the stop signals blocked; handlers in, take them now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
        t = self.preset.train
        time.sleep(self.options.get("start_delay", 0.0))  # like importing torch and reading data
        ckpt = self.run_dir / rundir.CHECKPOINTS / "last.pt"  # JSON inside: only the name matters
        resumed_from = None
        if self.resume and ckpt.exists():
            state = json.loads(ckpt.read_text())
            self.step, self.best_val = int(state["step"]), float(state["best_val"])
            resumed_from = self.step
        rundir.update_run_info(
            self.run_dir,
            status="running",
            pid=os.getpid(),
            pid_start_time=rundir.process_start_time(os.getpid()),
            device=self.device,
            gpu_name=None,
            dtype="fp32",
            max_steps=t.max_steps,
            params=12345,
            started=time.time(),
        )
        self.writer.write(
            StartEvent(
                step=self.step,
                preset=self.preset.name,
                device=self.device,
                gpu=None,
                dtype="fp32",
                params=12345,
                tokens_per_step=self.preset.tokens_per_step,
                data="fake corpus",
                resumed_from=resumed_from,
                max_steps=t.max_steps,
                micro_batch=t.batch_size,
                grad_accum=t.grad_accum,
                world_size=1,
                compile=False,
                pid=os.getpid(),
            )
        )
        step_s = self.options.get("step_s", 0.002)
        pending: list[StepEvent] = []
        while self.step < t.max_steps:
            time.sleep(step_s)
            self.step += 1
            step = self.step
            loss = math.nan if self.opt("nan_at") == step else fake_loss(step)
            pending.append(
                StepEvent(
                    step=step,
                    loss=loss,
                    lr=cosine_lr(step, t.lr, t.min_lr, t.warmup_steps, t.max_steps),
                    grad_norm=0.5 + 0.1 * math.cos(step),
                    tokens_per_s=self.preset.tokens_per_step / max(step_s, 1e-6),
                    step_ms=step_s * 1000.0,
                    tokens=step * self.preset.tokens_per_step,
                    mfu=self.options.get("mfu"),
                    micro_batch=t.batch_size,
                    grad_accum=t.grad_accum,
                )
            )
            last = step >= t.max_steps or self.stop_requested
            if step % t.log_interval == 0 or last or self.opt("die_at") == step:
                self.writer.write_many(pending)
                pending = []
            if (
                self.opt("warn_at") == step
                or self.opt("nan_at") == step
                or self.opt("error_at") == step
            ):
                self.writer.write_many(pending)  # a reader sees the step before its warning
                pending = []
            if self.opt("bad_line_at") == step:
                with open(self.run_dir / rundir.EVENTS_JSONL, "a") as handle:
                    handle.write('{"event": "step", "loss": \n')
            if self.opt("die_at") == step:
                print(f"fake trainer: dying at step {step}", flush=True)
                os._exit(1)
            if self.opt("error_at") == step:
                self.writer.write(
                    ErrorEvent(
                        step=step,
                        message="RuntimeError: injected failure",
                        kind="RuntimeError",
                        traceback="...",
                    )
                )
                return self.finish("crashed", "RuntimeError: injected failure")
            if self.opt("warn_at") == step or self.opt("nan_at") == step:
                rule = "nonfinite" if self.opt("nan_at") == step else "loss_spike"
                self.writer.write(
                    WarningEvent(
                        step=step,
                        rule=rule,
                        severity="critical" if rule == "nonfinite" else "warning",
                        message=f"loss {loss:.3g} at step {step} is far above the recent mean",
                        tip="lower train.lr or raise train.warmup_steps",
                        evidence={"loss": loss},
                    )
                )
            if self.opt("pause_at") == step:
                self.writer.write_many(pending)
                pending = []
                self.pause(self.options.get("pause_s", 2.0))
            if self.opt("halt_at") == step:
                return self.finish("halted", "halted on a health rule")
            if t.eval_interval and step % t.eval_interval == 0 and step < t.max_steps:
                self.evaluate(step)
            if self.stop_requested:
                self.checkpoint(step)
                return self.finish("stopped", "stopped on request")
        self.writer.write_many(pending)
        self.evaluate(self.step)
        return self.finish("finished", "reached max_steps")

    def pause(self, seconds: float) -> None:
        """Write nothing for `seconds`, or until a stop is asked (a test of a stall need not wait
        out the whole silence once the stall has been seen and the run told to stop)."""
        deadline = time.monotonic() + seconds
        while not self.stop_requested and time.monotonic() < deadline:
            time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))

    def evaluate(self, step: int) -> None:
        val = fake_loss(step) + 0.05
        improved = val < self.best_val
        self.best_val = min(self.best_val, val)
        self.writer.write(
            EvalEvent(
                step=step,
                val_loss=val,
                train_loss=fake_loss(step),
                val_bpb=val / math.log(2) / 3.5,
                best_val_loss=self.best_val,
                improved=improved,
            )
        )
        if self.preset.train.sample_tokens:
            self.writer.write(SampleEvent(step=step, text=SAMPLE_TEXT))
        rundir.update_run_info(self.run_dir, step=step, best_val_loss=self.best_val)
        self.checkpoint(step)

    def checkpoint(self, step: int) -> None:
        path = self.run_dir / rundir.CHECKPOINTS / "last.pt"  # JSON inside: only the name matters
        atomic_write_text(path, json.dumps({"step": step, "best_val": self.best_val}))
        rel = str(path.relative_to(self.run_dir))
        size = path.stat().st_size
        self.writer.write(
            CheckpointEvent(step=step, path=rel, kind="last", bytes=size, seconds=0.001)
        )

    def finish(self, reason: str, message: str) -> int:
        self.ended = True
        self.writer.write(EndEvent(step=self.step, reason=reason, message=message))
        self.writer.close()
        rundir.update_run_info(
            self.run_dir,
            status=rundir.status_for_end_reason(reason),
            end_reason=reason,
            end_message=message,
            ended=time.time(),
            step=self.step,
        )
        return 0 if reason in ("finished", "stopped", "max-time") else 1


def main(argv: list[str] | None = None) -> int:
    """The child's entry point, or `cockpit ARGS` to run the CLI with this child."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["cockpit"]:
        from cockpit import runs

        runs.child_command = fake_command  # type: ignore[assignment]
        from cockpit.__main__ import main as cockpit_main

        return cockpit_main(argv[1:], whole_process=True)
    parser = argparse.ArgumentParser(prog="fake_trainer")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    options = parse_options(os.environ.get("FAKE_TRAINER"))
    if options.get("lock"):
        try:
            lock = rundir.TrainLock(args.run_dir)  # noqa: F841 - held until this process exits
        except rundir.RunBusy as exc:
            print(f"gpt-cockpit: error: {exc}", file=sys.stderr, flush=True)
            return 2
    return FakeTrainer(Path(args.run_dir), args.device, args.resume, options).run()


if __name__ == "__main__":
    sys.exit(main())
