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


class RunUnreadable(RunError):
    """A run this user may not read (another user's private folder or run.json): listed as
    unreadable, never rebuilt. `reason` says why without the path; str() says it with it."""

    def __init__(self, run_dir: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"cannot read {run_dir}: {reason}")
        self.reason = reason


def unreadable(run_dir: str | os.PathLike[str], file: str | os.PathLike[str]) -> RunUnreadable:
    """The RunUnreadable for a PermissionError on `file` of `run_dir`: the folder's owner and
    mode when the folder itself is closed to us, else the file's."""
    import pwd
    import stat

    folder, target = Path(run_dir), Path(file)
    try:
        os.listdir(folder)
        what = f"{target.name} is"
    except PermissionError:
        target, what = folder, "the folder is"
    except OSError:
        what = f"{target.name} is"
    try:
        st = target.stat()
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = f"uid {st.st_uid}"
        detail = f" ({what} owned by {owner}, mode {stat.S_IMODE(st.st_mode):04o})"
    except OSError:
        detail = ""
    hint = "its owner can share it (chmod a+rX) or open it as that user"
    return RunUnreadable(run_dir, f"permission denied{detail}; {hint}")


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
