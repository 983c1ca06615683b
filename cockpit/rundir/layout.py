"""Where a run lives and what its files are called."""

from __future__ import annotations

import os
import time
from pathlib import Path

RUN_JSON = "run.json"  # status, pid, device, versions, progress (cockpit.rundir.info)
RUN_LOCK = "run.json.lock"  # flock'd by every update of run.json
TRAIN_LOCK = (
    "train.lock"  # flock'd by the training process for its whole life (cockpit.rundir.lock)
)
PRESET_JSON = "preset.json"  # the resolved preset exactly as launched, written once
EVENTS_JSONL = "events.jsonl"  # the event log (cockpit.rundir.events)
CONSOLE_LOG = "console.log"  # the child's stdout and stderr
CHECKPOINTS = "checkpoints"  # last.pt, best.pt (and last.prev.pt while replacing)


class RunError(RuntimeError):
    """A run directory that cannot be used, with a message for a person."""


def runs_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where runs live: the argument, else $GPT_COCKPIT_RUNS, else ./runs."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("GPT_COCKPIT_RUNS") or "runs")


def new_run_id(preset_name: str) -> str:
    """A sortable, readable id: 20261121-170502-tiny_char (create_run_dir adds a suffix if taken)."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + preset_name


def fresh_run_path(preset_name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """A path under the runs root that no run uses yet."""
    base = runs_root(root)
    run_id = new_run_id(preset_name)
    path = base / run_id
    n = 1
    while path.exists():
        n += 1
        path = base / f"{run_id}-{n}"
    return path
