"""The local backend: the training child on this machine, detached, pinned to its GPUs or cores.

`start` launches through cockpit.runs.launch with detach=True (the child outlives the shell,
the app and the scheduler), CUDA_VISIBLE_DEVICES naming the entry's GPUs (torchrun over them
for several; the child sees them as cuda:0..N-1), or on a CPU placement no GPU and
$GPT_COCKPIT_CPU_THREADS set to the cores it was granted. `poll` reads the run directory
(run.json checked against the child's process, events.jsonl's last records), so it works as
well for a child a previous scheduler started: nothing is kept here that a restart would need.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from cockpit import rundir, runs
from cockpit.campaign.backend import Backend, Placement, RunState
from cockpit.campaign.planning import CPU_THREADS_ENV
from cockpit.campaign.store import Entry

# Words in a failed run's error that mean the GPU itself went away (an Xid, a fallen-off-the-bus
# device, an uncorrectable ECC error): the run is retried from its checkpoint, not failed.
LOST_GPU_WORDS = (
    "unspecified launch failure",
    "uncorrectable ecc",
    "gpu is lost",
    "fallen off the bus",
    "cuda error: unknown error",
    "no cuda gpus are available",
    "cudaerrordevicesunavailable",
    "nvml_error_gpu_is_lost",
)


class LocalBackend(Backend):
    """Runs entries as detached training children on this machine."""

    name = "local"

    def __init__(self) -> None:
        self._children: dict[int, runs.RunHandle] = {}  # entry id -> our own child (exit codes)

    def start(self, entry: Entry, run_dir: Path, placement: Placement, *, resume: bool) -> str:
        """Launch the child; its pid is the job id."""
        env = {}
        if placement.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in placement.gpus)
            device = "cuda"
        else:
            env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU entry must not take a GPU's memory
            device = "cpu"
            if placement.threads:
                env[CPU_THREADS_ENV] = str(placement.threads)
        ranks = runs.Ranks(nproc=len(placement.gpus)) if len(placement.gpus) > 1 else None
        workdir = entry.workdir if entry.workdir and Path(entry.workdir).is_dir() else os.getcwd()
        with _working_dir(workdir):  # relative data paths mean what they meant at `queue add`
            handle = runs.launch(
                run_dir, device=device, resume=resume, detach=True, env=env, ranks=ranks
            )
        self._children[entry.id] = handle
        return str(handle.pid)

    def poll(self, entry: Entry) -> RunState:
        """The run's state from its directory; an exit by signal of our own child says which."""
        if not entry.run_dir:
            return RunState("unknown", message="no run directory yet")
        path = Path(entry.run_dir)
        try:
            status = rundir.run_status(path, update=True)
            info = rundir.read_run_info(path)
        except rundir.RunError as exc:
            return RunState("unknown", message=str(exc))
        step, max_steps = info.step, info.max_steps or 0
        if status in rundir.LIVE_STATUSES:
            return RunState(status, step=step, max_steps=max_steps)
        handle = self._children.pop(entry.id, None)
        code = handle.poll() if handle is not None else None
        reason = info.end_reason or status
        message = info.end_message or ""
        wrote_end = info.end_reason in ("crashed", "error")  # the child caught its failure
        if status == "finished":
            reason = "finished"
        elif wrote_end and _lost_gpu(path, message):
            reason, message = "lost-gpu", message or _last_error(path)
        elif status == "crashed" and wrote_end:
            reason, message = "exception", message or _last_error(path)  # it would raise again
        elif status == "crashed":
            reason, message = _crash_reason(code)
        elif status == "error":
            message = message or _last_error(path)
        return RunState("ended", step=step, max_steps=max_steps, end_reason=reason, message=message)

    def stop(self, entry: Entry, *, checkpoint: bool = True) -> bool:
        """SIGTERM (the child checkpoints and exits) or SIGKILL."""
        if not entry.run_dir:
            return False
        try:
            return rundir.stop_run(entry.run_dir, kill=not checkpoint)
        except rundir.RunError:
            return False


@contextlib.contextmanager
def _working_dir(path: str) -> Iterator[None]:
    """cd into `path` for a launch (contextlib.chdir is Python 3.11's; the scheduler is one thread)."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _last_error(run_dir: Path) -> str:
    """The message of the run's last `error` record ("" when none)."""
    records = rundir.read_last_records(run_dir / rundir.EVENTS_JSONL)
    errors = [r for r in records if r.get("event") == "error"]
    return str(errors[-1].get("message", "")) if errors else ""


def _lost_gpu(run_dir: Path, message: str) -> bool:
    text = f"{message} {_last_error(run_dir)}".lower()
    return any(word in text for word in LOST_GPU_WORDS)


def _crash_reason(code: int | None) -> tuple[str, str]:
    """How a child that wrote no `end` died: a signal (SIGKILL: the OOM killer or kill -9)."""
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        if -code == signal.SIGKILL:
            return "oom-or-kill", f"killed by {name} (the OOM killer, or kill -9)"
        return "signal", f"killed by {name}"
    if code is not None:
        return "crashed", f"exited with code {code} without an end record"
    return (
        "crashed",
        "its process is gone without an end record (killed by a signal or the OOM killer)",
    )
