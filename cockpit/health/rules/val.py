"""Evaluations: val loss flat too early (val_plateau), rising (val_rising), drifting away from
the train loss (overfitting)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from cockpit.common.format import fmt_float
from cockpit.health.base import Family, HealthWarning, Rule, finite, round_sig, window

VAL_PLATEAU = Rule(
    "val_plateau",
    "Validation loss plateaued early while lr is still high: if the train loss is "
    "flat too, raise train.lr carefully (slow convergence) or grow the model; if it still falls, "
    "the model memorises: more data or dropout.",
    severity="info",
)
VAL_RISING = Rule(
    "val_rising",
    "Validation loss keeps rising: stop at the best checkpoint (best.pt), then train "
    "with more data, model.dropout, train.weight_decay, fewer steps or a lower train.lr.",
)
OVERFITTING = Rule(
    "overfitting",
    "Train/val gap widening (overfitting a small corpus): more data, model.dropout "
    "(0.1-0.2), fewer train.max_steps, or more train.weight_decay.",
)

Eval = tuple[int, float, "float | None"]  # (step, val loss, train loss when measured)


@dataclass(frozen=True)
class ValThresholds:
    val_plateau_evals: int = 4  # evals without a new best before a plateau is reported
    val_min_improvement: float = 0.002  # relative improvement that counts as a new best (0.2%)
    val_plateau_lr_frac: float = 0.5  # ... only while lr is at least this fraction of the peak lr
    val_rising_evals: int = 3  # consecutive evals each above the previous one
    overfit_evals: int = 3  # consecutive evals with a widening train/val gap
    overfit_min_gap_rel: float = 0.05  # ... ending with val above train by this fraction of val


class Val(Family):
    """Finite val losses only (a non-finite one is the nonfinite rule's)."""

    name = "val"
    rules = (VAL_PLATEAU, VAL_RISING, OVERFITTING)
    Thresholds = ValThresholds
    t: ValThresholds

    def reset(self) -> None:
        t = self.t
        self.evals: deque[Eval] = window(
            (), max(t.val_plateau_evals, t.val_rising_evals, t.overfit_evals) + 1
        )
        self.best: float | None = None
        self.since_best = 0  # evals without a new best

    def on_eval(self, out: list[HealthWarning], step: int, val_loss: Any, train_loss: Any) -> None:
        if not finite(val_loss):
            return
        val = float(val_loss)
        train_val = float(train_loss) if finite(train_loss) else None
        if self.best is None or val < self.best * (1 - self.t.val_min_improvement):
            self.best = val
            self.since_best = 0
        else:
            self.since_best += 1
        self.evals.append((step, val, train_val))
        evals = list(self.evals)
        self._plateau(out, step, val)
        self._rising(out, step, evals)
        self._overfitting(out, step, evals)

    def _plateau(self, out: list[HealthWarning], step: int, val: float) -> None:
        n, best = self.since_best, self.best
        last_lr = self.ctx.last_lr
        if n < self.t.val_plateau_evals or last_lr is None or best is None:
            return
        train = self.ctx.train
        peak = float(train.lr) if train is not None else self.ctx.peak_lr
        if peak <= 0 or last_lr < self.t.val_plateau_lr_frac * peak:
            return  # late in the decay a flat val loss is expected
        message = (
            f"validation loss {val:.4g} has not improved on its best {best:.4g} for {n} evals "
            f"while lr is still {fmt_float(last_lr / peak, '.0%')} of its peak"
        )
        evidence = {
            "val_loss": round_sig(val),
            "best_val_loss": round_sig(best),
            "evals_without_improvement": n,
            "lr": round_sig(last_lr),
        }
        self.ctx.emit(out, VAL_PLATEAU.warning(step, message, evidence))

    def _rising(self, out: list[HealthWarning], step: int, evals: list[Eval]) -> None:
        k = self.t.val_rising_evals
        if len(evals) < k + 1:
            return
        recent = [v for _, v, _ in evals[-(k + 1) :]]
        if not all(b > a for a, b in zip(recent, recent[1:], strict=False)):
            return
        first = evals[-(k + 1)][0]
        message = (
            f"validation loss rose for {k} evals in a row: {recent[0]:.4g} at step {first} "
            f"-> {recent[-1]:.4g}"
        )
        evidence = {
            "val_losses": [round_sig(v) for v in recent],
            "since_step": first,
            "rise": round_sig(recent[-1] - recent[0]),
        }
        self.ctx.emit(out, VAL_RISING.warning(step, message, evidence), recent[-1] / recent[0])

    def _overfitting(self, out: list[HealthWarning], step: int, evals: list[Eval]) -> None:
        k = self.t.overfit_evals
        measured = [(v, t) for _, v, t in evals[-(k + 1) :] if t is not None]
        if len(measured) < k + 1:  # too few evals, or one without a train loss
            return
        gaps = [v - t for v, t in measured]
        val_now, train_now = measured[-1]
        if (
            not all(b > a for a, b in zip(gaps, gaps[1:], strict=False))
            or gaps[-1] < self.t.overfit_min_gap_rel * val_now
        ):
            return
        message = (
            f"train/val gap widened for {k} evals: val - train went {gaps[0]:.4g} -> {gaps[-1]:.4g} "
            f"(val {val_now:.4g}, train {train_now:.4g})"
        )
        evidence = {
            "gaps": [round_sig(g) for g in gaps],
            "val_loss": round_sig(val_now),
            "train_loss": round_sig(train_now),
        }
        self.ctx.emit(out, OVERFITTING.warning(step, message, evidence), gaps[-1])

    def went_back(self, step: int) -> None:
        while self.evals and self.evals[-1][0] >= step:
            self.evals.pop()

    def state(self) -> dict[str, Any]:
        return {
            "evals": [list(e) for e in self.evals],
            "best_val": self.best,
            "evals_since_best": self.since_best,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.evals = window(
            (
                (int(s), float(v), None if t is None else float(t))
                for s, v, t in state.get("evals", [])
            ),
            self.evals.maxlen or 1,
        )
        self.best = state.get("best_val")
        self.since_best = int(state.get("evals_since_best", 0))
