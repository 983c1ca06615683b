"""The run directory: the whole contract between the training child and every reader.

    <run>/run.json          status, pid, device, versions, progress   (info: RunInfo)
    <run>/preset.json       the resolved preset exactly as launched    (written once)
    <run>/events.jsonl      the event log                              (events)
    <run>/console.log       the child's stdout and stderr
    <run>/train.lock        flock'd by the training process while it lives (lock)
    <run>/checkpoints/      last.pt, best.pt (and last.prev.pt while replacing)

This package owns it (docs/run-directory.md describes it field by field):

- layout: the file names, runs_root, new run ids;
- info: RunInfo (run.json typed), read_run_info, update_run_info (the one writer of
  run.json: flock + atomic replace), create_run_dir, load_run_preset (preset.json
  plus run.json's `overrides`);
- status: live and final statuses, the status each `end` reason leaves;
- events: the typed event records, EventWriter, EventTailer, read_events;
- lock: TrainLock, the exclusive flock the training process holds on its run for its
  whole life, and lock_holder, the read-only probe of it;
- process: pid checks, run_status (a dead live run reads as crashed,
  derived without writing), stop_run, record_killed (the launcher's own kill);
- watch: RunWatcher, the tail + liveness + stall detection both faces follow a run with.

Nothing here imports torch or textual: a face reaches a run only through these
files and signals to its process.
"""

from typing import TYPE_CHECKING, Any

from cockpit.rundir.events import (
    EVENT_KINDS,
    EVENT_TYPES,
    SCHEMA_VERSION,
    CheckpointEvent,
    EndEvent,
    ErrorEvent,
    EvalEvent,
    Event,
    EventTailer,
    EventWriter,
    NullEventWriter,
    SampleEvent,
    StartEvent,
    StepEvent,
    WarningEvent,
    decode_record,
    encode_event,
    encode_record,
    make_record,
    parse_event,
    read_events,
    read_last_records,
    read_tail,
)
from cockpit.rundir.info import (
    RUN_INFO_FIELDS,
    RUN_SCHEMA_VERSION,
    RunInfo,
    create_run_dir,
    load_run_preset,
    read_run_info,
    rebuild_run_info,
    update_run_info,
)
from cockpit.rundir.layout import (
    CHECKPOINTS,
    CONSOLE_LOG,
    EVENTS_JSONL,
    PRESET_JSON,
    RUN_JSON,
    RUN_LOCK,
    TRAIN_LOCK,
    RunError,
    RunUnreadable,
    new_run_id,
    runs_root,
)
from cockpit.rundir.lock import RunBusy, TrainLock, busy_message, lock_holder
from cockpit.rundir.process import (
    KILLED_HOW,
    pid_alive,
    process_start_time,
    record_killed,
    run_status,
    stop_run,
)
from cockpit.rundir.status import (
    END_REASONS,
    END_STATUS,
    FINAL_STATUSES,
    LIVE_STATUSES,
    WAITING_STATUSES,
    status_for_end_reason,
)

if TYPE_CHECKING:
    from cockpit.rundir.watch import RunWatcher


def __getattr__(name: str) -> Any:
    """RunWatcher on first use: it loads the health rules (about 35 ms of CPU a process), which
    the faces that follow a run need and the processes that only write or read one do not (the
    commands that start or stop a run, the fake trainer of the tests)."""
    if name == "RunWatcher":
        from cockpit.rundir.watch import RunWatcher

        return RunWatcher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CHECKPOINTS",
    "CONSOLE_LOG",
    "END_REASONS",
    "END_STATUS",
    "EVENTS_JSONL",
    "EVENT_KINDS",
    "KILLED_HOW",
    "EVENT_TYPES",
    "FINAL_STATUSES",
    "LIVE_STATUSES",
    "WAITING_STATUSES",
    "PRESET_JSON",
    "RUN_INFO_FIELDS",
    "RUN_JSON",
    "RUN_LOCK",
    "RUN_SCHEMA_VERSION",
    "TRAIN_LOCK",
    "SCHEMA_VERSION",
    "CheckpointEvent",
    "EndEvent",
    "ErrorEvent",
    "EvalEvent",
    "Event",
    "EventTailer",
    "EventWriter",
    "NullEventWriter",
    "RunBusy",
    "busy_message",
    "RunError",
    "RunUnreadable",
    "RunInfo",
    "RunWatcher",
    "SampleEvent",
    "StartEvent",
    "StepEvent",
    "TrainLock",
    "WarningEvent",
    "create_run_dir",
    "decode_record",
    "encode_event",
    "encode_record",
    "load_run_preset",
    "lock_holder",
    "make_record",
    "new_run_id",
    "parse_event",
    "pid_alive",
    "process_start_time",
    "read_events",
    "read_last_records",
    "read_tail",
    "read_run_info",
    "rebuild_run_info",
    "record_killed",
    "run_status",
    "runs_root",
    "status_for_end_reason",
    "stop_run",
    "update_run_info",
]
