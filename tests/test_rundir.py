"""cockpit.rundir: run.json typed and locked, the effective preset, typed events, the watcher."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cockpit import rundir
from cockpit.common.format import counted, health_count
from cockpit.headless import Follower
from cockpit.health import HealthConfig, HealthMonitor
from cockpit.plan.presets import Preset, apply_overrides
from cockpit.rundir import (
    EVENT_TYPES,
    CheckpointEvent,
    EndEvent,
    ErrorEvent,
    EvalEvent,
    RunInfo,
    RunWatcher,
    SampleEvent,
    StartEvent,
    StepEvent,
    WarningEvent,
    encode_event,
    encode_record,
    make_record,
    parse_event,
)
from cockpit.rundir.lines import event_line
from cockpit.runs.history import RunHistory

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "run-directory.md"
SPIKE_RUN = Path(__file__).parent / "data" / "spike_run.events.jsonl"


def tiny(max_steps: int = 20) -> Preset:
    return apply_overrides(
        Preset(name="tiny"), {"train.max_steps": max_steps, "train.warmup_steps": 2}
    )


def write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj))


# --------------------------------------------------------------------------- run.json


def test_unknown_keys_survive_an_update(tmp_path):
    run_dir = rundir.create_run_dir(tiny(), tmp_path / "r")
    raw = json.loads((run_dir / rundir.RUN_JSON).read_text())
    raw["from_a_newer_version"] = {"x": [1, 2]}
    write_json(run_dir / rundir.RUN_JSON, raw)
    info = rundir.update_run_info(run_dir, status="running", step=5)
    assert info.extra == {"from_a_newer_version": {"x": [1, 2]}}
    on_disk = json.loads((run_dir / rundir.RUN_JSON).read_text())
    assert on_disk["from_a_newer_version"] == {"x": [1, 2]}
    assert on_disk["status"] == "running" and on_disk["step"] == 5
    assert on_disk["preset_name"] == "tiny" and on_disk["schema"] == rundir.RUN_SCHEMA_VERSION


def test_wrong_typed_fields_read_as_defaults(tmp_path):
    write_json(
        tmp_path / rundir.RUN_JSON,
        {
            "status": 5,
            "pid": "123",
            "step": "7",
            "created": "yesterday",
            "command": "python",
            "detached": 1,
            "max_steps": 30.0,
            "best_val_loss": 2,
        },
    )
    info = rundir.read_run_info(tmp_path)
    assert (info.status, info.pid, info.step, info.created) == ("unknown", None, 0, 0.0)
    assert info.command is None and info.detached is None
    assert info.max_steps == 30 and info.best_val_loss == 2.0


def test_update_rejects_a_field_run_json_does_not_have(tmp_path):
    run_dir = rundir.create_run_dir(tiny(), tmp_path / "r")
    before = (run_dir / rundir.RUN_JSON).read_text()
    with pytest.raises(TypeError, match="stauts"):
        rundir.update_run_info(run_dir, stauts="running")
    with pytest.raises(TypeError, match="extra"):
        rundir.update_run_info(run_dir, extra={})
    with pytest.raises(TypeError, match="nope"):
        rundir.update_run_info(run_dir, lambda info: {"nope": 1})
    assert (run_dir / rundir.RUN_JSON).read_text() == before


def test_none_removes_a_field_and_the_change_function_sees_the_current_file(tmp_path):
    run_dir = rundir.create_run_dir(tiny(), tmp_path / "r")
    rundir.update_run_info(run_dir, end_reason="stopped", step=3)
    info = rundir.update_run_info(run_dir, lambda cur: {"step": cur.step + 1}, end_reason=None)
    assert info.step == 4 and info.end_reason is None
    assert "end_reason" not in json.loads((run_dir / rundir.RUN_JSON).read_text())


def test_run_info_fields_are_typed_and_round_trip():
    info = RunInfo(run_id="r", status="running", pid=7, command=["python"], overrides={"a": 1})
    assert RunInfo.from_dict(info.to_dict()) == info
    assert rundir.RUN_INFO_FIELDS == {f.name for f in dataclasses.fields(RunInfo)} - {"extra"}


_INCREMENTS = """
import sys
from cockpit import rundir
for _ in range(int(sys.argv[2])):
    rundir.update_run_info(sys.argv[1], lambda cur: {"step": cur.step + 1})
"""


def test_concurrent_writers_lose_no_update(tmp_path):
    run_dir = rundir.create_run_dir(tiny(), tmp_path / "r")
    writers = [
        subprocess.Popen([sys.executable, "-c", _INCREMENTS, str(run_dir), "25"]) for _ in range(3)
    ]
    for _ in range(25):
        rundir.update_run_info(run_dir, lambda cur: {"step": cur.step + 1})
    assert [w.wait(timeout=60) for w in writers] == [0, 0, 0]
    info = rundir.read_run_info(run_dir)
    assert info.step == 100 and info.preset_name == "tiny"
    assert not list(run_dir.glob(".run.json.*.tmp"))


# --------------------------------------------------------------------------- the effective preset


def test_load_run_preset_applies_run_json_overrides(tmp_path):
    run_dir = rundir.create_run_dir(tiny(20), tmp_path / "r")
    assert rundir.load_run_preset(run_dir).train.max_steps == 20
    rundir.update_run_info(run_dir, overrides={"train.max_steps": 50})
    assert rundir.load_run_preset(run_dir).train.max_steps == 50
    assert json.loads((run_dir / rundir.PRESET_JSON).read_text())["train"]["max_steps"] == 20
    rundir.update_run_info(run_dir, overrides={"train.lr": "fast"})
    with pytest.raises(rundir.RunError, match="overrides"):
        rundir.load_run_preset(run_dir)


def test_load_run_preset_without_run_json_is_preset_json(tmp_path):
    run_dir = rundir.create_run_dir(tiny(20), tmp_path / "r")
    (run_dir / rundir.RUN_JSON).unlink()
    assert rundir.load_run_preset(run_dir) == tiny(20)


# --------------------------------------------------------------------------- typed events

TRAINER_RECORDS = [  # each kind with its fields in the order cockpit/train writes them
    make_record(
        "start",
        0,
        preset="tiny",
        device="cuda:0",
        gpu="NVIDIA T4",
        gpu_uuid="GPU-2aaaa111-1222-2333-3444-455556666222",
        dtype="fp16",
        params=123456,
        tokens_per_step=8192,
        data="chars of input.txt",
        resumed_from=None,
        max_steps=100,
        micro_batch=8,
        grad_accum=2,
        world_size=1,
        compile=False,
        pid=4242,
    ),
    make_record(
        "step",
        5,
        loss=2.5,
        lr=6e-4,
        grad_norm=math.inf,
        tokens_per_s=18600.0,
        step_ms=41.2,
        tokens=40960,
        mfu=None,
        micro_batch=8,
        grad_accum=2,
        lr_scale=1.0,
        vram_bytes=1 << 30,
        scaler_skipped=False,
    ),
    make_record(
        "eval",
        10,
        val_loss=2.3,
        train_loss=2.2,
        val_bpb=None,
        best_val_loss=2.3,
        improved=True,
    ),
    make_record("sample", 10, text="hello\nworld"),
    make_record(
        "checkpoint", 10, path="checkpoints/last.pt", kind="last", bytes=1234, seconds=0.0123
    ),
    make_record(
        "warning",
        11,
        rule="loss_spike",
        severity="warning",
        message="loss jumped",
        tip="lower train.lr",
        evidence={"ratio": 3.1, "window": [1.0, math.nan]},
    ),
    make_record("error", 12, message="RuntimeError: boom", kind="RuntimeError", traceback="..."),
    make_record("end", 12, reason="crashed", message="RuntimeError: boom"),
]


def test_every_kind_has_a_typed_record():
    assert set(EVENT_TYPES) == set(rundir.EVENT_KINDS)
    for kind, cls in EVENT_TYPES.items():
        assert cls.KIND == kind and cls().event == kind
        assert "__slots__" in vars(cls)


@pytest.mark.parametrize("record", TRAINER_RECORDS, ids=lambda r: r["event"])
def test_typed_records_write_the_same_line_as_the_trainer(record):
    event = parse_event(rundir.decode_record(encode_record(record)))  # as a reader gets it
    assert event is not None and type(event) is EVENT_TYPES[record["event"]]
    assert encode_event(event) == encode_record(record)
    assert rundir.decode_record(encode_event(event)).keys() == record.keys()


def test_a_step_event_is_built_and_encoded_like_a_record():
    record = TRAINER_RECORDS[1]
    fields = {k: v for k, v in record.items() if k not in ("v", "event")}
    assert encode_event(StepEvent(**fields)) == encode_record(record)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(rundir.EVENT_KINDS),
    fields=st.dictionaries(
        st.sampled_from(
            sorted({f.name for cls in EVENT_TYPES.values() for f in dataclasses.fields(cls)})
        ),
        JSONISH,
    ),
)
def test_reading_a_malformed_record_never_fails(kind, fields):
    record = {**fields, "event": kind}
    event = parse_event(record)
    assert event is not None and isinstance(event.step, int)
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        assert value is None or type(value).__name__ in str(f.type), (f.name, value)
    assert isinstance(event_line(event, 100, 0.0), str)
    history = RunHistory()
    history.add(record)
    assert history.records == 1


def test_parse_event_skips_unknown_kinds():
    assert parse_event({"event": "later", "step": 1}) is None


def test_an_old_log_still_reads_line_for_line():
    lines = SPIKE_RUN.read_text().splitlines()
    records = rundir.read_events(SPIKE_RUN)
    assert len(records) == len(lines) > 100
    assert [encode_record(r) for r in records] == lines  # the on-disk format did not change
    events = [parse_event(r) for r in records]
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert steps and all(e.loss is not None and e.lr is not None for e in steps)


# --------------------------------------------------------------------------- the docs


def doc_tables() -> dict[str, set[str]]:
    """{section: field names} from the first `| field |` table of each section of the doc."""
    tables: dict[str, set[str]] = {}
    section = ""
    for line in DOC.read_text().splitlines():
        if line.startswith("#"):
            section = line.lstrip("#").strip()
            in_table = False
            continue
        if line.startswith("| field |") and section not in tables:
            tables[section], in_table = set(), True
            continue
        if line.startswith("|") and in_table:
            first = line.split("|")[1]
            tables[section] |= set(re.findall(r"`([a-z_]+)`", first))
        elif not line.startswith("|"):
            in_table = False
    return tables


def test_the_doc_lists_exactly_the_fields_of_run_json():
    assert doc_tables()["run.json"] == rundir.RUN_INFO_FIELDS


@pytest.mark.parametrize("kind", rundir.EVENT_KINDS)
def test_the_doc_lists_exactly_the_fields_of_each_event_kind(kind):
    tables = doc_tables()
    assert tables["events.jsonl"] == {"v", "event", "time", "step"}
    header = {"v", "time", "step"}
    assert tables[kind] == {f.name for f in dataclasses.fields(EVENT_TYPES[kind])} - header


# --------------------------------------------------------------------------- the watcher


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def write_records(path: Path, *records: dict) -> None:
    with open(path, "a") as handle:
        for record in records:
            handle.write(encode_record(record) + "\n")


def test_watcher_warns_once_per_silence_of_a_live_run(tmp_path):
    run_dir = rundir.create_run_dir(tiny(), tmp_path / "r")
    events = run_dir / rundir.EVENTS_JSONL
    clock = Clock()
    monitor = HealthMonitor(config=HealthConfig(stall_min_s=5.0, stall_factor=3.0))
    watcher = RunWatcher(run_dir, clock=clock, health=monitor)
    write_records(events, make_record("start", 0))
    assert len(watcher.poll()) == 1 and watcher.live
    for step in range(1, 6):
        clock.now += 1.0
        write_records(events, make_record("step", step, loss=1.0))
        watcher.poll()
    assert watcher.typical_gap() == 1.0 and watcher.last_step == 5
    clock.now += 4.0
    assert watcher.check_stalled() is None  # under stall_min_s
    clock.now += 2.0
    warning = watcher.check_stalled()
    assert warning is not None and warning.rule == "stalled" and warning.step == 5
    assert warning.message == "no events for 6 s (usually one every 1.0 s); last step 5"
    clock.now += 1.0
    assert watcher.check_stalled() is None  # once per silence
    write_records(events, make_record("end", 5, reason="stopped"))
    watcher.poll()
    clock.now += 100.0
    assert not watcher.live and watcher.check_stalled() is None


def test_watcher_history_read_counts_no_gap_and_a_dead_run_is_not_live(tmp_path):
    run_dir = rundir.create_run_dir(tiny(), tmp_path / "r")
    write_records(run_dir / rundir.EVENTS_JSONL, make_record("start", 0), make_record("step", 1))
    watcher = RunWatcher(run_dir, clock=Clock())
    history = watcher.read_all()
    watcher.note(history)
    assert len(history) == 2 and not watcher.gaps and watcher.live
    rundir.update_run_info(run_dir, status="running", pid=2**22 + 12345, pid_start_time=1.0)
    assert watcher.refresh_status(update=False) == "crashed"
    assert not watcher.live
    assert rundir.read_run_info(run_dir).status == "running"  # update=False wrote nothing


def test_watcher_status_checks_come_at_most_once_per_interval(tmp_path):
    watcher = RunWatcher(tmp_path, status_every_s=60.0)
    assert watcher.due() and not watcher.due()


# --------------------------------------------------------------------------- one set of words


def test_headless_and_the_app_log_say_the_same_words(tmp_path):
    run_dir = rundir.create_run_dir(tiny(12), tmp_path / "r")
    records = [r for r in TRAINER_RECORDS if r["event"] not in ("step", "eval", "sample")]
    start = dict(records[0], time=100.0, max_steps=12)
    end = dict(records[-1], time=161.5)
    records = [start, *records[1:-1], end]
    err = io.StringIO()
    follower = Follower(run_dir, out=io.StringIO(), err=err)
    for record in records:
        follower.handle(record)
    printed = [
        line.removeprefix("gpt-cockpit: ")
        for line in err.getvalue().splitlines()
        if line.startswith("gpt-cockpit: ")
        and not line.startswith(("gpt-cockpit: data:", "gpt-cockpit:   "))  # headless's extra lines
    ]
    history = RunHistory()
    history.ingest(records)
    assert printed == list(history.log)
    assert printed == [
        "start: tiny on NVIDIA T4 (fp16), 123.5k params, 8192 tokens/step",
        "checkpoint last at step 10: checkpoints/last.pt (1.2 KiB)",
        "warning: step 11: [loss_spike] loss jumped",
        "error: step 12: RuntimeError: boom",
        "end: crashed at step 12/12 after 1m01s (RuntimeError: boom)",
    ]
    assert "gpt-cockpit:   tip: lower train.lr" in err.getvalue()  # headless keeps its extra lines


def test_event_line_of_each_kind():
    for record in TRAINER_RECORDS:
        event = parse_event(record)
        assert event is not None and event_line(event, 100)
    assert event_line(SampleEvent(step=3)) == "sample at step 3"
    assert event_line(EndEvent(step=3, reason=None, time=None)) == "end: ? at step 3"
    assert event_line(StepEvent(step=3, loss=1.0, time=None), 10) == "step 3/10 | loss 1.0000"
    assert event_line(EvalEvent(step=3, val_loss=1.0)) == "eval 3 | val 1.0000"
    assert event_line(ErrorEvent(step=1, message="x")) == "error: step 1: x"
    assert event_line(WarningEvent(step=1, message="m")) == "warning: step 1: [?] m"
    assert event_line(CheckpointEvent(step=1, kind="best", path="p")) == (
        "checkpoint best at step 1: p (-)"
    )
    assert event_line(StartEvent(step=0, device="cpu", resumed_from=4)) == (
        "start: ? on cpu (?), , resumed from step 4"
    )


def test_run_status_leaves_a_relaunched_run_alone(tmp_path, monkeypatch):
    """A launcher recording a dead child must not mark a run that was just relaunched."""
    from cockpit.rundir import process

    run_dir = rundir.create_run_dir(tiny(), tmp_path / "r")
    rundir.update_run_info(run_dir, status="running", pid=2**22 + 1, pid_start_time=1.0)
    real_update = process.update_run_info

    def relaunch_first(path, change=None, /, **changes):
        rundir.update_run_info(path, status="starting", pid=2**22 + 2, created=time.time())
        return real_update(path, change, **changes)

    monkeypatch.setattr(process, "update_run_info", relaunch_first)
    assert rundir.run_status(run_dir, update=True) == "starting"
    info = rundir.read_run_info(run_dir)
    assert info.status == "starting" and info.pid == 2**22 + 2 and info.end_reason is None


def test_health_count_keeps_notes_apart_from_warnings() -> None:
    from types import SimpleNamespace as W

    assert health_count([]) == "no warnings"
    assert health_count([W(severity="info")]) == "1 note"
    assert health_count([W(severity="warning")]) == "1 warning"
    mixed = [W(severity="critical"), W(severity="warning"), W(severity="info")]
    assert health_count(mixed) == "2 warnings, 1 note"
    assert counted(0, "run") == "0 runs" and counted(1, "run") == "1 run"
