"""A run's training process: is it alive, what status does that leave the run in, stop it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from cockpit.rundir.events import EndEvent, parse_event, read_last_records
from cockpit.rundir.info import RunInfo, read_run_info, update_run_info
from cockpit.rundir.layout import EVENTS_JSONL
from cockpit.rundir.lock import lock_holder
from cockpit.rundir.status import FINAL_STATUSES, LIVE_STATUSES, status_for_end_reason

# A launcher writes the pid right after the spawn; longer without one is a failed start.
START_GRACE_S = 10.0


def process_start_time(pid: int) -> float | None:
    """The start time of process `pid` (epoch seconds), or None if it is not running."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(proc.create_time())
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


def _process_gone(info: RunInfo) -> bool:
    """A live status whose process is not running (or, before any pid, a start that never came)."""
    if info.pid is None:
        return time.time() - float(info.created or 0.0) >= START_GRACE_S
    return not pid_alive(info.pid, info.pid_start_time)


def run_status(run_dir: str | os.PathLike[str], *, update: bool = False) -> str:
    """The run's status, with a live status checked against its trainer's lock and process.

    A run whose run.json says starting/running but whose process is gone reads as
    'crashed' (or what its `end` record says, when the child wrote one but died
    before updating run.json). Reading writes nothing, so it works on a read-only
    mount, as another user and on a full disk; the next launch (resume) records
    the new status. `update=True` is for the process that launched the child and
    saw it die: it records the final status in run.json.
    """
    info = read_run_info(run_dir)
    if info.status not in FINAL_STATUSES and lock_holder(run_dir) is not None:
        # A trainer holds the run: it is live whatever else run.json says (or lost).
        return info.status if info.status in LIVE_STATUSES else "running"
    if info.status not in LIVE_STATUSES or not _process_gone(info):
        return info.status
    if update:
        return _record_gone(Path(run_dir), info).status
    status = _gone_status(Path(run_dir))
    return "killed" if status == "crashed" and info.end_message == KILLED_HOW else status


def _gone_status(run_dir: Path) -> str:
    """The status a run whose process is gone has: its `end` record's, else crashed."""
    return str(_gone_changes(run_dir)["status"])


def _gone_changes(run_dir: Path) -> dict[str, object]:
    records = read_last_records(run_dir / EVENTS_JSONL)
    ended = [e for e in map(parse_event, records) if isinstance(e, EndEvent)]
    if ended:
        reason = ended[-1].reason
        return {"status": status_for_end_reason(reason or "finished"), "end_reason": reason}
    return {"status": "crashed", "end_reason": "process gone", "ended": time.time()}


def record_killed(run_dir: str | os.PathLike[str], how: str) -> str:
    """The launcher killed its own child: record status `killed` (and `how`) unless the child
    wrote its `end` first or a new launch took the run; returns the status run.json then holds."""
    path = Path(run_dir)
    seen = read_run_info(path)
    if seen.status not in LIVE_STATUSES:
        return seen.status
    changes = _gone_changes(path)
    if changes["status"] == "crashed":  # no `end` record: it did not get to write one
        changes = {
            "status": "killed",
            "end_reason": "killed",
            "end_message": how,
            "ended": time.time(),
        }

    def unless_relaunched(current: RunInfo) -> dict[str, object]:
        same = current.status in LIVE_STATUSES and current.pid == seen.pid
        return changes if same else {}

    return update_run_info(path, unless_relaunched).status


def _record_gone(run_dir: Path, seen: RunInfo) -> RunInfo:
    """Write the final status of a run whose process is gone, unless a new launch came first."""
    changes = _gone_changes(run_dir)
    if changes["status"] == "crashed" and seen.end_message == KILLED_HOW:
        changes = {"status": "killed", "end_reason": "killed", "ended": time.time()}

    def unless_relaunched(current: RunInfo) -> dict[str, object]:
        same = current.status in LIVE_STATUSES and current.pid == seen.pid
        return changes if same else {}

    return update_run_info(run_dir, unless_relaunched)


KILLED_HOW = "killed at once (SIGKILL)"  # run.json's end_message for a kill asked for


def stop_run(run_dir: str | os.PathLike[str], *, kill: bool = False) -> bool:
    """Ask a run to stop (SIGTERM: finish the step, checkpoint, exit) or kill it (SIGKILL).

    The process is the one holding the run's lock, else run.json's pid. Returns
    False if no such process is running. A kill is recorded as status `killed`: a
    SIGKILLed trainer writes no `end` record and would otherwise read as crashed.
    """
    info = read_run_info(run_dir)
    holder = lock_holder(run_dir)
    if holder:
        pid = holder
    elif info.pid is not None and pid_alive(info.pid, info.pid_start_time):
        pid = info.pid
    else:
        return False
    if kill:  # said before the signal: a reader that finds the process gone reads it as killed
        update_run_info(
            run_dir,
            lambda current: {"end_message": KILLED_HOW} if current.status in LIVE_STATUSES else {},
        )
    try:
        os.kill(int(pid), signal.SIGKILL if kill else signal.SIGTERM)
    except ProcessLookupError:
        return False
    if kill:
        record_killed(run_dir, KILLED_HOW)
    return True
