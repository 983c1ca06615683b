"""The event log: strict-JSON records and a tailer that survives bad, partial and replaced files."""

from __future__ import annotations

import json
import math

import pytest

from cockpit.rundir import (
    SCHEMA_VERSION,
    EndEvent,
    EvalEvent,
    EventTailer,
    EventWriter,
    NullEventWriter,
    StartEvent,
    StepEvent,
    WarningEvent,
    decode_record,
    encode_record,
    make_record,
    read_events,
    read_last_records,
)


def test_round_trip_with_non_finite_values_is_strict_json():
    record = make_record(
        "step", 3, loss=math.nan, grad_norm=math.inf, lr=-math.inf, nested={"x": [math.nan, 1.5]}
    )
    line = encode_record(record)
    strict = json.loads(line, parse_constant=lambda token: pytest.fail(f"non-strict token {token}"))
    assert (
        strict["loss"] == "NaN"
        and strict["grad_norm"] == "Infinity"
        and strict["lr"] == "-Infinity"
    )
    back = decode_record(line)
    assert math.isnan(back["loss"]) and back["grad_norm"] == math.inf and back["lr"] == -math.inf
    assert math.isnan(back["nested"]["x"][0]) and back["nested"]["x"][1] == 1.5
    assert back["v"] == SCHEMA_VERSION and back["event"] == "step" and back["step"] == 3
    assert "\n" not in line


@pytest.mark.parametrize("line", ['{"event": "nope"}', "[1, 2]", '"step"', "{", '{"step": 1}'])
def test_decode_rejects_non_records(line):
    with pytest.raises(ValueError):
        decode_record(line)


def test_make_record_refuses_unknown_kinds():
    with pytest.raises(ValueError, match="unknown event kind"):
        make_record("stepp", 1)


def test_writer_appends_and_reader_reads(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as writer:
        writer.emit(StartEvent(step=0, preset="tiny"))
        writer.write_many([make_record("step", i, loss=float(i)) for i in range(1, 4)])
    with EventWriter(path) as writer:  # a resumed run appends
        writer.emit(EndEvent(step=3, reason="finished"))
    events = read_events(path)
    assert [e["event"] for e in events] == ["start", "step", "step", "step", "end"]
    assert [e["step"] for e in events] == [0, 1, 2, 3, 3]
    assert path.read_text().count("\n") == 5


def test_null_writer_writes_nothing(tmp_path):
    writer = NullEventWriter()
    event = writer.emit(StepEvent(step=1, loss=1.0))
    writer.write_many([event])
    writer.sync()
    writer.close()
    assert event.loss == 1.0


def test_tailer_holds_a_partial_line_until_it_is_complete(tmp_path):
    path = tmp_path / "events.jsonl"
    tailer = EventTailer(path)
    full = encode_record(make_record("step", 1, loss=2.0))
    with open(path, "w") as handle:
        handle.write(encode_record(make_record("start", 0)) + "\n" + full[:10])
    assert tailer.has_news()
    assert [r["event"] for r in tailer.poll()] == ["start"]
    assert not tailer.has_news() and tailer.poll() == []  # the partial line was read once
    with open(path, "a") as handle:
        handle.write(full[10:] + "\n")
    assert tailer.has_news()
    (record,) = tailer.poll()
    assert not tailer.has_news()
    assert record["loss"] == 2.0
    assert tailer.bad_lines == 0


def test_tailer_skips_and_counts_corrupt_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    good = encode_record(make_record("step", 1, loss=1.0))
    path.write_bytes(
        b"\n".join(
            [
                good.encode(),
                b'{"event": "step", "loss": ',
                b"\xff\xfe",
                b"",
                b'{"event":"bogus"}',
                good.encode(),
            ]
        )
        + b"\n"
    )
    tailer = EventTailer(path)
    assert len(tailer.poll()) == 2
    assert tailer.bad_lines == 3


def test_tailer_restarts_when_the_file_is_truncated(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as writer:
        for i in range(5):
            writer.emit(StepEvent(step=i))
    tailer = EventTailer(path)
    assert len(tailer.poll()) == 5
    path.write_text(encode_record(make_record("start", 0)) + "\n")
    assert tailer.has_news()  # shorter than where the last read ended: read from the start
    assert [r["event"] for r in tailer.poll()] == ["start"]


def test_tailer_on_a_missing_file_reads_empty_then_follows(tmp_path):
    path = tmp_path / "later" / "events.jsonl"
    tailer = EventTailer(path)
    assert not tailer.has_news() and tailer.poll() == [] and tailer.read_all() == []
    with EventWriter(path) as writer:
        writer.emit(StartEvent(step=0))
    assert tailer.has_news()
    assert [r["event"] for r in tailer.poll()] == ["start"]
    assert read_events(tmp_path / "nothing.jsonl") == []


def test_read_all_loops_past_the_per_poll_limit(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as writer:
        writer.write_many([make_record("step", i, loss=1.0) for i in range(500)])
    tailer = EventTailer(path, max_bytes_per_poll=1000)
    first = tailer.poll()
    assert 0 < len(first) < 500
    rest = tailer.read_all()
    assert [r["step"] for r in first + rest] == list(range(500))
    assert tailer.offset == path.stat().st_size


def test_read_last_records_reads_only_the_tail(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as writer:
        writer.write_many([make_record("step", i, loss=float(i)) for i in range(2000)])
        writer.emit(EndEvent(step=1999, reason="finished"))
    last = read_last_records(path, tail_bytes=4096)
    assert 0 < len(last) < 100
    assert last[-1]["event"] == "end" and last[-2]["step"] == 1999
    assert read_last_records(tmp_path / "missing.jsonl") == []


def test_a_writer_after_a_torn_last_line_starts_on_a_new_line(tmp_path):
    """A full disk cut the last record short; the resume's `start` must not be swallowed by it."""
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as writer:
        writer.emit(StepEvent(step=7, loss=1.0))
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"v":1,"event":"step","time":1.0,"st')  # torn, no newline
    with EventWriter(path) as writer:
        writer.emit(StartEvent(step=7, preset="p"))
    tailer = EventTailer(path)
    records = tailer.read_all()
    assert [r["event"] for r in records] == ["step", "start"]
    assert tailer.bad_lines == 1
    assert [r["event"] for r in read_last_records(path)] == ["step", "start"]


def test_a_writer_on_a_whole_log_adds_no_blank_line(tmp_path):
    path = tmp_path / "events.jsonl"
    for step in (1, 2):
        with EventWriter(path) as writer:
            writer.emit(StepEvent(step=step, loss=1.0))
    assert path.read_text().count("\n") == 2 and "\n\n" not in path.read_text()


def test_a_misspelled_field_fails_at_the_writer():
    """A typed event refuses a field its kind does not have, before anything is written."""
    with pytest.raises(TypeError, match="los"):
        StepEvent(step=1, los=2.0)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "event, kind, fields",
    [
        (
            StepEvent(step=5, time=1.5, loss=2.0, lr=1e-3, grad_norm=0.5),
            "step",
            {"loss": 2.0, "lr": 1e-3, "grad_norm": 0.5},
        ),
        (
            EvalEvent(step=5, time=1.5, val_loss=math.nan, improved=False),
            "eval",
            {"val_loss": math.nan, "improved": False},
        ),
        (
            WarningEvent(step=5, time=1.5, rule="r", message="m", evidence={"x": 1}),
            "warning",
            {"rule": "r", "severity": "warning", "message": "m", "tip": "", "evidence": {"x": 1}},
        ),
    ],
)
def test_typed_events_write_the_lines_keyword_records_did(tmp_path, event, kind, fields):
    """Byte-compatible log: a typed event's line is the keyword record's, with the kind's
    remaining fields as null, in the documented order."""
    typed, plain = tmp_path / "typed.jsonl", tmp_path / "plain.jsonl"
    with EventWriter(typed) as writer:
        writer.emit(event)
    record = make_record(kind, 5, **{name: getattr(event, name) for name in event._PAYLOAD})
    record["time"] = 1.5
    with EventWriter(plain) as writer:
        writer.write(record)
    assert typed.read_bytes() == plain.read_bytes()
    back = read_events(typed)[0]
    for name, value in fields.items():
        assert back[name] == value or (value != value and back[name] != back[name])
