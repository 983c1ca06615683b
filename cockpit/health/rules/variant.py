"""Residual-stream variant instability (variant_instability): seed 000's "Variant Instability:
simplify the variant or reduce the mixing temperature", for presets with model.num_streams > 1.

Quiet for the plain residual (num_streams 1) and without a preset; its state is then empty,
so a plain run's health state keeps its version-2 keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cockpit.common.format import fmt_float
from cockpit.common.numbers import as_finite
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

VARIANT_INSTABILITY = Rule(
    "variant_instability",
    "The residual-stream variant is unstable: lower model.mixing_temperature (try half) or "
    "simplify the variant (fewer model.num_streams; 1 is the plain residual); "
    "if it persists, reduce train.lr.",
)


@dataclass(frozen=True)
class VariantThresholds:
    variant_window: int = 50  # points of loss and grad-norm history the medians are taken over
    variant_min_history: int = 20  # no alarm before this many stable points (window warm-up)
    variant_loss_ratio: float = 1.5  # a loss this many times the window's median is unstable ...
    variant_grad_ratio: float = 5.0  # ... or a grad norm this many times its window's median
    variant_patience: int = (
        2  # unstable points in a row before the alarm (a non-finite one: at once)
    )


class Variant(Family):
    """Unstable points (a loss or grad norm far above the recent medians, or non-finite) stay out
    of the windows; one warning per episode, which ends at the first stable point."""

    name = "variant"
    rules = (VARIANT_INSTABILITY,)
    Thresholds = VariantThresholds
    t: VariantThresholds

    def reset(self) -> None:
        model = self.ctx.model
        self.streams = int(getattr(model, "num_streams", 1) or 1)
        self.active = self.streams > 1
        self.losses = Series(self.t.variant_window)
        self.grads = Series(self.t.variant_window)
        self.streak: list[list[Any]] = []  # unstable points in a row: [step, loss, grad_norm]
        self.episode = False  # reported; quiet until a stable point

    def on_step(self, out: list[HealthWarning], point: StepPoint) -> None:
        if not self.active:
            return
        step, loss, grad = point.step, point.loss, point.grad_norm
        if point.scaler_skipped and not finite(grad):
            grad = None  # the fp16 scaler skipping a step is not the variant's doing
        broken = (loss is not None and not finite(loss)) or (grad is not None and not finite(grad))
        warmed = len(self.losses) >= self.t.variant_min_history
        loss_med = median(self.losses.values) if warmed else 0.0
        grad_med = median(self.grads.values) if warmed and len(self.grads) else 0.0
        high_loss = finite(loss) and loss_med > 0 and loss > self.t.variant_loss_ratio * loss_med
        high_grad = finite(grad) and grad_med > 0 and grad > self.t.variant_grad_ratio * grad_med
        if not (broken or high_loss or high_grad):
            self.streak, self.episode = [], False
            self._remember(step, loss, grad)
            return
        self.streak.append([step, loss, grad])
        if len(self.streak) > self.t.variant_window // 4:
            self._remember(
                step, loss, grad
            )  # a lasting new level: adapt instead of alarming for ever
        if self.episode or not (broken or len(self.streak) >= self.t.variant_patience):
            return
        self._report(out, step, loss_med, grad_med)

    def _remember(self, step: int, loss: Any, grad: Any) -> None:
        if finite(loss):
            self.losses.append(step, float(loss))
        if finite(grad):
            self.grads.append(step, float(grad))

    def _report(
        self, out: list[HealthWarning], step: int, loss_med: float, grad_med: float
    ) -> None:
        onset, loss, grad = self.streak[0]
        m = self.ctx.model
        parts = [_against("loss", loss, loss_med), _against("grad norm", grad, grad_med)]
        parts = [p for p in parts if p]
        message = (
            f"the {self.streams}-stream residual variant is unstable from step {onset}: "
            + "; ".join(parts)
            + f" (mixing_temperature {m.mixing_temperature:g}, mixing_iters {m.mixing_iters})"
        )
        evidence = {
            "num_streams": self.streams,
            "mixing_iters": int(m.mixing_iters),
            "mixing_temperature": float(m.mixing_temperature),
            "loss": round_sig(float(loss)) if finite(loss) else loss,
            "loss_median": round_sig(loss_med),
            "grad_norm": round_sig(float(grad)) if finite(grad) else grad,
            "grad_median": round_sig(grad_med),
            "unstable_points": len(self.streak),
            "detected_at_step": step,
        }
        ratio = loss / loss_med if finite(loss) and loss_med > 0 else 1.0
        if self.ctx.emit(
            out, VARIANT_INSTABILITY.warning(onset, message, evidence), ratio, at=step
        ):
            self.episode = True

    def went_back(self, step: int) -> None:
        self.losses.drop_from(step)
        self.grads.drop_from(step)
        self.streak, self.episode = [], False

    def state(self) -> dict[str, Any]:
        if not self.active:
            return {}
        return {
            "variant_loss": self.losses.state(),
            "variant_grad": self.grads.state(),
            "variant_streak": [[s, as_finite(v), as_finite(g)] for s, v, g in self.streak],
            "variant_episode": self.episode,
        }

    def load(self, state: dict[str, Any]) -> None:
        if not self.active:
            return
        self.losses = Series(self.t.variant_window, state.get("variant_loss"))
        self.grads = Series(self.t.variant_window, state.get("variant_grad"))
        self.streak = [
            [int(s), as_finite(v), as_finite(g)] for s, v, g in state.get("variant_streak", [])
        ]
        self.episode = bool(state.get("variant_episode", False))


def _against(what: str, value: Any, med: float) -> str:
    """'loss 9.1 vs a median of 3 (3.03x)', 'loss nan', or '' (not measured, or no median)."""
    if finite(value) and med > 0:
        return f"{what} {value:.4g} vs a median of {med:.4g} ({fmt_float(value / med, '.2f')}x)"
    return f"{what} {value}" if value is not None and not finite(value) else ""
