"""Throughput well below the run's own median for several points (throughput_drop)."""

from __future__ import annotations

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

THROUGHPUT_DROP = Rule(
    "throughput_drop",
    "Tokens/s fell well below this run's own median: another process on the GPU, "
    "thermal or power throttling, a slow data source, or swapping; check `gpt-cockpit gpus`.",
)

# The same finding on a CPU run: there is no GPU to share or throttle.
CPU_TIP = (
    "Tokens/s fell well below this run's own median: another busy process on this machine's "
    "CPU cores, a slow data source, or swapping; check `top` and the load average (`uptime`)."
)


@dataclass(frozen=True)
class ThroughputThresholds:
    tps_window: int = 50  # points of tokens/s history for the median
    tps_min_history: int = 30  # no alarm before this many points (start-up steps are noisy)
    tps_drop_frac: float = 0.5  # tokens/s below this fraction of the median counts as a drop
    tps_patience: int = 5  # dropped points in a row before the alarm (a checkpoint write is 1-2)


class Throughput(Family):
    """Positive finite tokens/s only; the first point after an eval is ignored (it has the eval's time)."""

    name = "throughput"
    rules = (THROUGHPUT_DROP,)
    Thresholds = ThroughputThresholds
    t: ThroughputThresholds

    def reset(self) -> None:
        self.tps = Series(self.t.tps_window)
        self.streak = 0
        self.skip_next = False

    def on_step(self, out: list[HealthWarning], point: StepPoint) -> None:
        step, tokens_per_s = point.step, point.tokens_per_s
        if not finite(tokens_per_s) or tokens_per_s <= 0:
            return
        if self.skip_next:
            self.skip_next = False
            return
        tps = float(tokens_per_s)
        if len(self.tps) < self.t.tps_min_history:
            self.tps.append(step, tps)
            return
        mid = median(self.tps.values)
        if tps >= self.t.tps_drop_frac * mid:
            self.streak = 0
            self.tps.append(step, tps)
            return
        self.streak += 1
        n = self.streak
        if n < self.t.tps_patience:
            return
        message = (
            f"throughput {fmt_float(tps, ',.0f')} tok/s is {fmt_float(tps / mid, '.0%')} of this run's "
            f"median {fmt_float(mid, ',.0f')} tok/s "
            f"for {n} points"
        )
        evidence = {
            "tokens_per_s": round_sig(tps),
            "median_tokens_per_s": round_sig(mid),
            "fraction": round_sig(tps / mid, 4),
            "points": n,
        }
        warning = THROUGHPUT_DROP.warning(step, message, evidence)
        if self.ctx.device == "cpu":
            warning.tip = CPU_TIP
        self.ctx.emit(out, warning)

    def on_eval(self, out: list[HealthWarning], step: int, val_loss: Any, train_loss: Any) -> None:
        self.skip_next = True

    def went_back(self, step: int) -> None:
        self.tps.drop_from(step)
        self.streak = 0
        self.skip_next = False

    def state(self) -> dict[str, Any]:
        return {"tps": self.tps.state(), "tps_streak": self.streak, "skip_next_tps": self.skip_next}

    def load(self, state: dict[str, Any]) -> None:
        self.tps = Series(self.t.tps_window, state.get("tps"))
        self.streak = int(state.get("tps_streak", 0))
        self.skip_next = bool(state.get("skip_next_tps", False))
