"""How far an entry's run is, from its run directory: steps, pace, evals, what is left.

Read from the last records of events.jsonl (cheap: a tail), so the list, the scheduler's
ETAs and the pruning policy all see the same numbers without the run's help.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from cockpit import rundir

TAIL_BYTES = 256 * 1024  # enough records for a pace and every eval of a small run


@dataclass(frozen=True)
class RunProgress:
    """One run's progress as its records tell it."""

    step: int
    max_steps: int
    step_s: float | None  # wall seconds per step lately (median of recent step_ms), None before any
    tokens_per_step: int
    evals: tuple[tuple[int, float], ...]  # (tokens seen, val loss) per eval, in order
    has_checkpoint: bool  # a checkpoint to resume from exists
    best_val_loss: float | None

    @property
    def left_s(self) -> float | None:
        """Seconds to its last step at the recent pace (None before a pace is known)."""
        if self.step_s is None or not self.max_steps:
            return None
        return max(0, self.max_steps - self.step) * self.step_s

    @property
    def fraction(self) -> float:
        """Share of its steps done, 0 to 1."""
        return min(1.0, self.step / self.max_steps) if self.max_steps else 0.0


def has_checkpoint(run_dir: str | Path) -> bool:
    """A checkpoint to resume from (runs.prelaunch.resume_problem's rule: a non-empty last.pt
    or last.prev.pt)."""
    from cockpit.runs.prelaunch import resume_problem

    return resume_problem(run_dir) is None


def read_progress(run_dir: str | Path) -> RunProgress:
    """The progress of the run in `run_dir` (zeros for a run that has not started)."""
    path = Path(run_dir)
    records = rundir.read_last_records(path / rundir.EVENTS_JSONL, TAIL_BYTES)
    step, max_steps, tokens_per_step = 0, 0, 0
    step_ms: list[float] = []
    evals: list[tuple[int, float]] = []
    best = None
    for r in records:
        kind = r.get("event")
        step = max(step, int(r.get("step") or 0))
        if kind == "start":
            max_steps = int(r.get("max_steps") or max_steps)
            tokens_per_step = int(r.get("tokens_per_step") or tokens_per_step)
        elif kind == "step" and r.get("step_ms"):
            step_ms.append(float(r["step_ms"]))
        elif kind == "eval" and r.get("val_loss") is not None:
            evals.append((int(r.get("step") or 0) * tokens_per_step, float(r["val_loss"])))
            best = r.get("best_val_loss", best)
    try:
        info = rundir.read_run_info(path)
        max_steps = max_steps or int(info.max_steps or 0)
        step = max(step, info.step)
    except rundir.RunError:
        pass
    pace = statistics.median(step_ms[-20:]) / 1000.0 if step_ms else None
    return RunProgress(
        step=step,
        max_steps=max_steps,
        step_s=pace,
        tokens_per_step=tokens_per_step,
        evals=tuple(evals),
        has_checkpoint=has_checkpoint(path),
        best_val_loss=float(best) if best is not None else None,
    )
