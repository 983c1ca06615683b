"""The training child: `python -m cockpit.train --run-dir DIR --device auto|cpu|cuda [--resume]`.

Runs one preset in one run directory, then exits 0 (finished, stopped, max-time)
or 1 (halted, crashed, error). SIGINT, SIGTERM or SIGHUP (a dropped SSH session)
asks for a graceful stop (finish the step, checkpoint, `end` stopped); a second
SIGINT exits at once with 130.
Every failure ends with an `error` and an `end` event, run.json's final status,
and one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cockpit import rundir
from cockpit.common.diagnostics import EXIT_INTERRUPTED, EXIT_USAGE, error, exit_code_for_end
from cockpit.plan.allocator import child_alloc_env
from cockpit.rundir import ErrorEvent, EventWriter
from cockpit.train.threads import usable_cores, wait_politely

if TYPE_CHECKING:
    from cockpit.train.runtime import Dist

# Each asks for a graceful stop; SIGHUP is a dropped terminal or SSH session.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean 'this run cannot go on as configured' (end reason error), not a crash."""
    from cockpit.plan.presets import PresetError
    from cockpit.train.checkpoint import CheckpointError
    from cockpit.train.faults import FaultSpecError
    from cockpit.train.runtime import EngineError

    found: list[type[BaseException]] = [
        EngineError,
        CheckpointError,
        FaultSpecError,
        PresetError,
        rundir.RunError,
    ]
    for module, name in (
        ("cockpit.train.data", "DataError"),
        ("cockpit.text.tokenizers", "TokenizerUnavailable"),
    ):
        try:
            found.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def _traceback_tail(exc: BaseException, lines: int = 12) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return "\n".join(text.rstrip().splitlines()[-lines:])


STOPPING = "stopping after this step with a checkpoint (a second SIGINT exits at once)"


class Stoppable(Protocol):
    """What the stop switch asks of a trainer: finish the step, checkpoint, end `stopped`."""

    def request_stop(self, why: str = ...) -> None: ...


class _StopSwitch:
    """Signal state shared with the trainer once it exists (signals can arrive while torch imports)."""

    def __init__(self) -> None:
        self.trainer: Stoppable | None = None
        self.why = ""
        self.ended = False  # training is over (its checkpoint written): a second SIGINT waits

    def attach(self, trainer: Stoppable) -> None:
        self.trainer = trainer
        if self.why:
            trainer.request_stop(self.why)

    def handle(self, signum: int, _frame: object) -> None:
        """First SIGINT/SIGTERM/SIGHUP: graceful stop. A SIGINT after that exits at once (atomic
        writes keep files whole), unless training is already over and only its end is being written."""
        if self.why and signum == signal.SIGINT and not self.ended:
            os._exit(EXIT_INTERRUPTED)
        first = not self.why
        if first:  # the end says what was received first (a Ctrl-C, then headless's SIGTERM)
            self.why = f"{signal.Signals(signum).name} received"
        if first:  # in console.log: when the stop was asked for (and that it was heard)
            with contextlib.suppress(RuntimeError, OSError, ValueError):
                print(f"gpt-cockpit: {self.why}: {STOPPING}", file=sys.stderr, flush=True)
        if self.trainer is not None:
            self.trainer.request_stop(self.why)

    def install(self) -> None:
        """Handle the stop signals, then unblock them (runs.launch starts the child with them
        blocked, so one sent before now was held for this handler rather than killing us)."""
        self.previous = {sig: signal.signal(sig, self.handle) for sig in STOP_SIGNALS}
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def uninstall(self) -> None:
        for sig, handler in getattr(self, "previous", {}).items():
            signal.signal(sig, handler)


def _take_run_lock(run_dir: str | os.PathLike[str]) -> rundir.TrainLock | None:
    """The run's exclusive lock for this process's life (rank 0 only); RunBusy if another trainer has it."""
    if os.environ.get("RANK", "0") not in ("", "0"):
        return None  # under torchrun, rank 0 holds the run for the whole job
    return rundir.TrainLock(run_dir)


_KEPT: list[object] = []  # a torchrun rank's trainer, never freed before the process ends


def run_child(
    run_dir: str | os.PathLike[str],
    device: str = "auto",
    resume: bool = False,
    *,
    own_process: bool = False,
) -> int:
    """Train the run in `run_dir`; every outcome ends in events, run.json and an exit code.

    A run that another process trains is refused with one line, touching nothing (and
    loading no torch). `own_process`: see main().
    """
    switch = _StopSwitch()
    switch.install()
    try:
        lock = _take_run_lock(run_dir)
    except rundir.RunBusy as exc:
        switch.uninstall()
        error(str(exc))
        return EXIT_USAGE
    # Both before anything imports torch (the device probe below does): libgomp reads its
    # OMP_WAIT_POLICY and GOMP_SPINCOUNT once, when torch loads it.
    wait_politely()
    os.environ.update(child_alloc_env(dict(os.environ)))  # before torch loads its CUDA allocator
    if own_process:
        _defer_compiler(run_dir, device)
    try:
        return _train(run_dir, device, resume, switch)
    finally:
        if lock is not None:
            lock.release()


def _train(run_dir: str | os.PathLike[str], device: str, resume: bool, switch: _StopSwitch) -> int:
    from cockpit.train.loop import Trainer
    from cockpit.train.runtime import HaltTraining, dist_from_env, finish_run, set_threads

    threads = set_threads()  # one core fewer where there are cores to spare (train/threads.py)
    wait = os.environ.get("OMP_WAIT_POLICY", "default")
    print(f"cpu threads: {threads} of {usable_cores()} usable cores, OMP_WAIT_POLICY={wait}")

    path = Path(run_dir)
    dist: Dist = dist_from_env()
    events = EventWriter(path / rundir.EVENTS_JSONL) if dist.master else None
    trainer: Trainer | None = None
    try:
        trainer = Trainer(path, device=device, resume=resume, events=events, dist=dist)
        if dist.world_size > 1:
            _KEPT.append(trainer)  # freed only by leave()'s os._exit: see leave()
        switch.attach(trainer)
        trainer.setup()
        reason, message = trainer.train()
        switch.ended = True
    except HaltTraining as exc:
        reason, message, kind, tail = "halted", str(exc), "halted", ""
    except Exception as exc:  # every failure must reach the event log and run.json
        reason, message, kind, tail = _failure(exc, path)
        if dist.world_size > 1:
            reason, message, kind = _rank_failure(dist, reason, message, kind)
    else:
        kind, tail = "", ""
    message = " ".join(str(message).split()) or reason
    step = trainer.step if trainer is not None else 0
    writer = trainer.events if trainer is not None else (events or EventWriter(os.devnull))
    lost: list[str] = []  # records that could not be written (a full disk)
    if reason in ("error", "crashed"):
        _best_effort(
            lost,
            lambda: writer.emit(ErrorEvent(step=step, message=message, kind=kind, traceback=tail)),
        )
    if reason in ("error", "crashed", "halted"):
        _best_effort(lost, lambda: error(message))
    if trainer is not None:
        _best_effort(lost, lambda: trainer.finish(reason, message))
    else:
        _best_effort(
            lost,
            lambda: finish_run(path, writer, reason, message, step, write_run_info=dist.master),
        )
    _best_effort(lost, writer.close)
    if lost:
        _best_effort([], lambda: error(f"the end of the run could not be recorded: {lost[0]}"))
    switch.uninstall()
    return exit_code_for_end(reason)


def _failure(exc: Exception, path: Path) -> tuple[str, str, str, str]:
    """(end reason, message, error kind, traceback tail) of an exception that ended the run."""
    from cockpit.train.checkpoint import DISK_FULL, disk_full_message

    tail = _traceback_tail(exc)
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return "error", disk_full_message(path), "disk_full", tail
    if isinstance(exc, _user_errors()):
        return "error", str(exc), getattr(exc, "kind", type(exc).__name__), tail
    return "crashed", f"{type(exc).__name__}: {exc}", type(exc).__name__, tail


def _rank_failure(dist: Dist, reason: str, message: str, kind: str) -> tuple[str, str, str]:
    """Under torchrun: another rank publishes its cause; rank 0, whose collective failed
    because a peer went, names the rank that failed and why (train/dist.py)."""
    from cockpit.train.dist import peer_failure, publish_failure
    from cockpit.train.runtime import one_line

    if not dist.master:
        publish_failure(dist, reason, kind, message)
        return reason, message, kind
    peer = peer_failure(dist) if reason == "crashed" else None
    if peer is None:
        return reason, message, kind
    peer_reason, peer_kind, peer_message = peer
    return peer_reason, f"{peer_message} (rank 0: {one_line(message, 160)})", peer_kind


def _best_effort(lost: list[str], write: Callable[[], object]) -> None:
    """Run one of the end's writes; an OSError (a full disk) is noted in `lost`, not raised."""
    try:
        write()
    except OSError as exc:
        lost.append(f"{type(exc).__name__}: {exc}")


def _compiles(run_dir: str) -> bool:
    """Whether the run asks for torch.compile (an unreadable preset: assume so, the trainer says why)."""
    try:
        return rundir.load_run_preset(run_dir).train.compile
    except rundir.RunError:
        return True


def _defer_compiler(run_dir: str | os.PathLike[str], device: str) -> None:
    """An eager run on the CPU starts without torch's compiler (train/eager.py). A CUDA run
    loads it as torch does: its AMP, fused-optimizer and NCCL paths have not been run with
    the stand-in on a GPU, and a second of start-up is nothing beside its training."""
    if not _compiles(str(run_dir)) and _on_cpu(device):  # the preset first: it loads no torch
        from cockpit.train.eager import defer_dynamo

        defer_dynamo()


def _on_cpu(device: str) -> bool:
    """Whether the run trains on the CPU (asking CUDA for its device count creates no context)."""
    if device != "auto":
        return device == "cpu"
    import torch

    return not torch.cuda.is_available()


def main(argv: list[str] | None = None, *, own_process: bool = False) -> int:
    """The child's command line; `own_process` when this interpreter exists only to train.

    Only then may an eager run defer torch._dynamo: torch caches what the stand-in answers
    (its functions unmarked), which a caller that compiles later in its process must not inherit.
    """
    parser = argparse.ArgumentParser(
        prog="python -m cockpit.train", description="The gpt-cockpit training child."
    )
    parser.add_argument(
        "--run-dir", required=True, help="a run directory made by rundir.create_run_dir"
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--resume", action="store_true", help="continue from checkpoints/last.pt")
    args = parser.parse_args(argv)
    if not (Path(args.run_dir) / rundir.PRESET_JSON).is_file():
        error(f"{args.run_dir} is not a run directory (no {rundir.PRESET_JSON})")
        return EXIT_USAGE
    return run_child(args.run_dir, args.device, args.resume, own_process=own_process)


def leave(code: int) -> None:
    """End the child with `code`. A torchrun rank is never torn down: its records, checkpoints
    and run.json are written and closed by now, and freeing DDP's reducer after the process
    group was left can deadlock (the group's destructor joins gloo's worker thread holding the
    GIL, while that thread waits for the GIL to free a finished collective's tensors), leaving
    a finished rank hanging and torchrun, or a Slurm job, waiting on it for good. So the rank
    keeps its trainer (_KEPT) and ends with os._exit, skipping the interpreter's teardown."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    leave(main(own_process=True))
