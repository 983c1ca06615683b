"""The pure parts of the GPU acceptance run (bench/gpu_acceptance.py): no torch, no processes.

A check is a function that fills a `Check` record: figures (what it measured) and
criteria (named pass/fail tests of those figures). `run_check` runs one under its
own time budget and never lets it stop the others: a check that raises `Skip` is
skipped (it needs something this machine lacks), one that runs past its budget
(`BudgetExceeded`, or a child's `subprocess.TimeoutExpired`) times out, one that
raises anything else is an error; otherwise it passes when it tested at least one
criterion and every criterion held, and it fails past its budget even if they held.
A check that finds too little of the run's overall time left is skipped for time
without starting. The figures gathered before a timeout or an error stay in the report.

The number checks below are the criteria's arithmetic, kept here so they are tested
on a machine without a GPU.
"""

from __future__ import annotations

import math
import re
import statistics
import subprocess
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

MIB = 1024 * 1024

# The estimator's memory target (docs/estimator.md, ANCHORS.md): within +-10%, never more than 5% under.
MEMORY_UNDER_PCT = -5.0
MEMORY_OVER_PCT = 10.0
OVERHEAD_GOAL = 0.98  # tokens/s with events and health on / off
MFU_GOAL = 0.50  # GPT-2 124M on one GPU (a goal reported beside the checks, not a criterion)
LOSS_CONTINUE_TOL = 0.15  # resumed losses may sit at most 15% above those before the stop


class Skip(Exception):
    """The check cannot run here (no GPU, no nvidia-smi, ...): reported as skipped with the reason."""


class BudgetExceeded(Exception):
    """The check's time budget ran out."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or Ctrl-C) reached the run: the check in progress ends, the report is written."""


# A check starts only with this much of the run's overall time left (or its whole budget).
MIN_START_S = 15.0


class Budget:
    """A deadline: `timeout()` is the time a child may still take, BudgetExceeded once none is left."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self.deadline = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self.deadline - self.clock())

    def timeout(self) -> float:
        """Seconds left; BudgetExceeded when there are none."""
        left = self.remaining()
        if left <= 0:
            raise BudgetExceeded(f"budget of {self.seconds:g} s spent")
        return left


@dataclass
class Check:
    """One numbered check of the acceptance run: its budget, what it measured and what it tested."""

    key: str
    title: str
    budget_s: float
    status: str = "pending"  # pass | fail | skip | timeout | error | interrupted | running
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    criteria: list[tuple[str, bool]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    for_time: bool = False  # skipped because the run's overall time was spent

    def fig(self, name: str, value: Any) -> Any:
        self.figures[name] = value
        return value

    def expect(self, ok: bool, what: str) -> bool:
        """Record a criterion (`what` says what was required, with the figures)."""
        self.criteria.append((what, bool(ok)))
        return bool(ok)

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def word(self) -> str:
        """The result as the report's table shows it: PASS, FAILED (timeout), SKIPPED (time), ..."""
        word = STATUS_WORD.get(self.status, self.status)
        return f"{word} (time)" if self.status == "skip" and self.for_time else word

    @property
    def reason(self) -> str:
        """Why it did not pass, in one line: the first failed criterion, else the first note."""
        if self.status in ("pass", "pending"):
            return ""
        failed = [what for what, ok in self.criteria if not ok]
        text = failed[0] if failed and self.status == "fail" else (self.notes or failed or [""])[0]
        return text if len(text) <= 140 else text[:139] + "…"


def _status_from_criteria(check: Check) -> str:
    if not check.criteria:
        check.note("no criterion was tested")
        return "fail"
    return "pass" if all(ok for _, ok in check.criteria) else "fail"


def _timeout_text(exc: Exception) -> str:
    """What ran out of time, in one short line (a child's argv can hold a whole preset)."""
    if isinstance(exc, subprocess.TimeoutExpired):
        argv = [exc.cmd] if isinstance(exc.cmd, str) else [str(a) for a in exc.cmd]
        shown = " ".join(a for a in argv[1:4] if len(a) < 60) or argv[0][:60]
        return f"the child `{shown} ...` was killed after {exc.timeout:.0f} s"
    return str(exc)


def run_check(
    check: Check,
    body: Callable[[Check, Budget], None],
    *,
    overall: Budget | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Check:
    """Run `body(check, budget)` under the smaller of the check's budget and what `overall` has
    left; set the status and the time taken. Never raises (but KeyboardInterrupt: `Interrupted`
    marks the check interrupted and is raised on, so the caller writes the report and stops)."""
    left = math.inf if overall is None else overall.remaining()
    if left < min(check.budget_s, MIN_START_S):
        check.status, check.for_time = "skip", True
        check.note(f"not started: {left:.0f} s of the run's overall time left")
        return check
    seconds = min(check.budget_s, left)
    budget = Budget(seconds, clock)
    start = clock()
    try:
        body(check, budget)
        check.status = _status_from_criteria(check)
    except Skip as exc:
        check.status = "skip"
        check.note(str(exc))
    except (BudgetExceeded, subprocess.TimeoutExpired) as exc:
        check.status = "timeout"
        cut = " (cut short by the run's overall deadline)" if seconds < check.budget_s else ""
        check.note(f"stopped after {clock() - start:.0f} s{cut}: {_timeout_text(exc)}")
    except KeyboardInterrupt as exc:
        check.status = "interrupted"
        check.note(f"interrupted after {clock() - start:.0f} s ({exc or 'SIGINT'})")
        check.seconds = clock() - start
        raise
    except Exception as exc:  # a failing check must not stop the others
        check.status = "error"
        where = traceback.extract_tb(exc.__traceback__)[-1]
        check.note(f"{type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno})")
    check.seconds = clock() - start
    if check.status == "pass" and check.seconds > check.budget_s:
        check.status = "fail"
        check.note(f"took {check.seconds:.0f} s, over its budget of {check.budget_s:g} s")
    return check


# --------------------------------------------------------------------------- number checks


def pct_error(predicted: float, measured: float) -> float:
    """Signed error of a prediction in percent of the measurement: + is an over-estimate."""
    if measured <= 0:
        raise ValueError(f"measured value must be positive, got {measured}")
    return 100.0 * (predicted - measured) / measured


def memory_error_ok(err_pct: float) -> bool:
    """The estimator's target: never more than 5% under, at most 10% over."""
    return MEMORY_UNDER_PCT <= err_pct <= MEMORY_OVER_PCT


def finite(values: Iterable[float | None]) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def loss_falling(losses: Sequence[float], frac: float = 0.1) -> tuple[float, float, bool]:
    """(mean of the first `frac` of the losses, mean of the last `frac`, finite and falling)."""
    if len(losses) < 2:
        return (math.nan, math.nan, False)
    k = max(1, int(len(losses) * frac))
    first, last = statistics.fmean(losses[:k]), statistics.fmean(losses[-k:])
    return first, last, finite(losses) and last < first


def steady(values: Sequence[float], skip_frac: float = 0.2) -> list[float]:
    """The values after the first `skip_frac` of them (warm-up, compilation)."""
    return list(values[int(len(values) * skip_frac) :]) or list(values)


def median_or_none(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def close(a: float, b: float, rel: float) -> bool:
    """|a - b| within `rel` of the larger magnitude."""
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-30)


def at_least(value: float | None, goal: float) -> bool:
    return value is not None and value >= goal


def steps_of(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("event") == "step"]


def warnings_of(records: Iterable[dict[str, Any]], rule: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("event") == "warning" and r.get("rule") == rule]


def end_of(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    ends = [r for r in records if r.get("event") == "end"]
    return ends[-1] if ends else {}


def scaler_recovery(steps: Sequence[dict[str, Any]], bad_step: int) -> dict[str, Any]:
    """What the GradScaler did about an inf/NaN injected at `bad_step`: skipped it, then trained on."""
    by_step = {s["step"]: s for s in steps}
    bad = by_step.get(bad_step, {})
    after = [s for s in steps if s["step"] > bad_step]
    skipped_after = [s["step"] for s in after if s.get("scaler_skipped")]
    before = [s["loss"] for s in steps if s["step"] < bad_step][-5:]
    later = [s["loss"] for s in after][-5:]
    return {
        "skipped_at_bad_step": bool(bad.get("scaler_skipped")),
        "steps_after": len(after),
        "skips_after": skipped_after,
        "losses_finite_after": finite(s.get("loss") for s in after) and bool(after),
        "loss_before": statistics.fmean(before) if before else math.nan,
        "loss_end": statistics.fmean(later) if later else math.nan,
    }


def scaler_recovered(r: dict[str, Any]) -> bool:
    """Skipped the bad step, finite afterwards, at most one more skip (the scale growing back),
    and the loss at the end no higher than before the fault."""
    return (
        r["skipped_at_bad_step"]
        and r["losses_finite_after"]
        and len(r["skips_after"]) <= 1
        and r["loss_end"] <= r["loss_before"] * 1.05
    )


def tokens_per_step(steps: Sequence[dict[str, Any]]) -> list[float]:
    """Each step record's tokens (the records carry the run's cumulative count) per step since the last."""
    out, prev_step, prev_tokens = [], 0, 0
    for s in steps:
        if s.get("tokens") is None or s["step"] <= prev_step:
            continue
        out.append((s["tokens"] - prev_tokens) / (s["step"] - prev_step))
        prev_step, prev_tokens = s["step"], s["tokens"]
    return out


def oom_retry_result(records: Sequence[dict[str, Any]], batch: int) -> dict[str, Any]:
    """What an out-of-memory retry did: the warnings, the split after it, the tokens per step."""
    warns = warnings_of(records, "oom")
    steps = steps_of(records)
    new = [w.get("evidence", {}).get("new_batch_size") for w in warns]
    splits = sorted({(s.get("micro_batch"), s.get("grad_accum")) for s in steps})
    tokens = sorted(set(tokens_per_step(steps)))
    return {
        "oom_warnings": len(warns),
        "new_micro_batches": new,
        "splits": splits,
        "sequences_per_step": sorted({(m or 0) * (a or 0) for m, a in splits}),
        "tokens_per_step": tokens,
        "steps": len(steps),
        "end_reason": end_of(records).get("reason"),
        "batch": batch,
    }


def oom_retried(r: dict[str, Any]) -> bool:
    """At least one halving, every step ran below the first micro-batch with at least as many
    sequences, one token count for all steps, and the run finished."""
    return (
        r["oom_warnings"] >= 1
        and all(n is not None and n < r["batch"] for n in r["new_micro_batches"])
        and bool(r["splits"])
        and all(m is not None and m < r["batch"] for m, _ in r["splits"])
        and all(n >= r["batch"] for n in r["sequences_per_step"])
        and len(r["tokens_per_step"]) == 1
        and r["end_reason"] == "finished"
    )


def resume_continuity(
    before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]], window: int = 5
) -> dict[str, Any]:
    """How a resumed run's first steps compare with the steps before its stop."""
    last = before[-1]["step"] if before else None
    first = after[0]["step"] if after else None
    loss_before = statistics.fmean(s["loss"] for s in before[-window:]) if before else math.nan
    loss_after = statistics.fmean(s["loss"] for s in after[:window]) if after else math.nan
    return {
        "stopped_at": last,
        "resumed_at": first,
        "loss_before": loss_before,
        "loss_after": loss_after,
    }


def losses_continue(r: dict[str, Any], tol: float = LOSS_CONTINUE_TOL) -> bool:
    """The resumed run starts right after the stop and its loss carries on (no restart from scratch)."""
    return (
        r["stopped_at"] is not None
        and r["resumed_at"] is not None
        and r["resumed_at"] == r["stopped_at"] + 1
        and math.isfinite(r["loss_after"])
        and r["loss_after"] <= r["loss_before"] * (1 + tol)
    )


# --------------------------------------------------------------------------- NVML vs nvidia-smi

SMI_FIELDS = (
    "name",
    "memory.used",
    "memory.total",
    "utilization.gpu",
    "temperature.gpu",
    "power.draw",
)


def parse_smi_line(line: str) -> dict[str, Any]:
    """One line of `nvidia-smi --query-gpu=<SMI_FIELDS> --format=csv,noheader,nounits`."""
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != len(SMI_FIELDS):
        raise ValueError(f"expected {len(SMI_FIELDS)} fields from nvidia-smi, got {line!r}")

    def number(text: str) -> float | None:
        try:
            return float(text)
        except ValueError:
            return None  # "[N/A]", "[Not Supported]"

    return {
        "name": parts[0],
        "memory_used_mib": number(parts[1]),
        "memory_total_mib": number(parts[2]),
        "utilization": number(parts[3]),
        "temperature_c": number(parts[4]),
        "power_w": number(parts[5]),
    }


# field: (ours in the smi unit, tolerance as (absolute, relative)); either bound suffices
NVML_TOLERANCE = {
    "memory_used_mib": (64.0, 0.02),
    "memory_total_mib": (1.0, 0.0),
    "utilization": (15.0, 0.0),
    "temperature_c": (2.0, 0.0),
    "power_w": (15.0, 0.10),
}


def nvml_comparison(ours: dict[str, Any], smi: dict[str, Any]) -> list[tuple[str, Any, Any, bool]]:
    """(field, ours, nvidia-smi's, agree) for every field both report; a field nvidia-smi does
    not support is left out, one we lack where it has a value disagrees."""
    rows = []
    for name, (absolute, relative) in NVML_TOLERANCE.items():
        theirs, mine = smi.get(name), ours.get(name)
        if theirs is None:
            continue
        ok = mine is not None and (
            abs(mine - theirs) <= absolute or abs(mine - theirs) <= relative * abs(theirs)
        )
        rows.append((name, mine, theirs, ok))
    return rows


# --------------------------------------------------------------------------- the report

STATUS_WORD = {
    "pass": "PASS",
    "fail": "FAILED",
    "skip": "SKIPPED",
    "timeout": "FAILED (timeout)",
    "error": "FAILED (error)",
    "interrupted": "FAILED (interrupted)",
    "running": "NOT FINISHED (the run stopped during it)",
    "pending": "not run",
}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def report_path(results_dir: Path, device_name: str, day: date | None = None) -> Path:
    """bench/results/<gpu>-<date>.md, e.g. nvidia-h100-80gb-hbm3-2026-11-22.md."""
    return results_dir / f"{slug(device_name)}-{(day or date.today()).isoformat()}.md"


def format_value(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10000:
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def check_section(check: Check) -> list[str]:
    lines = [
        f"## {check.key}. {check.title}: {check.word}",
        "",
        f"{check.seconds:.0f} s of a {check.budget_s:g} s budget.",
        "",
    ]
    if check.criteria:
        lines += [f"- [{'x' if ok else ' '}] {what}" for what, ok in check.criteria] + [""]
    if check.figures:
        lines += ["| figure | value |", "| --- | --- |"]
        lines += [
            f"| {name} | {format_value(value).replace('|', '/')} |"
            for name, value in check.figures.items()
        ]
        lines.append("")
    lines += [f"Note: {n}" for n in check.notes]
    if check.notes:
        lines.append("")
    return lines


def render_report(checks: Sequence[Check], meta: dict[str, Any]) -> str:
    """The markdown report: the machine, a summary line per check, then each check in full."""
    lines = [
        f"# GPU acceptance run: {meta.get('device', 'unknown device')}, {meta.get('date', '')}"
    ]
    lines.append("")
    lines += [f"- {k}: {format_value(v)}" for k, v in meta.items() if k not in ("device", "date")]
    lines += [
        "",
        "| check | result | seconds | budget | reason |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for c in checks:
        lines.append(
            f"| {c.key}. {c.title} | {c.word} | {c.seconds:.0f} | {c.budget_s:g} | {c.reason.replace('|', '/')} |"
        )
    passed = sum(c.status == "pass" for c in checks)
    skipped = sum(c.status == "skip" for c in checks)
    failed = len(checks) - passed - skipped
    lines += ["", f"{passed} of {len(checks)} passed, {failed} failed, {skipped} skipped.", ""]
    for c in checks:
        lines += check_section(c)
    return "\n".join(lines).rstrip() + "\n"


def write_report(path: Path, checks: Sequence[Check], meta: dict[str, Any]) -> None:
    """Write the report whole or not at all (a run killed mid-write keeps the last one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render_report(checks, meta), encoding="utf-8")
    tmp.replace(path)


def exit_code(checks: Sequence[Check]) -> int:
    """0 when no check failed, timed out or erred (skips are fine), else 1."""
    return 0 if all(c.status in ("pass", "skip") for c in checks) else 1
