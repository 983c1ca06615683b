"""The event log: one JSON object per line in `<run>/events.jsonl`.

The trainer appends; any number of readers (the app, headless mode, `runs`)
tail it. The schema is documented in docs/run-directory.md and versioned by
SCHEMA_VERSION. Every record carries:

    v      schema version (int)
    event  one of EVENT_KINDS
    time   wall-clock seconds since the epoch (float)
    step   optimizer step the record belongs to (int)

Non-finite floats are written as the strings "NaN", "Infinity", "-Infinity"
so every line is strict JSON; `decode_record` turns them back into floats.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

SCHEMA_VERSION = 1
EVENT_KINDS = ("start", "step", "eval", "sample", "checkpoint", "warning", "end", "error")
END_REASONS = ("finished", "stopped", "max-time", "halted", "crashed", "error")

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


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
    return json.dumps(_encode_value(record), allow_nan=False, separators=(",", ":"))


def decode_record(line: str | bytes) -> dict[str, Any]:
    """Parse one line into a record; raises ValueError if it is not a valid record."""
    record = json.loads(line)
    if not isinstance(record, dict) or record.get("event") not in EVENT_KINDS:
        raise ValueError("not an event record")
    return _decode_value(record)


def make_record(event: str, step: int, **fields: Any) -> dict[str, Any]:
    """A record with the common header filled in."""
    if event not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {event!r}")
    return {"v": SCHEMA_VERSION, "event": event, "time": time.time(), "step": int(step), **fields}


class EventWriter:
    """Appends records to events.jsonl, flushing each line as it is written."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] | None = open(self.path, "a", encoding="utf-8")

    def emit(self, event: str, step: int, **fields: Any) -> dict[str, Any]:
        """Write one record now and return it."""
        record = make_record(event, step, **fields)
        self.write(record)
        return record

    def write(self, record: dict[str, Any]) -> None:
        self.write_many((record,))

    def write_many(self, records: Iterable[dict[str, Any]]) -> None:
        """Write several records with one flush (the trainer's batched step events)."""
        if self._handle is None:
            return
        text = "".join(encode_record(r) + "\n" for r in records)
        if text:
            self._handle.write(text)
            self._handle.flush()

    def sync(self) -> None:
        """fsync the log (at checkpoints and at the end, not per line)."""
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            try:
                self.sync()
            except OSError:
                pass
            self._handle.close()
            self._handle = None

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NullEventWriter(EventWriter):
    """A writer that drops everything, so call sites never branch on 'events off'."""

    def __init__(self) -> None:  # noqa: D107 - nothing to open
        self.path = Path(os.devnull)
        self._handle = None

    def emit(self, event: str, step: int, **fields: Any) -> dict[str, Any]:
        return make_record(event, step, **fields)


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
        records = []
        for line in lines:
            if not line.strip():
                continue
            try:
                records.append(decode_record(line))
            except (ValueError, UnicodeDecodeError, RecursionError):
                self.bad_lines += 1
        return records

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
    p = Path(path)
    try:
        with open(p, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - tail_bytes))
            data = handle.read()
    except OSError:
        return []
    lines = data.split(b"\n")
    if size > tail_bytes:
        lines = lines[1:]  # the first line is probably cut
    out = []
    for line in lines:
        if line.strip():
            try:
                out.append(decode_record(line))
            except (ValueError, UnicodeDecodeError):
                pass
    return out
