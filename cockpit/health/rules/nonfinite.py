"""Non-finite values (nonfinite) and the fp16 GradScaler skipping steps (scaler_skips)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cockpit.health.base import Family, HealthWarning, Rule, StepPoint, finite

NONFINITE = Rule(
    "nonfinite",
    "Reduce train.lr or raise train.warmup_steps; keep train.grad_clip at 1.0; "
    "if fp16 overflows, use bf16 (train.dtype=bf16) where the GPU has it.",
    severity="critical",
    anomaly=True,
)
SCALER_SKIPS = Rule(
    "scaler_skips",
    "The fp16 GradScaler keeps skipping steps (gradients overflow): use bf16 where "
    "fp16 overflows (train.dtype=bf16), or reduce train.lr.",
)


@dataclass(frozen=True)
class NonfiniteThresholds:
    scaler_skip_streak: int = 5  # consecutive skipped optimizer steps before scaler_skips fires


class Nonfinite(Family):
    """NaN or inf in the loss, the grad norm or the val loss; a GradScaler that keeps skipping.

    A non-finite grad norm on a step the scaler skipped is the scaler doing its job.
    """

    name = "nonfinite"
    rules = (NONFINITE, SCALER_SKIPS)
    Thresholds = NonfiniteThresholds
    t: NonfiniteThresholds

    def reset(self) -> None:
        self.skip_streak = 0  # consecutive skipped optimizer steps

    def on_step(self, out: list[HealthWarning], point: StepPoint) -> None:
        step, loss, grad_norm, skipped = (
            point.step,
            point.loss,
            point.grad_norm,
            point.scaler_skipped,
        )
        bad_loss = isinstance(loss, float) and not math.isfinite(loss)
        bad_grad = isinstance(grad_norm, float) and not math.isfinite(grad_norm) and not skipped
        if bad_loss or bad_grad:
            what = " and ".join(
                n for n, bad in (("loss", bad_loss), ("grad norm", bad_grad)) if bad
            )
            message = f"non-finite {what} at step {step} (loss {loss}, grad norm {grad_norm})"
            evidence = {"loss": loss, "grad_norm": grad_norm, "lr": self.ctx.last_lr}
            self.ctx.emit(out, NONFINITE.warning(step, message, evidence))
        self.skip_streak = self.skip_streak + 1 if skipped else 0
        n = self.skip_streak
        if n >= self.t.scaler_skip_streak:
            message = f"fp16 GradScaler skipped {n} optimizer steps in a row (gradients overflow)"
            self.ctx.emit(out, SCALER_SKIPS.warning(step, message, {"consecutive_skips": n}))

    def on_eval(self, out: list[HealthWarning], step: int, val_loss: Any, train_loss: Any) -> None:
        if val_loss is not None and not finite(val_loss):
            message = f"non-finite validation loss at step {step} ({val_loss})"
            self.ctx.emit(out, NONFINITE.warning(step, message, {"val_loss": val_loss}))

    def went_back(self, step: int) -> None:
        self.skip_streak = 0

    def state(self) -> dict[str, Any]:
        return {"skip_streak": self.skip_streak}

    def load(self, state: dict[str, Any]) -> None:
        self.skip_streak = int(state.get("skip_streak", 0))
