"""What the health monitor is built from: warnings, thresholds, tips, the expected lr, small statistics.

Pure Python, no torch or numpy. cockpit.health re-exports the public names.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("info", "warning", "critical")
RULES = (
    "nonfinite",
    "loss_spike",
    "grad_spikes",
    "grad_variability",
    "val_plateau",
    "val_rising",
    "overfitting",
    "lr_zero",
    "lr_above_max",
    "lr_schedule",
    "throughput_drop",
    "vram_near_limit",
    "stalled",
    "scaler_skips",
    "oom",
)
# Rules that trigger the preset's train.on_anomaly response (warn / halt / rollback).
ANOMALY_RULES = frozenset({"nonfinite", "loss_spike"})

STATE_VERSION = 2


@dataclass
class HealthWarning:
    """One finding: which rule, how bad, where, what happened, what to do, and the numbers."""

    rule: str
    severity: str  # info | warning | critical
    step: int  # the step the problem starts at (a spike's first point, not where it was confirmed)
    message: str
    tip: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def is_anomaly(self) -> bool:
        """True for the rules that trigger train.on_anomaly (non-finite values, loss spikes)."""
        return self.rule in ANOMALY_RULES

    def to_event_fields(self) -> dict[str, Any]:
        """The fields of a `warning` event (the writer adds event, time and step)."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "tip": self.tip,
            "evidence": dict(self.evidence),
        }

    @classmethod
    def from_event(cls, record: dict[str, Any]) -> HealthWarning:
        """Rebuild a warning from a `warning` event record (missing fields read as empty)."""
        evidence = record.get("evidence")
        return cls(
            rule=str(record.get("rule", "")),
            severity=str(record.get("severity", "warning")),
            step=int(step) if _finite(step := record.get("step")) else 0,
            message=str(record.get("message", "")),
            tip=str(record.get("tip", "")),
            evidence=dict(evidence) if isinstance(evidence, dict) else {},
        )


@dataclass
class HealthConfig:
    """Thresholds of every rule; counts are observed points (steps or read-backs), not steps."""

    # loss spikes
    loss_window: int = 50  # points of recent loss history the spike test compares against
    loss_min_history: int = 20  # no spike alarm before this many finite points (window warm-up)
    loss_spike_sigma: float = (
        6.0  # a point this many standard deviations above the window mean is a spike
    )
    loss_spike_ratio: float = 2.0  # ... or a point this many times the window mean
    loss_spike_patience: int = (
        2  # consecutive spike points before the alarm (one noisy step is not one)
    )
    loss_huge_sigma: float = 12.0  # a single point this far above fires at once
    loss_huge_ratio: float = 3.0  # ... or a single point this many times the mean
    loss_sigma_floor_rel: float = (
        0.01  # sigma is at least this fraction of |mean| (near-constant series)
    )
    loss_exit_sigma: float = (
        3.0  # a reported spike lasts until the loss is back within this many sigma ...
    )
    loss_exit_ratio: float = 1.5  # ... and below this many times the mean (one warning per episode)
    # grad norm
    grad_window: int = 50  # points of grad-norm history (median reference and spike count window)
    grad_min_history: int = 20  # no grad rule before this many finite points
    grad_spike_ratio: float = 3.0  # a grad norm this many times the window median is a spike
    grad_spike_count: int = 3  # this many spikes within the window fires grad_spikes
    grad_var_window: int = 30  # consecutive step-to-step ratios in the variability test
    grad_var_log_ratio: float = (
        0.7  # median |ln(g_t / g_t-1)| above this fires: half the steps move by 2x or more
    )
    # fp16 GradScaler
    scaler_skip_streak: int = 5  # consecutive skipped optimizer steps before the alarm
    # validation
    val_plateau_evals: int = 4  # evals without a new best before a plateau is reported
    val_min_improvement: float = 0.002  # relative improvement that counts as a new best (0.2%)
    val_plateau_lr_frac: float = 0.5  # ... only while lr is at least this fraction of the peak lr
    val_rising_evals: int = 3  # consecutive evals each above the previous one
    overfit_evals: int = 3  # consecutive evals with a widening train/val gap
    overfit_min_gap_rel: float = (
        0.05  # ... ending with val above train by at least this fraction of val
    )
    # learning rate
    lr_zero_patience: int = 10  # consecutive points at lr 0 where the schedule expects more
    lr_rel_tol: float = 0.05  # relative tolerance against the max and the schedule
    lr_abs_tol_frac: float = 1e-3  # absolute tolerance as a fraction of the peak lr (near-zero lrs)
    lr_schedule_patience: int = 3  # consecutive mismatching points before lr_schedule fires
    # throughput
    tps_window: int = 50  # points of tokens/s history for the median
    tps_min_history: int = (
        30  # no throughput alarm before this many points (start-up steps are noisy)
    )
    tps_drop_frac: float = 0.5  # tokens/s below this fraction of the median counts as a drop
    tps_patience: int = (
        5  # consecutive dropped points before the alarm (a checkpoint write is one or two)
    )
    # memory
    vram_margin: float = 0.05  # warn when usage is within this fraction of the GPU's memory
    # stalled
    stall_factor: float = 10.0  # silence longer than this many typical event intervals
    stall_min_s: float = 60.0  # ... and at least this many seconds
    # de-duplication
    cooldown_steps: int = 200  # a rule does not re-fire within this many steps ...
    refire_worse: float = 1.5  # ... unless its measure got this many times worse


# --------------------------------------------------------------------------- pure helpers


def scheduled_lr(train: Any, step: int) -> float:
    """The learning rate the preset's schedule gives optimizer step `step` (0-based), before any lr scale.

    The same meaning as the trainer's schedule (presets.py documents it): linear
    warmup lr * (step+1) / (warmup_steps+1) (nanoGPT), then cosine from lr to
    min_lr at max_steps; or flat lr and a linear decay to 0 over the last
    warmdown_steps; or flat lr. `step` events count completed steps from 1, so an
    event's lr is scheduled_lr(step - 1); the monitor allows one step either way.
    """
    peak = float(train.lr)
    warmup = int(train.warmup_steps)
    max_steps = int(train.max_steps)
    if step < 0:
        return 0.0
    if step < warmup:
        return peak * (step + 1) / (warmup + 1)
    if train.schedule == "cosine":
        if step >= max_steps:
            return float(train.min_lr)
        ratio = (step - warmup) / max(1, max_steps - warmup)
        return float(train.min_lr) + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (
            peak - float(train.min_lr)
        )
    if train.schedule == "warmdown":
        if step >= max_steps:
            return 0.0
        warmdown = int(train.warmdown_steps)
        if warmdown > 0 and step >= max_steps - warmdown:
            return peak * (max_steps - step) / warmdown
        return peak
    return peak


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _num(value: Any) -> float | None:
    """A float from an event field, or None (non-numbers and booleans read as missing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _mean_std(values: Any) -> tuple[float, float]:
    """Mean and population standard deviation (plain floats: statistics' exact arithmetic is 10x slower)."""
    n = len(values)
    mean = sum(values) / n  # plain sums: absurd magnitudes give inf here, never an OverflowError
    return mean, math.sqrt(sum((x - mean) * (x - mean) for x in values) / n)


def _median(values: Any) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def _round(value: float, digits: int = 6) -> float:
    return float(f"{value:.{digits}g}") if math.isfinite(value) else value


# Tips in the spirit of the GPT-2 recipe's tuning tips.
TIPS = {
    "nonfinite": "Reduce train.lr or raise train.warmup_steps; keep train.grad_clip at 1.0; "
    "if fp16 overflows, use bf16 (train.dtype=bf16) where the GPU has it.",
    "loss_spike": "Loss spikes: reduce train.lr (try half) or increase train.warmup_steps; "
    "keep train.grad_clip at 1.0. train.on_anomaly=rollback recovers automatically.",
    "grad_spikes": "Repeated grad-norm spikes: reduce train.lr or increase train.warmup_steps; "
    "keep train.grad_clip at 1.0 (it prevents rare spikes from doing damage).",
    "grad_variability": "Grad norm oscillates between steps: reduce train.lr, or raise the batch "
    "(train.grad_accum) for less noisy gradients; a variant that does this: simplify it.",
    "scaler_skips": "The fp16 GradScaler keeps skipping steps (gradients overflow): use bf16 where "
    "fp16 overflows (train.dtype=bf16), or reduce train.lr.",
    "val_plateau": "Validation loss plateaued early while lr is still high: if the train loss is "
    "flat too, raise train.lr carefully (slow convergence) or grow the model; if it still falls, "
    "the model memorises: more data or dropout.",
    "val_rising": "Validation loss keeps rising: stop at the best checkpoint (best.pt), then train "
    "with more data, model.dropout, train.weight_decay, fewer steps or a lower train.lr.",
    "overfitting": "Train/val gap widening (overfitting a small corpus): more data, model.dropout "
    "(0.1-0.2), fewer train.max_steps, or more train.weight_decay.",
    "lr_zero": "The learning rate is 0, so nothing is learnt: check train.lr, train.schedule and "
    "train.warmdown_steps (longer than the run?), and rollback_lr_factor after many rollbacks.",
    "lr_above_max": "The learning rate is above the preset's train.lr: check the schedule and any "
    "lr overrides; peaks above the tuned lr cause loss spikes.",
    "lr_schedule": "The learning rate does not follow the preset's schedule: check train.schedule, "
    "warmup_steps, warmdown_steps and max_steps (a resumed run with a changed max_steps?).",
    "throughput_drop": "Tokens/s fell well below this run's own median: another process on the GPU, "
    "thermal or power throttling, a slow data source, or swapping; check `gpt-cockpit gpus`.",
    "vram_near_limit": "Close to running out of GPU memory: lower train.batch_size and raise "
    "train.grad_accum to keep tokens per step, or turn on train.activation_checkpointing.",
    "stalled": "The run stopped writing events: check `gpt-cockpit runs` (a dead process reads as "
    "crashed) and the run's console.log; a hung data source or a full disk also stop it.",
    "oom": "Out of GPU memory: reduce the batch size (train.batch_size) and raise train.grad_accum "
    "to keep tokens per step; train.activation_checkpointing or a shorter block_size also help.",
}


def oom_warning(
    step: int,
    *,
    batch_size: int,
    grad_accum: int,
    new_batch_size: int | None = None,
    new_grad_accum: int | None = None,
) -> HealthWarning:
    """The warning the trainer writes on CUDA OOM: a retry at a smaller micro-batch, or the final stop."""
    evidence: dict[str, Any] = {"batch_size": batch_size, "grad_accum": grad_accum}
    if new_batch_size:
        evidence.update(new_batch_size=new_batch_size, new_grad_accum=new_grad_accum)
        message = (
            f"CUDA out of memory at micro-batch {batch_size}; retrying with micro-batch "
            f"{new_batch_size} x {new_grad_accum} accumulation (same tokens per step)"
        )
        severity = "warning"
    else:
        message = f"CUDA out of memory at micro-batch {batch_size}; nothing smaller to retry with"
        severity = "critical"
    return HealthWarning("oom", severity, int(step), message, TIPS["oom"], evidence)


# --------------------------------------------------------------------------- the monitor


def _window(values: Iterable[Any], maxlen: int) -> deque:
    return deque(values, maxlen=max(1, maxlen))


class _Series:
    """A bounded window of (step, value) points; `values` is what the statistics read."""

    __slots__ = ("steps", "values")

    def __init__(self, maxlen: int, state: Any = None) -> None:
        steps, values = state if isinstance(state, list) and len(state) == 2 else ((), ())
        self.steps: deque = _window((int(x) for x in steps), maxlen)
        self.values: deque = _window((float(x) for x in values), maxlen)

    def __len__(self) -> int:
        return len(self.values)

    def append(self, step: int, value: float) -> None:
        self.steps.append(step)
        self.values.append(value)

    def drop_from(self, step: int) -> None:
        """Forget the points at `step` and after (they are about to be trained again)."""
        while self.steps and self.steps[-1] >= step:
            self.steps.pop()
            self.values.pop()

    def state(self) -> list[list]:
        return [list(self.steps), list(self.values)]
