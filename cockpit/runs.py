"""Run directories: create, launch (detached or attached), inspect, stop.

A run directory is the whole contract between the training child and every
reader (the app, headless mode, `gpt-cockpit runs`). Layout (see
docs/run-directory.md):

    <run>/run.json          status, pid and its start time, command, preset name,
                            device, GPU, versions, progress (RUN_SCHEMA_VERSION)
    <run>/preset.json       the resolved preset exactly as launched
    <run>/events.jsonl      the event log (cockpit.events)
    <run>/console.log       the child's stdout and stderr
    <run>/checkpoints/      last.pt, best.pt (and last.prev.pt while replacing)

Nothing here imports torch: the app reaches a run only through these files and
signals to its process.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cockpit import __version__
from cockpit.events import read_last_records
from cockpit.fsutil import atomic_write_text
from cockpit.presets import Preset, PresetError, preset_from_dict

RUN_SCHEMA_VERSION = 1
RUN_JSON = "run.json"
PRESET_JSON = "preset.json"
EVENTS_JSONL = "events.jsonl"
CONSOLE_LOG = "console.log"
CHECKPOINTS = "checkpoints"

LIVE_STATUSES = ("starting", "running")
FINAL_STATUSES = ("finished", "stopped", "halted", "crashed", "error")


class RunError(RuntimeError):
    """A run directory that cannot be used, with a message for a person."""


def runs_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where runs live: the argument, else $GPT_COCKPIT_RUNS, else ./runs."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("GPT_COCKPIT_RUNS") or "runs")


def new_run_id(preset_name: str) -> str:
    """A sortable, readable id: 20261121-170502-tiny_char (with a suffix if taken)."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + preset_name


def create_run_dir(
    preset: Preset,
    run_dir: str | os.PathLike[str] | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
) -> Path:
    """Make a fresh run directory holding preset.json and a 'starting' run.json."""
    if run_dir is None:
        base = runs_root(root)
        run_id = new_run_id(preset.name)
        path = base / run_id
        n = 1
        while path.exists():
            n += 1
            path = base / f"{run_id}-{n}"
    else:
        path = Path(run_dir)
        if (path / EVENTS_JSONL).exists() or (path / RUN_JSON).exists():
            raise RunError(
                f"{path} already holds a run; use `gpt-cockpit resume {path}` or pick another --run-dir"
            )
    (path / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    atomic_write_text(path / PRESET_JSON, json.dumps(preset.to_dict(), indent=2) + "\n")
    write_run_info(
        path,
        {
            "run_id": path.name,
            "status": "starting",
            "preset_name": preset.name,
            "created": time.time(),
            "host": platform.node(),
            "versions": {"cockpit": __version__, "python": platform.python_version()},
        },
    )
    return path


def read_run_info(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """run.json as a dict; RunError if it is missing or unreadable."""
    path = Path(run_dir) / RUN_JSON
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{run_dir} is not a run directory (no {RUN_JSON})") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read {path}: {exc}") from None
    if not isinstance(info, dict):
        raise RunError(f"{path} is not a JSON object")
    return info


def write_run_info(run_dir: str | os.PathLike[str], info: dict[str, Any]) -> None:
    """Replace run.json atomically, stamping the schema version and update time."""
    info = dict(info)
    info["schema"] = RUN_SCHEMA_VERSION
    info["updated"] = time.time()
    atomic_write_text(Path(run_dir) / RUN_JSON, json.dumps(info, indent=2, default=str) + "\n")


def update_run_info(run_dir: str | os.PathLike[str], **changes: Any) -> dict[str, Any]:
    """Read, change and write run.json; returns the new contents."""
    try:
        info = read_run_info(run_dir)
    except RunError:
        info = {"run_id": Path(run_dir).name}
    info.update(changes)
    write_run_info(run_dir, info)
    return info


def load_run_preset(run_dir: str | os.PathLike[str]) -> Preset:
    """The preset a run was launched with."""
    path = Path(run_dir) / PRESET_JSON
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read {path}: {exc}") from None
    try:
        return preset_from_dict(raw)
    except PresetError as exc:
        raise RunError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------- processes


def process_start_time(pid: int) -> float | None:
    """The start time of process `pid` (epoch seconds), or None if it is not running."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def pid_alive(pid: int | None, started: float | None = None) -> bool:
    """True if `pid` runs and (when `started` is given) is the same process that started then."""
    if not pid:
        return False
    now_started = process_start_time(int(pid))
    if now_started is None:
        return False
    if started is not None and abs(now_started - float(started)) > 1.0:
        return False  # the pid was reused by another process
    return True


def run_status(run_dir: str | os.PathLike[str], *, update: bool = True) -> str:
    """The run's status, with a live status checked against its process.

    A run whose run.json says starting/running but whose process is gone is
    'crashed'; with `update`, run.json is rewritten to say so.
    """
    info = read_run_info(run_dir)
    status = str(info.get("status", "unknown"))
    if status in LIVE_STATUSES:
        pid = info.get("pid")
        if pid is None:
            # A launcher writes the pid right after the spawn; a few seconds without one is a failed start.
            if time.time() - float(info.get("created", 0) or 0) < 10:
                return status
        elif pid_alive(pid, info.get("pid_start_time")):
            return status
        if update:
            last = read_last_records(Path(run_dir) / EVENTS_JSONL)
            ended = [r for r in last if r["event"] == "end"]
            if ended:  # the child wrote its end but died before updating run.json
                status = _status_for_reason(str(ended[-1].get("reason", "finished")))
                update_run_info(run_dir, status=status, end_reason=ended[-1].get("reason"))
                return status
            update_run_info(run_dir, status="crashed", end_reason="process gone", ended=time.time())
        return "crashed"
    return status


def _status_for_reason(reason: str) -> str:
    return {
        "finished": "finished",
        "max-time": "finished",
        "stopped": "stopped",
        "halted": "halted",
        "error": "error",
    }.get(reason, "crashed")


def status_for_end_reason(reason: str) -> str:
    """run.json status that goes with an `end` event's reason."""
    return _status_for_reason(reason)


@dataclass
class RunHandle:
    """A launched training child: its directory and, for our own children, the Popen."""

    run_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else read_run_info(self.run_dir).get("pid")

    def poll(self) -> int | None:
        """Reap our child if it exited (None while it runs or when it is not ours)."""
        return self.process.poll() if self.process else None


def child_command(run_dir: Path, *, device: str = "auto", resume: bool = False) -> list[str]:
    """The argv that starts the training child for `run_dir`."""
    cmd = [sys.executable, "-m", "cockpit.train", "--run-dir", str(run_dir), "--device", device]
    if resume:
        cmd.append("--resume")
    return cmd


def launch(
    run_dir: str | os.PathLike[str],
    *,
    device: str = "auto",
    resume: bool = False,
    detach: bool = True,
    env: dict[str, str] | None = None,
) -> RunHandle:
    """Start the training child on a prepared run directory.

    `detach=True` puts the child in its own session with no terminal, so
    closing the app, a dropped SSH connection or SIGHUP do not stop it; its
    output goes to console.log. `detach=False` keeps it in our process group
    (headless mode: Ctrl-C reaches both) and still logs to console.log.
    """
    path = Path(run_dir)
    cmd = child_command(path, device=device, resume=resume)
    child_env = dict(os.environ)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    if env:
        child_env.update(env)
    log = open(path / CONSOLE_LOG, "ab")
    try:
        process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=detach,
            env=child_env,
            cwd=os.getcwd(),
        )
    finally:
        log.close()
    if detach:
        # Reap the child when it exits so a long-lived app leaves no zombie behind; if the
        # app exits first, the child is re-parented and runs on.
        threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()
    started = process_start_time(process.pid)
    info = read_run_info(path)
    info.update(
        status="starting" if info.get("status") not in LIVE_STATUSES else info["status"],
        pid=process.pid,
        pid_start_time=started,
        command=cmd,
        device_requested=device,
        detached=detach,
    )
    if resume:
        info["status"] = "starting"
        info.pop("end_reason", None)
    write_run_info(path, info)
    return RunHandle(path, process)


def stop_run(run_dir: str | os.PathLike[str], *, kill: bool = False) -> bool:
    """Ask a run to stop (SIGTERM: finish the step, checkpoint, exit) or kill it (SIGKILL).

    Returns False if its process is not running.
    """
    info = read_run_info(run_dir)
    pid = info.get("pid")
    if not pid_alive(pid, info.get("pid_start_time")):
        return False
    try:
        os.kill(int(pid), signal.SIGKILL if kill else signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


# --------------------------------------------------------------------------- listing


@dataclass
class RunSummary:
    """One line of the runs list."""

    run_dir: Path
    run_id: str
    status: str
    preset_name: str
    step: int
    max_steps: int
    best_val_loss: float | None
    last_loss: float | None
    created: float
    updated: float

    @property
    def age_s(self) -> float:
        return max(0.0, time.time() - (self.updated or self.created))


def summarize_run(run_dir: str | os.PathLike[str]) -> RunSummary:
    """Status (checked against the process), preset, progress, best val loss of one run."""
    path = Path(run_dir)
    status = run_status(path)
    info = read_run_info(path)
    last = read_last_records(path / EVENTS_JSONL)
    step = int(info.get("step", 0) or 0)
    last_loss = None
    for rec in last:
        step = max(step, int(rec.get("step", 0)))
        if rec["event"] == "step":
            last_loss = rec.get("loss")
    max_steps = int(info.get("max_steps", 0) or 0)
    if (
        not max_steps
    ):  # the child writes it once set up; before that (or if it died early) ask the preset
        try:
            max_steps = load_run_preset(path).train.max_steps
        except RunError:
            pass
    best = info.get("best_val_loss")
    if best is None:
        evals = [
            r.get("val_loss")
            for r in last
            if r["event"] == "eval" and isinstance(r.get("val_loss"), (int, float))
        ]
        best = min(evals) if evals else None
    return RunSummary(
        run_dir=path,
        run_id=str(info.get("run_id", path.name)),
        status=status,
        preset_name=str(info.get("preset_name", "?")),
        step=step,
        max_steps=max_steps,
        best_val_loss=best,
        last_loss=last_loss,
        created=float(info.get("created", 0) or 0),
        updated=float(info.get("updated", 0) or 0),
    )


def list_runs(root: str | os.PathLike[str] | None = None) -> list[RunSummary]:
    """Every run under the runs folder, newest first; unreadable folders are skipped."""
    base = runs_root(root)
    if not base.is_dir():
        return []
    out = []
    for child in base.iterdir():
        if (child / RUN_JSON).is_file():
            try:
                out.append(summarize_run(child))
            except RunError:
                continue
    out.sort(key=lambda s: s.created, reverse=True)
    return out


def find_run(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """A run directory by path, by id, or by a unique id prefix/suffix; 'last' is the newest."""
    candidate = Path(name)
    if (candidate / RUN_JSON).is_file():
        return candidate
    base = runs_root(root)
    if (base / name / RUN_JSON).is_file():
        return base / name
    runs = list_runs(base)
    if name in ("last", "latest") and runs:
        return runs[0].run_dir
    matches = [r.run_dir for r in runs if r.run_id.startswith(name) or r.run_id.endswith(name)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise RunError(
            f"{name!r} matches {len(matches)} runs: " + ", ".join(m.name for m in matches[:5])
        )
    raise RunError(f"no run {name!r} under {base} (`gpt-cockpit runs` lists them)")
