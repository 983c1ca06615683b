"""The learning rate: stuck at 0 (lr_zero), above the preset's max (lr_above_max), off the
preset's schedule (lr_schedule). The expected lr is cockpit.plan.schedule.lr_at, the trainer's own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cockpit.common.format import fmt_float
from cockpit.health.base import Family, HealthWarning, Rule, StepPoint, finite, round_sig
from cockpit.plan.schedule import lr_at, time_warmdown

LR_ZERO = Rule(
    "lr_zero",
    "The learning rate is 0, so nothing is learnt: check train.lr, train.schedule and "
    "train.warmdown_steps (longer than the run?), and rollback_lr_factor after many rollbacks.",
)
LR_ABOVE_MAX = Rule(
    "lr_above_max",
    "The learning rate is above the preset's train.lr: check the schedule and any "
    "lr overrides; peaks above the tuned lr cause loss spikes.",
)
LR_SCHEDULE = Rule(
    "lr_schedule",
    "The learning rate does not follow the preset's schedule: check train.schedule, "
    "warmup_steps, warmdown_steps and max_steps (a resumed run with a changed max_steps?).",
)


@dataclass(frozen=True)
class LrThresholds:
    lr_zero_patience: int = 10  # consecutive points at lr 0 where the schedule expects more
    lr_rel_tol: float = 0.05  # relative tolerance against the max and the schedule
    lr_abs_tol_frac: float = 1e-3  # absolute tolerance as a fraction of the peak lr (near-zero lrs)
    lr_schedule_patience: int = 3  # consecutive mismatching points before lr_schedule fires


class Lr(Family):
    """Finite lrs only. Without a preset only lr_zero applies (any lr but 0 is fine).

    `step` events count completed steps from 1 and the trainer's schedule counts
    from 0, so the expected lr is the band of the scheduled lrs of steps step-1..step+1.
    An lr scaled by the trainer's `lr_scale`, or by any power of rollback_lr_factor
    up to max_rollbacks, is on schedule. Keeps ctx.last_lr and ctx.peak_lr.
    """

    name = "lr"
    rules = (LR_ZERO, LR_ABOVE_MAX, LR_SCHEDULE)
    Thresholds = LrThresholds
    t: LrThresholds

    def reset(self) -> None:
        self.zero_streak = 0
        self.bad_streak = 0
        self.ctx.last_lr = None
        self.ctx.peak_lr = 0.0
        train = self.ctx.train
        factor = float(getattr(train, "rollback_lr_factor", 1.0))
        # every power of rollback_lr_factor a rollback may have applied
        self.rollback_scales = {
            factor**k for k in range(int(getattr(train, "max_rollbacks", 0)) + 1)
        }

    def on_step(self, out: list[HealthWarning], point: StepPoint) -> None:
        step, lr, lr_scale = point.step, point.lr, point.lr_scale
        if not finite(lr):
            return
        lr = float(lr)
        ctx = self.ctx
        ctx.last_lr = lr
        ctx.peak_lr = max(ctx.peak_lr, lr)
        train = ctx.train
        peak = float(train.lr) if train is not None else ctx.peak_lr
        abs_tol = self.t.lr_abs_tol_frac * peak
        band = self._expected_band(step) if train is not None else None
        self._zero(out, step, lr, band, abs_tol)
        if train is None:
            return
        if lr > peak * (1 + self.t.lr_rel_tol) + abs_tol:
            self._above_max(out, step, lr, peak)
            self.bad_streak = 0
        elif self.zero_streak or self._matches(lr, band, lr_scale, abs_tol):
            self.bad_streak = 0
        else:
            self.bad_streak += 1
            if self.bad_streak >= self.t.lr_schedule_patience:
                self._off_schedule(out, step, lr, lr_scale)

    def _expected_band(self, step: int) -> tuple[float, float]:
        """Lowest and highest scheduled lr over steps step-1..step+1 (0- vs 1-based counting)."""
        train = self.ctx.train
        values = (lr_at(step - 1, train), lr_at(step, train), lr_at(step + 1, train))
        return min(values), max(values)

    def _matches(
        self, lr: float, band: tuple[float, float] | None, lr_scale: float, abs_tol: float
    ) -> bool:
        if band is None:
            return True
        lo, hi = band
        if time_warmdown(self.ctx.train):
            lo = 0.0  # a wall-clock warmdown may lower the lr below the step schedule at any step
        tol = self.t.lr_rel_tol
        for scale in self.rollback_scales | {float(lr_scale)}:
            if lo * scale * (1 - tol) - abs_tol <= lr <= hi * scale * (1 + tol) + abs_tol:
                return True
        return False

    def _zero(
        self,
        out: list[HealthWarning],
        step: int,
        lr: float,
        band: tuple[float, float] | None,
        abs_tol: float,
    ) -> None:
        """lr 0 for long, outside the points where the schedule itself is at zero."""
        expects_zero = band is not None and band[0] <= abs_tol
        self.zero_streak = self.zero_streak + 1 if lr <= 0.0 and not expects_zero else 0
        n = self.zero_streak
        if n < self.t.lr_zero_patience:
            return
        message = f"learning rate has been 0 for {n} points (since step {step - n + 1} or earlier)"
        evidence = {
            "lr": lr,
            "zero_points": n,
            "expected_lr": round_sig(band[1]) if band else None,
        }
        self.ctx.emit(out, LR_ZERO.warning(step, message, evidence))

    def _above_max(self, out: list[HealthWarning], step: int, lr: float, peak: float) -> None:
        message = (
            f"learning rate {lr:.4g} at step {step} is above the preset's max {peak:.4g} "
            f"({fmt_float(lr / peak, '.2f')}x)"
        )
        evidence = {"lr": round_sig(lr), "max_lr": peak, "ratio": round_sig(lr / peak, 4)}
        self.ctx.emit(out, LR_ABOVE_MAX.warning(step, message, evidence), lr / peak)

    def _off_schedule(
        self, out: list[HealthWarning], step: int, lr: float, lr_scale: float
    ) -> None:
        train = self.ctx.train
        expected = lr_at(step, train)
        message = (
            f"learning rate {lr:.4g} at step {step} does not follow the {train.schedule} schedule "
            f"(expected about {expected:.4g}) for {self.bad_streak} points"
        )
        evidence = {
            "lr": round_sig(lr),
            "expected_lr": round_sig(expected),
            "schedule": train.schedule,
            "lr_scale": lr_scale,
            "mismatch_points": self.bad_streak,
        }
        self.ctx.emit(out, LR_SCHEDULE.warning(step, message, evidence))

    def went_back(self, step: int) -> None:
        self.zero_streak = self.bad_streak = 0

    def state(self) -> dict[str, Any]:
        return {
            "lr_zero_streak": self.zero_streak,
            "lr_bad_streak": self.bad_streak,
            "peak_lr": self.ctx.peak_lr,
            "last_lr": self.ctx.last_lr,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.zero_streak = int(state.get("lr_zero_streak", 0))
        self.bad_streak = int(state.get("lr_bad_streak", 0))
        self.ctx.peak_lr = float(state.get("peak_lr", 0.0))
        self.ctx.last_lr = state.get("last_lr")
