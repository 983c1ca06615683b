"""A queue entry as the database holds it, what `queue add` asks for, and the states it moves through.

cockpit.campaign.store owns the database and is the only writer; this module is the records
it reads into and the vocabulary every reader shares (docs/queue.md).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATES = ("queued", "starting", "running", "done", "failed", "stopped", "cancelled")
LIVE_STATES = ("starting", "running")  # the scheduler (or its backend) owns a process for these
ENDED_STATES = ("done", "failed", "stopped", "cancelled")
DEVICES = ("any", "cpu", "gpu")  # the device request: any device, CPU only, or `gpus` GPUs
REQUESTS = ("cancel", "stop", "prune")  # what a face may ask the scheduler to do to a live entry

# Which state may follow which (finish and requeue check it in the same transaction).
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "queued": ("starting", "cancelled", "failed"),  # failed: it can never start here
    "starting": ("running", "queued", "failed", "stopped", "cancelled", "done"),
    "running": ("done", "failed", "stopped", "cancelled", "queued"),
    "done": (),
    "failed": ("queued",),
    "stopped": ("queued",),
    "cancelled": ("queued",),
}


@dataclass
class NewEntry:
    """What `queue add` asks for: a preset plus overrides, a device request, an order."""

    preset: str  # a preset name, or the absolute path of a preset .json
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted field path -> value
    device: str = "any"  # "any" | "cpu" | "gpu"
    gpus: int = 1  # GPUs a "gpu" entry trains on (torchrun for more than one); 0 for "cpu"
    priority: int = 0  # higher starts first
    after: int | None = None  # start only once this entry is done
    group: str | None = None  # the sweep this entry belongs to
    name: str = (
        ""  # a label for lists (default: the preset and its overrides); "{group}": the group's
    )
    workdir: str = ""  # the folder it was added from: the child starts there (relative data paths)
    runs_root: str = ""  # the runs folder its run directory is made in (absolute)


@dataclass
class Entry:
    """One queued run, as the database holds it (docs/queue.md: the entries table)."""

    id: int
    preset: str
    overrides: dict[str, Any]
    device: str
    gpus: int
    priority: int
    position: int  # order within one priority (lower first); the app reorders with `move`
    after: int | None
    group: str | None
    name: str
    workdir: str  # the folder it was added from: the training child starts there
    runs_root: str  # the runs folder its run directory is made in
    state: str
    reason: str  # why it is in its state: a failure, a stop, or why it cannot start yet
    request: str | None  # a face's pending request for the scheduler: cancel, stop, prune
    attempts: int  # launches so far (the first start is attempt 1)
    retries: list[dict[str, Any]]  # one {"at", "attempt", "reason"} per retry
    run_dir: str | None  # the run directory it trains in (kept across retries: they resume)
    backend: str | None  # "local", "slurm", ...
    backend_job: str | None  # the backend's id for it (a pid, a Slurm job id)
    planned_bytes: int | None  # planned peak memory per GPU (reserved + headroom), or RAM on CPU
    planned_device: str | None  # where it was placed: "cuda:0", "cuda:2,3", "cpu"
    threads: int | None  # CPU threads granted (CPU entries)
    planned_seconds: float | None  # the estimate of its training time, whole run
    run_seconds: float  # device time of attempts that ended (wall seconds, not GPU-seconds)
    gpu_seconds: float  # GPU-seconds charged to it (a GPU shared by k runs charges each 1/k)
    attempt_started: float | None  # when the current attempt started (None when none runs)
    created: float
    started: float | None  # the first start
    ended: float | None
    updated: float

    @property
    def label(self) -> str:
        """The name to show: --name, else preset with its overrides."""
        if self.name:
            return self.name
        sets = ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in self.overrides.items())
        return f"{Path(self.preset).stem}" + (f"[{sets}]" if sets else "")

    @property
    def device_count(self) -> int:
        """GPUs this entry holds while it runs (0 on CPU)."""
        return 0 if self.device == "cpu" else max(1, self.gpus)

    def elapsed_s(self, now: float | None = None) -> float:
        """Wall seconds it has trained, all attempts together."""
        now = time.time() if now is None else now
        current = max(0.0, now - self.attempt_started) if self.attempt_started else 0.0
        return self.run_seconds + current


_COLUMNS = {
    "after_id": "after",
    "group_name": "group",
}


def entry_from_row(row: sqlite3.Row) -> Entry:
    raw = {_COLUMNS.get(k, k): row[k] for k in row.keys()}
    raw["overrides"] = json.loads(raw["overrides"] or "{}")
    raw["retries"] = json.loads(raw["retries"] or "[]")
    return Entry(**raw)
