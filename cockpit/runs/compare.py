"""Several runs side by side: their curves, best val, final loss, tokens, and presets' differences.

Read from each run's directory alone (events.jsonl, preset.json, run.json), with no
torch and no UI: `gpt-cockpit compare` prints it as tables, the app's compare view
overlays the curves, and `gpt-cockpit plot` draws them as a picture. A curve can be
aligned by step or by tokens seen (runs with different batch sizes meet on tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cockpit import rundir
from cockpit.common.format import fmt_float, human_count
from cockpit.runs.history import Series

ALIGNS = ("step", "tokens")
MAX_POINTS = 100_000  # far more than any plot draws: the curves are thinned by the drawer
IGNORED_FIELDS = ("name", "description")  # the run's own labels, not how it trained


@dataclass
class RunCurves:
    """One run's metric curves (by step; `aligned` maps them to tokens) and its facts."""

    run_dir: Path
    run_id: str
    status: str
    preset_name: str
    preset: dict[str, Any]  # flattened: "train.lr" -> 3e-4
    tokens_per_step: int
    loss: Series = field(default_factory=lambda: Series(MAX_POINTS))
    val: Series = field(default_factory=lambda: Series(MAX_POINTS))
    lr: Series = field(default_factory=lambda: Series(MAX_POINTS))
    grad_norm: Series = field(default_factory=lambda: Series(MAX_POINTS))
    tokens_at: dict[int, int] = field(default_factory=dict)
    warnings: list[tuple[int, str, str]] = field(default_factory=list)  # (step, severity, rule)

    def tokens(self, step: int) -> int:
        """Tokens trained on by the end of `step` (as its step event says, else steps x tokens/step)."""
        return self.tokens_at.get(step, step * self.tokens_per_step)

    def x(self, step: int, align: str = "step") -> int:
        return self.tokens(step) if align == "tokens" else step

    def aligned(self, series: Series, align: str = "step") -> Series:
        """The series with x in steps or in tokens."""
        if align == "step":
            return series
        out = Series(MAX_POINTS)
        for step, value in zip(series.steps, series.values, strict=True):
            out.add(self.tokens(step), value)
        return out

    @property
    def best_val(self) -> tuple[float, int] | None:
        """(lowest finite val loss, its step)."""
        pairs = [(v, s) for s, v in zip(self.val.steps, self.val.values, strict=True)]
        finite = [p for p in pairs if math.isfinite(p[0])]
        return min(finite, key=lambda p: (p[0], p[1])) if finite else None

    @property
    def final(self) -> tuple[float, int] | None:
        """(the last step's loss, that step)."""
        if not self.loss.steps:
            return None
        return self.loss.values[-1], self.loss.steps[-1]

    @property
    def last_step(self) -> int:
        return self.loss.steps[-1] if self.loss.steps else 0


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 1}} -> {"train.lr": 1}."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _add_record(curves: RunCurves, event: rundir.Event) -> None:
    step = event.step
    if isinstance(event, rundir.StepEvent):
        if event.loss is not None:
            curves.loss.add(step, float(event.loss))
        if event.lr is not None:
            curves.lr.add(step, float(event.lr))
        if event.grad_norm is not None:
            curves.grad_norm.add(step, float(event.grad_norm))
        if event.tokens is not None:
            curves.tokens_at[step] = int(event.tokens)
    elif isinstance(event, rundir.EvalEvent) and event.val_loss is not None:
        curves.val.add(step, float(event.val_loss))
    elif isinstance(event, rundir.WarningEvent) and event.severity in ("warning", "critical"):
        curves.warnings.append((step, event.severity, event.rule))
    elif isinstance(event, rundir.StartEvent) and event.tokens_per_step:
        curves.tokens_per_step = int(event.tokens_per_step)


def read_curves(run_dir: str | Path) -> RunCurves:
    """A run's curves and facts from its directory (RunError when it is no readable run)."""
    run_dir = Path(run_dir)
    preset = rundir.load_run_preset(run_dir)
    try:
        status = rundir.run_status(run_dir)
    except rundir.RunError:
        status = "damaged"
    curves = RunCurves(
        run_dir=run_dir,
        run_id=run_dir.name,
        status=status,
        preset_name=preset.name,
        preset=flatten(preset.to_dict()),
        tokens_per_step=int(preset.tokens_per_step),
    )
    events_path = run_dir / rundir.EVENTS_JSONL
    records = rundir.read_events(events_path) if events_path.exists() else []
    for record in records:
        event = rundir.parse_event(record)
        if event is not None:
            _add_record(curves, event)
    return curves


def preset_differences(runs: list[RunCurves]) -> list[tuple[str, list[Any]]]:
    """(field, each run's value) for every preset field whose value is not the same in all runs."""
    keys = sorted({k for r in runs for k in r.preset} - set(IGNORED_FIELDS))
    out = []
    for key in keys:
        values = [r.preset.get(key) for r in runs]
        if any(v != values[0] for v in values[1:]):
            out.append((key, values))
    return out


def fmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary_rows(runs: list[RunCurves], align: str = "step") -> list[dict[str, Any]]:
    """One row per run: the facts the compare table shows (numbers, not text)."""
    rows = []
    for r in runs:
        best, final = r.best_val, r.final
        rows.append(
            {
                "run": r.run_id,
                "path": str(r.run_dir),
                "status": r.status,
                "preset": r.preset_name,
                "steps": r.last_step,
                "tokens": r.tokens(r.last_step) if r.last_step else 0,
                "final_loss": final[0] if final else None,
                "best_val_loss": best[0] if best else None,
                "best_val_step": best[1] if best else None,
                "best_val_at": r.x(best[1], align) if best else None,
                "warnings": len(r.warnings),
            }
        )
    return rows


def summary_text(row: dict[str, Any], align: str = "step") -> list[str]:
    """A row of summary_rows as the compare table's cells."""
    at = row["best_val_at"]
    where = "-" if at is None else (f"step {at}" if align == "step" else human_count(at))
    return [
        row["run"],
        row["status"],
        row["preset"],
        str(row["steps"]),
        human_count(row["tokens"]),
        fmt_float(row["final_loss"]),
        fmt_float(row["best_val_loss"]),
        where,
        str(row["warnings"]),
    ]


SUMMARY_COLUMNS = (
    "run",
    "status",
    "preset",
    "steps",
    "tokens",
    "final loss",
    "best val",
    "best at",
    "warnings",
)
