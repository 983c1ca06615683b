"""Test hooks: faults injected into a real run through the GPT_COCKPIT_FAULT variable.

GPT_COCKPIT_FAULT is a comma-separated list of `name=value` items:

    nan_at_step=K       step K's loss (and so its gradients) becomes NaN, once
    spike_at_step=K     step K's loss is multiplied by SPIKE_FACTOR (spike_steps=N: for N steps), once
    oom_above_batch=M   forward passes on micro-batches larger than M raise an out-of-memory error
    oom_rank=R          ... on torchrun rank R only (the others fit)
    oom_from_step=K     ... from step K on only (a later step than the first)
    slow_step_ms=X      sleep X milliseconds in every step (for UI tests)
    die_at_step=K       os._exit(1) right after step K, with no checkpoint and no `end`
    stop_at_step=K      a graceful stop after step K, as if SIGTERM arrived during it
    hold_at_step=K      after step K (its records written), wait without training until this
                        process is asked to stop, at most hold_s; under torchrun every rank
                        waits at that step and leaves on rank 0's word (no rank is left inside
                        a collective the others have not reached). A test that stops a run
                        midway waits for this instead of slowing every step.
    hold_s=X            the longest hold, in seconds (default HOLD_MAX_S); the run then trains on
    hold_until=PATH     the hold also ends once the file PATH exists (a test that needed the
                        window lets every held run go on at once); no comma in PATH

Steps count completed optimizer steps from 1, as the `step` events do. A NaN or
spike fires once per process, so a rollback that replays step K trains cleanly.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

FAULT_ENV = "GPT_COCKPIT_FAULT"
SPIKE_FACTOR = 50.0  # far above any rolling window of a healthy loss
HOLD_MAX_S = 600.0  # a held run that nobody stops trains on after this (a forgotten test ends)
HOLD_POLL_S = 0.02  # how often a held run looks for its stop request (seconds)

_INT_KEYS = (
    "nan_at_step",
    "spike_at_step",
    "spike_steps",
    "oom_above_batch",
    "oom_rank",
    "oom_from_step",
    "die_at_step",
    "stop_at_step",
    "hold_at_step",
)
_FLOAT_KEYS = ("slow_step_ms", "hold_s")
_STR_KEYS = ("hold_until",)


class FaultSpecError(ValueError):
    """GPT_COCKPIT_FAULT holds something this module does not understand."""


@dataclass
class Faults:
    """The faults asked for, and which one-shot faults have fired."""

    nan_at_step: int | None = None
    spike_at_step: int | None = None
    spike_steps: int = 1
    oom_above_batch: int | None = None
    oom_rank: int | None = None
    oom_from_step: int | None = None
    slow_step_ms: float = 0.0
    die_at_step: int | None = None
    stop_at_step: int | None = None
    hold_at_step: int | None = None
    hold_s: float = HOLD_MAX_S
    hold_until: str | None = None  # a file whose existence ends the hold
    fired: set[str] = field(default_factory=set)
    rank: int = 0  # this process's torchrun rank (RANK), for oom_rank
    steps_done: int = 0  # optimizer steps completed (after_step), for oom_from_step

    @property
    def active(self) -> bool:
        """True if any fault is set."""
        return (
            any(
                v is not None
                for v in (
                    self.nan_at_step,
                    self.spike_at_step,
                    self.oom_above_batch,
                    self.die_at_step,
                    self.stop_at_step,
                    self.hold_at_step,
                )
            )
            or self.slow_step_ms > 0
        )

    def loss_factor(self, step: int) -> float:
        """What to multiply step `step`'s loss by (1.0 when no fault applies); one-shot."""
        if self.nan_at_step is not None and step == self.nan_at_step and "nan" not in self.fired:
            self.fired.add("nan")
            return float("nan")
        if self.spike_at_step is not None and "spike" not in self.fired:
            last = self.spike_at_step + max(1, self.spike_steps) - 1
            if self.spike_at_step <= step <= last:
                if step == last:
                    self.fired.add("spike")
                return SPIKE_FACTOR
        return 1.0

    def check_oom(self, micro_batch: int) -> None:
        """Raise torch's out-of-memory error for micro-batches above the limit (works on CPU too)."""
        if self.oom_above_batch is None or micro_batch <= self.oom_above_batch:
            return
        if self.oom_rank is not None and self.rank != self.oom_rank:
            return
        if self.oom_from_step is None or self.steps_done + 1 >= self.oom_from_step:
            import torch

            raise torch.OutOfMemoryError(
                f"injected fault: out of memory for micro-batch {micro_batch} > {self.oom_above_batch}"
            )

    def after_step(self, step: int) -> None:
        """Sleep and die where asked, after optimizer step `step` completed."""
        self.steps_done = step
        if self.slow_step_ms > 0:
            time.sleep(self.slow_step_ms / 1000.0)
        if self.die_at_step is not None and step >= self.die_at_step:
            os._exit(1)

    def holds_after(self, step: int) -> bool:
        """The hold_at_step fault is due after optimizer step `step` (on every rank)."""
        return self.hold_at_step is not None and step == self.hold_at_step

    def hold(
        self, stop_asked: Callable[[], bool], agree: Callable[[bool], bool] = lambda done: done
    ) -> None:
        """Wait until `stop_asked()` or the hold_until file exists (at most hold_s). `agree(done)`
        gives every rank rank 0's `done` (a collective under torchrun), so the ranks wait and
        leave together."""
        deadline = time.monotonic() + self.hold_s
        while not agree(
            self.rank == 0 and (stop_asked() or self._released() or time.monotonic() >= deadline)
        ):
            time.sleep(HOLD_POLL_S)

    def _released(self) -> bool:
        return self.hold_until is not None and os.path.exists(self.hold_until)


def parse_faults(spec: str | None) -> Faults:
    """Parse a GPT_COCKPIT_FAULT value; FaultSpecError names the item it cannot read."""
    faults = Faults()
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in _INT_KEYS + _FLOAT_KEYS + _STR_KEYS:
            known = ", ".join(
                [k + "=N" for k in _INT_KEYS + _FLOAT_KEYS] + [k + "=PATH" for k in _STR_KEYS]
            )
            raise FaultSpecError(f"{FAULT_ENV}: cannot read {item!r}; known items: {known}")
        if key in _STR_KEYS:
            setattr(faults, key, raw.strip())
            continue
        try:
            value: float = int(raw) if key in _INT_KEYS else float(raw)
        except ValueError:
            raise FaultSpecError(f"{FAULT_ENV}: {key} needs a number, not {raw!r}") from None
        setattr(faults, key, value)
    return faults


def faults_from_env() -> Faults:
    """The faults named in the environment (none when the variable is unset)."""
    faults = parse_faults(os.environ.get(FAULT_ENV))
    faults.rank = int(os.environ.get("RANK", "0") or 0)  # torchrun's; 0 in one process
    return faults
