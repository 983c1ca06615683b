"""Messages that workers post to screens (workers never touch widgets)."""

from __future__ import annotations

from typing import Any

from textual.message import Message


class RunRecords(Message):
    """New event records read from a run's events.jsonl."""

    def __init__(self, records: list[dict[str, Any]], bad_lines: int) -> None:
        self.records = records
        self.bad_lines = bad_lines
        super().__init__()


class RunTailed(Message):
    """The records appended to events.jsonl since the last read (read in a worker thread)."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        super().__init__()


class RunStatusPolled(Message):
    """The run's status checked against its process (run.json + pid)."""

    def __init__(self, status: str) -> None:
        self.status = status
        super().__init__()

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunStatusPolled)


class GpusPolled(Message):
    """A fresh NVML reading of every GPU (empty: no GPU)."""

    def __init__(self, gpus: list[Any]) -> None:
        self.gpus = gpus
        super().__init__()

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GpusPolled)


class RunsListed(Message):
    """A fresh list of run summaries for the runs screen."""

    def __init__(self, summaries: list[Any]) -> None:
        self.summaries = summaries
        super().__init__()

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunsListed)
