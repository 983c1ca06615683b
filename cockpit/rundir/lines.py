"""One text line per event record: the same words in headless mode, `attach`, and the app's log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cockpit.common.format import (
    elapsed,
    format_eval_line,
    format_step_line,
    human_bytes,
    human_params,
    step_progress,
)
from cockpit.rundir.events import (
    CheckpointEvent,
    EndEvent,
    ErrorEvent,
    EvalEvent,
    Event,
    SampleEvent,
    StartEvent,
    StepEvent,
    WarningEvent,
)


def _start_line(e: StartEvent, max_steps: int | None, started_at: float | None) -> str:
    where = e.gpu or e.device or "?"
    params = f"{human_params(e.params)} params, " if e.params else ""
    tps = f"{e.tokens_per_step} tokens/step" if e.tokens_per_step else ""
    resumed = f", resumed from step {e.resumed_from}" if e.resumed_from is not None else ""
    ranks = f" x {e.world_size} ranks" if e.world_size and e.world_size > 1 else ""
    return f"start: {e.preset or '?'} on {where}{ranks} ({e.dtype or '?'}), {params}{tps}{resumed}"


def _step_line(e: StepEvent, max_steps: int | None, started_at: float | None) -> str:
    return format_step_line(e.to_record(), max_steps)


def _eval_line(e: EvalEvent, max_steps: int | None, started_at: float | None) -> str:
    return format_eval_line(e.to_record(), max_steps)


def _sample_line(e: SampleEvent, max_steps: int | None, started_at: float | None) -> str:
    return f"sample at step {e.step}"


def _checkpoint_line(e: CheckpointEvent, max_steps: int | None, started_at: float | None) -> str:
    return f"checkpoint {e.kind} at step {e.step}: {e.path} ({human_bytes(e.bytes)})"


def _warning_line(e: WarningEvent, max_steps: int | None, started_at: float | None) -> str:
    return f"{e.severity}: step {e.step}: [{e.rule or '?'}] {e.message}"


def _error_line(e: ErrorEvent, max_steps: int | None, started_at: float | None) -> str:
    return f"error: step {e.step}: {e.message}"


def _end_line(e: EndEvent, max_steps: int | None, started_at: float | None) -> str:
    took = ""
    if started_at is not None and e.time is not None:
        took = f" after {elapsed(e.time - started_at)}"
    message = f" ({e.message})" if e.message else ""
    return f"end: {e.reason or '?'} at step {step_progress(e.step, max_steps)}{took}{message}"


_EVENT_LINES: dict[type, Callable[[Any, int | None, float | None], str]] = {
    StartEvent: _start_line,
    StepEvent: _step_line,
    EvalEvent: _eval_line,
    SampleEvent: _sample_line,
    CheckpointEvent: _checkpoint_line,
    WarningEvent: _warning_line,
    ErrorEvent: _error_line,
    EndEvent: _end_line,
}


def event_line(event: Event, max_steps: int | None = None, started_at: float | None = None) -> str:
    """One line for one event, the same words in headless mode and the app's log.

    `max_steps` completes step progress ("20/20"); `started_at`, the time of the
    launch's `start`, lets an `end` say how long the launch took.
    """
    return _EVENT_LINES[type(event)](event, max_steps, started_at)
