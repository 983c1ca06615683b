"""The event log: one JSON object per line in `<run>/events.jsonl`, and a typed record per kind.

The trainer appends; any number of readers (the app, headless mode, `runs`)
tail it. The schema is documented in docs/run-directory.md and versioned by
SCHEMA_VERSION. Every record carries:

    v      schema version (int)
    event  one of EVENT_KINDS
    time   wall-clock seconds since the epoch (float)
    step   optimizer step the record belongs to (int)

Non-finite floats are written as the strings "NaN", "Infinity", "-Infinity"
so every line is strict JSON; `decode_record` turns them back into floats.

Records travel as plain dicts (what the tailer returns, what `HealthMonitor.replay`
takes); `parse_event` turns one into its typed event (StartEvent, StepEvent, ...),
reading a missing or wrong-typed field as its default, so a reader never fails on a
bad line. `Event.to_record()` is the dict a writer encodes, with the fields in the
order the trainer has always written them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, TypeVar

from cockpit.common.numbers import as_float
from cockpit.rundir._coerce import BY_ANNOTATION, EXACT_TYPE, MAX_COUNT, as_int
from cockpit.rundir.status import END_REASONS  # noqa: F401 - the `end` reasons, beside the kinds

SCHEMA_VERSION = 1
EVENT_KINDS = ("start", "step", "eval", "sample", "checkpoint", "warning", "end", "error")

E = TypeVar("E", bound="Event")

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


# --------------------------------------------------------------------------- encoding


def _encode_value(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return {k: _encode_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_value(v) for v in value]
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, str) and value in _NONFINITE:
        return _NONFINITE[value]
    if isinstance(value, dict):
        return {k: _decode_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    return value


def encode_record(record: dict[str, Any]) -> str:
    """One record as a strict-JSON line (no trailing newline)."""
    try:  # the common case: every float finite, so json's C encoder does it all
        return json.dumps(record, allow_nan=False, separators=(",", ":"))
    except ValueError:  # a NaN or an infinity somewhere: spell it as a string
        return json.dumps(_encode_value(record), allow_nan=False, separators=(",", ":"))


MAX_STEP = 2**53  # a step beyond this is no step a trainer wrote


def decode_record(line: str | bytes) -> dict[str, Any]:
    """Parse one line into a record; raises ValueError if it is not a valid record.

    A record is an object of a known kind whose `step` is an int in [0, MAX_STEP]
    (null, "eight", NaN, 1e400 are not); anything nested too deep for the parser is
    a ValueError too, so no line can make a reader fail.
    """
    try:
        record = json.loads(line)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(record, dict) or record.get("event") not in EVENT_KINDS:
        raise ValueError("not an event record")
    step = record.get("step")
    if type(step) is not int or not 0 <= step <= MAX_STEP:
        raise ValueError("no valid step")
    try:
        decoded: dict[str, Any] = _decode_value(record)
        return decoded
    except RecursionError:
        raise ValueError("nested too deeply") from None


def decode_lines(lines: Iterable[bytes]) -> tuple[list[dict[str, Any]], int]:
    """The records of whole lines, and how many non-blank lines were not valid records."""
    records, bad = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            records.append(decode_record(line))
        except (ValueError, UnicodeDecodeError):
            bad += 1
    return records, bad


def make_record(event: str, step: int, **fields: Any) -> dict[str, Any]:
    """A record with the common header filled in."""
    if event not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {event!r}")
    return {"v": SCHEMA_VERSION, "event": event, "time": time.time(), "step": int(step), **fields}


# --------------------------------------------------------------------------- typed events


@dataclass(slots=True)
class Event:
    """The header every record has; each kind below adds its own fields."""

    KIND: ClassVar[str] = ""
    _PAYLOAD: ClassVar[tuple[str, ...]] = ()
    _READERS: ClassVar[tuple[tuple[str, Any, Any, Any], ...]] = ()

    step: int = 0
    time: float | None = field(default_factory=time.time)  # None when a read record had none
    v: int = SCHEMA_VERSION

    @property
    def event(self) -> str:
        return self.KIND

    def to_record(self) -> dict[str, Any]:
        """The record as written: header, then this kind's fields in their documented order."""
        record = {"v": self.v, "event": self.KIND, "time": self.time, "step": self.step}
        for name in self._PAYLOAD:
            record[name] = getattr(self, name)
        return record

    @classmethod
    def from_record(cls: type[E], record: dict[str, Any]) -> E:
        """The typed event of `record`; a missing or wrong-typed field reads as its default."""
        get = record.get
        event = cls.__new__(cls)
        event.v = as_int(get("v"), SCHEMA_VERSION)
        event.time = as_float(get("time"))
        event.step = as_int(get("step"), 0)
        for name, exact, read, default in cls._READERS:
            value = get(name)
            # the common case (the writer's own type) skips the reader; an int past 2^53 is no count
            huge = exact is int and isinstance(value, int) and not -MAX_COUNT <= value <= MAX_COUNT
            if type(value) is not exact or huge:
                value = read(value, None)
                if value is None:
                    value = default()
            setattr(event, name, value)
        return event


def _kind(name: str) -> Any:
    """Register a typed event class for one kind and precompute its readers."""

    def register(cls: type[Event]) -> type[Event]:
        own = [f for f in dataclasses.fields(cls) if f.name not in _HEADER]
        cls.KIND = name
        cls._PAYLOAD = tuple(f.name for f in own)
        cls._READERS = tuple(
            (f.name, EXACT_TYPE.get(str(f.type)), BY_ANNOTATION[str(f.type)], _default_of(f))
            for f in own
        )
        EVENT_TYPES[name] = cls
        return cls

    return register


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory
    value = f.default
    return lambda: value


_HEADER = ("step", "time", "v")
EVENT_TYPES: dict[str, type[Event]] = {}


@_kind("start")
@dataclass(slots=True)
class StartEvent(Event):
    """Once per launch, after setup (a resumed run appends another)."""

    preset: str | None = None
    device: str | None = None
    gpu: str | None = None
    gpu_uuid: str | None = None
    dtype: str | None = None
    params: int | None = None
    tokens_per_step: int | None = None
    data: str | None = None
    resumed_from: int | None = None
    max_steps: int | None = None
    micro_batch: int | None = None
    grad_accum: int | None = None
    world_size: int | None = None
    compile: bool | None = None
    pid: int | None = None


@_kind("step")
@dataclass(slots=True)
class StepEvent(Event):
    """One optimizer step."""

    loss: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    step_ms: float | None = None
    tokens: int | None = None
    mfu: float | None = None
    micro_batch: int | None = None
    grad_accum: int | None = None
    lr_scale: float | None = None
    vram_bytes: int | None = None
    scaler_skipped: bool | None = None


@_kind("eval")
@dataclass(slots=True)
class EvalEvent(Event):
    """Validation and training loss estimates."""

    val_loss: float | None = None
    train_loss: float | None = None
    val_bpb: float | None = None
    best_val_loss: float | None = None
    improved: bool | None = None


@_kind("sample")
@dataclass(slots=True)
class SampleEvent(Event):
    """Generated text after an eval."""

    text: str = ""


@_kind("checkpoint")
@dataclass(slots=True)
class CheckpointEvent(Event):
    """A checkpoint file written."""

    path: str = ""
    kind: str = ""
    bytes: int | None = None
    seconds: float | None = None


@_kind("warning")
@dataclass(slots=True)
class WarningEvent(Event):
    """A health finding or an engine notice."""

    rule: str = ""
    severity: str = "warning"
    message: str = ""
    tip: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


@_kind("error")
@dataclass(slots=True)
class ErrorEvent(Event):
    """What went wrong, before the `end` of a failed run."""

    message: str = ""
    kind: str = ""
    traceback: str = ""


@_kind("end")
@dataclass(slots=True)
class EndEvent(Event):
    """The last record of a launch."""

    reason: str | None = None
    message: str = ""


def parse_event(record: dict[str, Any]) -> Event | None:
    """The typed event of a record, or None for a kind this version does not know."""
    kind = record.get("event")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    return None if cls is None else cls.from_record(record)


def encode_event(event: Event) -> str:
    """One typed event as its strict-JSON line."""
    return encode_record(event.to_record())


# --------------------------------------------------------------------------- writing


class EventWriter:
    """Appends records to events.jsonl, flushing each line as it is written.

    A log whose last line was cut short (a full disk, a kill mid-write) gets a
    newline first, so the torn line stays one bad line and the next record (a
    resume's `start`) is whole.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] | None = open(self.path, "a", encoding="utf-8")
        if not _ends_a_line(self.path):
            self._handle.write("\n")
            with contextlib.suppress(
                OSError
            ):  # a full disk: the newline goes out with the next write
                self._handle.flush()

    def emit(self, event: Event) -> Event:
        """Write one typed event now and return it (its fields are checked by its dataclass)."""
        self.write_many((event,))
        return event

    def write(self, record: dict[str, Any] | Event) -> None:
        self.write_many((record,))

    def write_many(self, records: Iterable[dict[str, Any] | Event]) -> None:
        """Write several records (dicts or typed events) with one flush (the trainer's batched steps)."""
        if self._handle is None:
            return
        text = "".join(
            encode_record(r.to_record() if isinstance(r, Event) else r) + "\n" for r in records
        )
        if text:
            self._handle.write(text)
            self._handle.flush()

    def sync(self) -> None:
        """fsync the log (at checkpoints and at the end, not per line)."""
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Flush, fsync and close; raises the OSError of a write that never made it (a full disk)."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            try:
                handle.flush()
                with contextlib.suppress(OSError):
                    os.fsync(handle.fileno())
            finally:
                with contextlib.suppress(OSError):
                    handle.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ends_a_line(path: Path) -> bool:
    """True if the file is empty or its last byte is a newline."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() == 0:
            return True
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


class NullEventWriter(EventWriter):
    """A writer that drops everything, so call sites never branch on 'events off'."""

    def __init__(self) -> None:  # noqa: D107 - nothing to open
        self.path = Path(os.devnull)
        self._handle = None

    def emit(self, event: Event) -> Event:
        return event


# --------------------------------------------------------------------------- reading


@dataclass
class EventTailer:
    """Reads new complete lines from an events file, surviving bad and half-written lines.

    `poll()` returns the records appended since the last call. A trailing line
    without its newline is kept until it is complete; a line that does not parse
    is skipped and counted in `bad_lines`. A file that does not exist yet reads as
    empty; a file that shrank (replaced) is read again from the start.
    """

    path: Path
    max_bytes_per_poll: int = 8 << 20
    offset: int = 0
    bad_lines: int = 0
    _partial: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def poll(self) -> list[dict[str, Any]]:
        try:
            size = self.path.stat().st_size
        except OSError:
            return []
        if size < self.offset:
            self.offset, self._partial = 0, b""
        if size == self.offset:
            return []
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read(self.max_bytes_per_poll)
        except OSError:
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        records, bad = decode_lines(lines)
        self.bad_lines += bad
        return records

    def has_news(self) -> bool:
        """Whether a poll would read anything: the file's size is not where the last read ended
        (one stat, cheaper than the thread a reader starts for a poll that finds nothing)."""
        try:
            return self.path.stat().st_size != self.offset
        except OSError:
            return False

    def read_all(self) -> list[dict[str, Any]]:
        """Everything there is now (loops over poll until caught up)."""
        out: list[dict[str, Any]] = []
        while True:
            batch = self.poll()
            if not batch and self._at_end():
                return out
            out.extend(batch)

    def _at_end(self) -> bool:
        try:
            return self.path.stat().st_size <= self.offset
        except OSError:
            return True


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All well-formed records in an events file (bad lines skipped)."""
    return EventTailer(Path(path)).read_all()


def read_last_records(
    path: str | os.PathLike[str], tail_bytes: int = 65536
) -> list[dict[str, Any]]:
    """The well-formed records in the last `tail_bytes` of the file (cheap, for listings)."""
    return read_tail(path, tail_bytes)[0]


def read_tail(
    path: str | os.PathLike[str], tail_bytes: int = 65536
) -> tuple[list[dict[str, Any]], int]:
    """The well-formed records in the last `tail_bytes` of the file, and how many lines were skipped.

    When nothing in that window is a record (bad lines longer than the window end the log: a
    torn multi-megabyte write), the window moves back before them, so a listing still shows
    the last good record; each long line counts as one skipped. At most LONG_LINE_SCAN bytes
    from the end are read that way.
    """
    try:
        with open(Path(path), "rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            low = max(0, end - LONG_LINE_SCAN)
            skipped = 0
            while True:
                start = max(0, end - tail_bytes)
                handle.seek(start)
                lines = handle.read(end - start).split(b"\n")
                if start > 0:
                    lines = lines[1:]  # the first line is probably cut
                records, bad = decode_lines(lines)
                if records or start == 0:
                    return records, bad + skipped
                line_start = _start_of_line(handle, start, low)
                if line_start is None:
                    return [], 0  # no record in the last LONG_LINE_SCAN bytes: nothing to show
                end, skipped = line_start, skipped + bad + 1
    except OSError:
        return [], 0


LONG_LINE_SCAN = 64 << 20  # bytes from the end read back looking for a record before long lines


def _start_of_line(handle: IO[bytes], pos: int, low: int) -> int | None:
    """Where the line holding byte `pos` starts, read backwards in 1 MiB pieces down to `low`
    (None when it starts before `low`: a line that long is given up on)."""
    while pos > low:
        chunk_start = max(low, pos - (1 << 20))
        handle.seek(chunk_start)
        found = handle.read(pos - chunk_start).rfind(b"\n")
        if found >= 0:
            return chunk_start + found + 1
        pos = chunk_start
    return 0 if low == 0 else None
