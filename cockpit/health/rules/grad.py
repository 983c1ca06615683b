"""Grad-norm spikes (grad_spikes) and a grad norm that swings from step to step (grad_variability)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cockpit.common.format import fmt_float
from cockpit.health.base import (
    Family,
    HealthWarning,
    Rule,
    Series,
    StepPoint,
    finite,
    median,
    round_sig,
)

GRAD_SPIKES = Rule(
    "grad_spikes",
    "Repeated grad-norm spikes: reduce train.lr or increase train.warmup_steps; "
    "keep train.grad_clip at 1.0 (it prevents rare spikes from doing damage).",
)
GRAD_VARIABILITY = Rule(
    "grad_variability",
    "Grad norm oscillates between steps: reduce train.lr, or raise the batch "
    "(train.grad_accum) for less noisy gradients; a variant that does this: simplify it.",
)


@dataclass(frozen=True)
class GradThresholds:
    grad_window: int = 50  # points of grad-norm history (median reference and spike count window)
    grad_min_history: int = 20  # no grad rule before this many finite points
    grad_spike_ratio: float = 3.0  # a grad norm this many times the window median is a spike
    grad_spike_count: int = 3  # this many spikes within the window fires grad_spikes
    grad_var_window: int = 30  # consecutive step-to-step ratios in the variability test
    grad_var_log_ratio: float = 0.7  # median |ln(g_t / g_t-1)| above this fires: 2x swings


class Grad(Family):
    """The grad norm of steps the fp16 GradScaler did not skip, finite points only."""

    name = "grad"
    rules = (GRAD_SPIKES, GRAD_VARIABILITY)
    Thresholds = GradThresholds
    t: GradThresholds

    def reset(self) -> None:
        self.norms = Series(self.t.grad_window)
        self.flags = Series(self.t.grad_window)  # 1 for a spike point, 0 otherwise
        self.log_ratios = Series(self.t.grad_var_window)
        self.last: float | None = None

    def on_step(self, out: list[HealthWarning], point: StepPoint) -> None:
        step, grad_norm, skipped = point.step, point.grad_norm, point.scaler_skipped
        if skipped or not finite(grad_norm):
            return
        grad = float(grad_norm)
        if self.last is not None and self.last > 0 and grad > 0:
            # a difference of logs: a quotient of extreme norms can overflow to inf or underflow to 0
            self.log_ratios.append(step, math.log(grad) - math.log(self.last))
        self.last = grad
        if len(self.norms) < self.t.grad_min_history:
            self.norms.append(step, grad)
            self.flags.append(step, 0)
            return
        self._spikes(out, step, grad)
        self._variability(out, step)

    def _spikes(self, out: list[HealthWarning], step: int, grad: float) -> None:
        mid = median(self.norms.values)
        spike = mid > 0 and grad > self.t.grad_spike_ratio * mid
        self.flags.append(step, 1 if spike else 0)
        self.norms.append(step, grad)  # the median shrugs off a few spikes, follows a new level
        count = int(sum(self.flags.values))
        if not (spike and count >= self.t.grad_spike_count):
            return
        message = (
            f"{count} grad-norm spikes in the last {len(self.flags)} points; latest {grad:.4g} "
            f"is {fmt_float(grad / mid, '.1f')}x the median {mid:.4g}"
        )
        evidence = {
            "spikes": count,
            "window_points": len(self.flags),
            "grad_norm": round_sig(grad),
            "median": round_sig(mid),
            "ratio": round_sig(grad / mid, 4),
        }
        self.ctx.emit(out, GRAD_SPIKES.warning(step, message, evidence))

    def _variability(self, out: list[HealthWarning], step: int) -> None:
        ratios = self.log_ratios
        if len(ratios) < self.t.grad_var_window:
            return
        # The median ignores a few isolated spikes (grad_spikes' job); it moves only when most steps swing.
        spread = median([abs(r) for r in ratios.values])
        if not spread > self.t.grad_var_log_ratio:
            return
        factor = math.exp(spread)
        message = (
            f"grad norm oscillates: consecutive points differ by a median factor of {fmt_float(factor, '.2f')}x "
            f"over the last {len(ratios)} points"
        )
        evidence = {
            "median_abs_log_ratio": round_sig(spread, 4),
            "typical_factor": round_sig(factor, 4),
            "window_points": len(ratios),
        }
        self.ctx.emit(out, GRAD_VARIABILITY.warning(step, message, evidence), spread)

    def went_back(self, step: int) -> None:
        for series in (self.norms, self.flags, self.log_ratios):
            series.drop_from(step)
        self.last = None

    def state(self) -> dict[str, Any]:
        return {
            "grad": self.norms.state(),
            "grad_flags": self.flags.state(),
            "grad_log_ratios": self.log_ratios.state(),
            "last_grad": self.last,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.norms = Series(self.t.grad_window, state.get("grad"))
        self.flags = Series(self.t.grad_window, state.get("grad_flags"))
        self.log_ratios = Series(self.t.grad_var_window, state.get("grad_log_ratios"))
        self.last = state.get("last_grad")
