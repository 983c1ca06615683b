"""A run's history rebuilt from its events: bounded metric series and the latest facts.

Pure bookkeeping over event records (no I/O, no clock): the app's run screen and
the benchmark feed it what `RunWatcher.poll()` returns; each record is read as its
typed event (cockpit.rundir), and its log line is `format.event_line`'s, the words
headless mode prints. Every series is
bounded: when it grows past `max_points` it is thinned to every other point, so
memory and redraw cost stay flat however long the run.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cockpit.common.format import format_eval_line, format_step_line
from cockpit.health import HealthWarning
from cockpit.rundir import (
    EndEvent,
    ErrorEvent,
    EvalEvent,
    Event,
    SampleEvent,
    StartEvent,
    StepEvent,
    WarningEvent,
    parse_event,
)
from cockpit.rundir.lines import event_line

MAX_POINTS = 2000  # points kept per plotted series
LOG_LINES = 200  # one-line records kept for the log tail
RATE_WINDOW = 50  # recent steps used for the step-rate ETA
# What a run may do in silence: no stall note while its records say it is in one of these.
QUIET_PHASES = ("starting", "first step", "evaluating", "checkpointing")


@dataclass
class Series:
    """(step, value) points, thinned to every other point past `max_points`; a step seen again replaces the later ones."""

    max_points: int = MAX_POINTS
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    stride: int = 1  # keep one point in `stride` steps (doubles at each thinning)

    def add(self, step: int, value: float) -> None:
        if (
            self.steps and step <= self.steps[-1]
        ):  # a rollback or a resume repeats steps: keep the latest
            cut = next((i for i, s in enumerate(self.steps) if s >= step), len(self.steps))
            del self.steps[cut:], self.values[cut:]
        if self.steps and step % self.stride and step - self.steps[-1] < self.stride:
            return
        self.steps.append(step)
        self.values.append(value)
        if len(self.steps) > self.max_points:
            self.stride *= 2
            self.steps = self.steps[::2]
            self.values = self.values[::2]

    def finite(self) -> tuple[list[int], list[float]]:
        """The points whose value is finite (NaN/inf cannot be plotted)."""
        pairs = [(s, v) for s, v in zip(self.steps, self.values, strict=True) if math.isfinite(v)]
        return [s for s, _ in pairs], [v for _, v in pairs]

    def envelope(self, buckets: int) -> tuple[list[int], list[float]]:
        """The finite points cut to about 2*`buckets`: each bucket's min and max in step order, so spikes survive."""
        return envelope(*self.finite(), buckets)

    def __len__(self) -> int:
        return len(self.steps)


def envelope(steps: list[int], values: list[float], buckets: int) -> tuple[list[int], list[float]]:
    """At most 2*`buckets` points of (steps, values): the lowest and highest of each run of equal width."""
    if buckets < 1 or len(steps) <= 2 * buckets:
        return list(steps), list(values)
    out_s: list[int] = []
    out_v: list[float] = []
    n = len(steps)
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        if lo >= hi:
            continue
        chunk = range(lo, hi)
        i_min = min(chunk, key=values.__getitem__)
        i_max = max(chunk, key=values.__getitem__)
        for i in sorted({i_min, i_max}):
            out_s.append(steps[i])
            out_v.append(values[i])
    return out_s, out_v


class RunHistory:
    """Everything a viewer shows about a run, updated record by record."""

    def __init__(self, max_points: int = MAX_POINTS, max_steps: int | None = None) -> None:
        self.loss = Series(max_points)
        self.val_loss = Series(max_points)
        self.lr = Series(max_points)
        self.grad_norm = Series(max_points)
        self.max_steps = max_steps
        self.start: StartEvent | None = None
        self.first_start_time: float | None = None
        self.last_step: StepEvent | None = None
        self.last_eval: EvalEvent | None = None
        self.best_val_loss: float | None = None
        self.sample: str = ""
        self.sample_step: int | None = None
        self.warnings: list[HealthWarning] = []
        self.end: EndEvent | None = None
        self.error: str = ""
        self.log: deque[str] = deque(maxlen=LOG_LINES)
        self.records = 0
        self.step = 0
        self.eval_interval = 0  # the preset's, set by the viewer: tells when an eval is due
        self.last_time: float | None = None  # the newest record's own time
        self.last_kind = ""  # the newest record's kind
        self.steps_since_start = 0
        self.last_ckpt_step: int | None = None
        self._logged_step = 0  # the last step with a log line
        self._earlier_s = 0.0  # time trained before the latest start (a resume skips the gap)
        self._recent: deque[tuple[float, int]] = deque(
            maxlen=RATE_WINDOW
        )  # (time, step) of recent steps
        self._adders: dict[type[Event], Callable[[Any, dict[str, Any]], None]] = {
            StepEvent: self._add_step,
            EvalEvent: self._add_eval,
            StartEvent: self._add_start,
            SampleEvent: self._add_sample,
            WarningEvent: self._add_warning,
            ErrorEvent: self._add_error,
            EndEvent: self._add_end,
        }

    # ---------------------------------------------------------------- ingest

    def ingest(self, records: list[dict[str, Any]]) -> None:
        """Take a batch of records in file order."""
        for record in records:
            self.add(record)

    def add(self, record: dict[str, Any]) -> None:
        """Take one record."""
        self.records += 1
        event = parse_event(record)
        if event is None:
            return
        if isinstance(event, StartEvent) and self.start is not None:
            self._close_segment()
        if event.time is not None:
            self.last_time = event.time
        if not isinstance(event, WarningEvent):  # a warning rides on a step: not a new phase
            self.last_kind = event.KIND
        adder = self._adders.get(type(event))
        if adder is not None:
            adder(event, record)
        else:  # a checkpoint: only its log line
            self.last_ckpt_step = event.step
            self._log_line(event)

    def _log_line(self, event: Event) -> None:
        started_at = self.start.time if self.start is not None else None
        self.log.append(event_line(event, self.max_steps, started_at))

    def _add_step(self, event: StepEvent, record: dict[str, Any]) -> None:
        step = event.step
        self.step = step
        self.last_step = event
        self.steps_since_start += 1
        for series, value in (
            (self.loss, event.loss),
            (self.lr, event.lr),
            (self.grad_norm, event.grad_norm),
        ):
            if value is not None:
                series.add(step, value)
        if event.time is not None:
            if self._recent and step <= self._recent[-1][1]:
                self._recent.clear()
            self._recent.append((event.time, step))
        every = max(1, (self.max_steps or 1000) // 100)  # about a hundred lines per run
        # whichever step records arrive (every log_interval), one at least `every` steps on is logged
        if not 0 < step - self._logged_step < every or (self.max_steps and step >= self.max_steps):
            self._logged_step = step
            self.log.append(format_step_line(record, self.max_steps))

    def _add_eval(self, event: EvalEvent, record: dict[str, Any]) -> None:
        self.last_eval = event
        val = event.val_loss
        if val is not None:
            self.val_loss.add(event.step, val)
            if math.isfinite(val) and (self.best_val_loss is None or val < self.best_val_loss):
                self.best_val_loss = val
        best = event.best_val_loss
        if best is not None and math.isfinite(best):
            self.best_val_loss = (
                best if self.best_val_loss is None else min(best, self.best_val_loss)
            )
        self.log.append(format_eval_line(record, self.max_steps))

    def _close_segment(self) -> None:
        """A new start: count the time from the previous start to its last record, not the gap."""
        began = self.start.time if self.start is not None else None
        if began is not None and self.last_time is not None:
            self._earlier_s += max(0.0, self.last_time - began)

    def _add_start(self, event: StartEvent, record: dict[str, Any]) -> None:
        self.start = event
        self.end = None
        self._recent.clear()
        self.steps_since_start = 0
        self._logged_step = min(self._logged_step, event.step)
        if self.first_start_time is None:
            self.first_start_time = event.time
        if event.max_steps:
            self.max_steps = event.max_steps
        self._log_line(event)

    def _add_sample(self, event: SampleEvent, record: dict[str, Any]) -> None:
        self.sample = event.text
        self.sample_step = event.step

    def _add_warning(self, event: WarningEvent, record: dict[str, Any]) -> None:
        self.warnings.append(HealthWarning.from_event(record))
        del self.warnings[:-50]
        self._log_line(event)

    def _add_error(self, event: ErrorEvent, record: dict[str, Any]) -> None:
        self.error = event.message
        self._log_line(event)

    def _add_end(self, event: EndEvent, record: dict[str, Any]) -> None:
        self.end = event
        self._log_line(event)

    # ---------------------------------------------------------------- derived

    @property
    def tokens_per_s(self) -> float | None:
        """The latest step's throughput."""
        return self.last_step.tokens_per_s if self.last_step is not None else None

    @property
    def mfu(self) -> float | None:
        """The latest step's MFU as a fraction (None on CPU or an unknown GPU)."""
        return self.last_step.mfu if self.last_step is not None else None

    @property
    def vram_bytes(self) -> float | None:
        """The latest step's reserved GPU memory."""
        return self.last_step.vram_bytes if self.last_step is not None else None

    def elapsed_s(self, now: float | None = None) -> float | None:
        """Seconds trained: each start to its last record (a resume's stopped gap is not counted),
        the latest one to the end record if there is one, else to `now` (or its last record)."""
        began = self.start.time if self.start is not None else None
        if began is None:
            return None
        if self.end is not None and self.end.time is not None:
            last = self.end.time
        elif now is not None:
            last = now
        else:
            last = self.last_time or began
        return self._earlier_s + max(0.0, last - began)

    def steps_per_s(self) -> float | None:
        """Recent optimizer steps per second, from the step records' own times."""
        if len(self._recent) < 2:
            return None
        (t0, s0), (t1, s1) = self._recent[0], self._recent[-1]
        if t1 <= t0 or s1 <= s0:
            return None
        return (s1 - s0) / (t1 - t0)

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left at the recent step rate (None when unknown or ended).

        With `now`, the time since the last step record is taken off, so the ETA counts
        down between records instead of standing still.
        """
        rate = self.steps_per_s()
        if self.end is not None or not rate or not self.max_steps:
            return None
        left = (self.max_steps - self.step) / rate
        last = self.last_step.time if self.last_step is not None else None
        if now is not None and last is not None:
            left -= max(0.0, now - last)
        return max(0.0, left)

    def since_update_s(self, now: float) -> float | None:
        """Seconds since the newest record was written (None before any)."""
        return None if self.last_time is None else max(0.0, now - self.last_time)

    def phase(self) -> str:
        """What a live run is doing now, as far as its records tell: starting, first step,
        training, evaluating or checkpointing ("" once it has ended)."""
        if self.end is not None:
            return ""
        if self.start is None:
            return "starting"
        if self.steps_since_start == 0:
            return "first step"
        s = self.step
        due = (self.eval_interval and s % self.eval_interval == 0) or (
            self.max_steps and s >= self.max_steps
        )
        evaluated = self.last_eval is not None and self.last_eval.step == s
        if self.last_kind == "step" and due and not evaluated:
            return "evaluating"
        if self.last_kind in ("eval", "sample") and self.last_ckpt_step != s:
            return "checkpointing"
        return "training"

    def warning_steps(self) -> list[int]:
        """Steps where warnings start (marked on the loss plot)."""
        return [w.step for w in self.warnings if w.severity != "info"]
