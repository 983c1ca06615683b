"""RunWatcher: the one way a face follows a run (headless `Follower`, the app's run screen).

It reads what the trainer appended to events.jsonl, checks the run's status
against its process, and notices a live run that has gone silent: the median of
the recent gaps between arrivals of new records is the run's usual rhythm, and
`HealthMonitor.check_stalled` decides when the silence is far longer than that.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cockpit.health import HealthMonitor
from cockpit.rundir.events import EventTailer, WarningEvent
from cockpit.rundir.layout import EVENTS_JSONL
from cockpit.rundir.process import run_status
from cockpit.rundir.status import LIVE_STATUSES

STATUS_EVERY_S = 1.0  # how often a follower checks run.json against the pid
GAP_WINDOW = 50  # recent arrival gaps kept for the typical interval


class RunWatcher:
    """New records, the run's status and its silences, for one run directory.

    `clock` gives the wall time of arrivals and silences (the app passes its test
    clock). A run is live between a `start` record and its `end`, unless the last
    status check found it no longer starting/running.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        offset: int = 0,
        clock: Callable[[], float] = time.time,
        health: HealthMonitor | None = None,
        status_every_s: float = STATUS_EVERY_S,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.tailer = EventTailer(self.run_dir / EVENTS_JSONL, offset=offset)
        self.clock = clock
        self.health = health or HealthMonitor()  # only its stalled rule: the child runs the others
        self.status_every_s = status_every_s
        self.status: str | None = None  # from the last status check (None: never checked)
        self.in_launch = False  # a `start` arrived and its `end` has not
        self.last_arrival: float | None = None  # clock time the latest records arrived
        self.gaps: deque[float] = deque(maxlen=GAP_WINDOW)  # seconds between arrivals while live
        self.last_step = 0
        self._next_check = 0.0

    # ------------------------------------------------------------------ events

    def poll(self) -> list[dict[str, Any]]:
        """The records appended since the last poll, noted as arriving now."""
        records = self.tailer.poll()
        self.note(records)
        return records

    def read_all(self) -> list[dict[str, Any]]:
        """Everything the log holds from here on (a history read or a final drain; call `note` to count it)."""
        return self.tailer.read_all()

    def note(self, records: list[dict[str, Any]]) -> None:
        """Note a batch of records as arriving now: the gap since the last batch, start/end, the step."""
        if not records:
            return
        now = self.clock()
        if self.in_launch and self.last_arrival is not None:
            self.gaps.append(now - self.last_arrival)
        self.last_arrival = now
        for record in records:
            kind = record.get("event")
            if kind == "step":
                step = record.get("step")
                self.last_step = step if isinstance(step, int) else self.last_step
            elif kind == "start":
                self.in_launch = True
            elif kind == "end":
                self.in_launch = False

    # ------------------------------------------------------------------ status

    def due(self) -> bool:
        """True at most once per `status_every_s` (real time): time for a status and stall check."""
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self.status_every_s
        return True

    def refresh_status(self, *, update: bool = False) -> str:
        """The run's status checked against its pid now (RunError if run.json is unreadable); writes nothing unless `update`."""
        self.status = run_status(self.run_dir, update=update)
        return self.status

    @property
    def live(self) -> bool:
        """Between a `start` and its `end`, and not found dead by the last status check."""
        return self.in_launch and (self.status is None or self.status in LIVE_STATUSES)

    # ------------------------------------------------------------------ silence

    def typical_gap(self) -> float | None:
        """The median gap between recent arrivals (None before there are any)."""
        return statistics.median(self.gaps) if self.gaps else None

    def check_stalled(self) -> WarningEvent | None:
        """A `stalled` warning, once per silence, when a live run has written nothing for far too long.

        The rule is `HealthMonitor.check_stalled`'s; the warning's message names the
        silence, the usual gap and the last step seen here (the monitor sees no steps).
        """
        if not self.live or self.last_arrival is None:
            return None
        typical = self.typical_gap()
        for warning in self.health.check_stalled(self.clock(), self.last_arrival, typical):
            silent = warning.evidence.get("silent_s", 0.0)
            usual = f" (usually one every {typical:.1f} s)" if typical else ""
            message = f"no events for {silent:.0f} s{usual}; last step {self.last_step}"
            return WarningEvent(
                step=self.last_step,
                time=self.clock(),
                rule=warning.rule,
                severity=warning.severity,
                message=message,
                tip=warning.tip,
                evidence=dict(warning.evidence),
            )
        return None
