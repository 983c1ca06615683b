"""Loss spikes (loss_spike): a point far above the recent window, confirmed or huge."""

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
    mean_std,
    round_sig,
)

LOSS_SPIKE = Rule(
    "loss_spike",
    "Loss spikes: reduce train.lr (try half) or increase train.warmup_steps; "
    "keep train.grad_clip at 1.0. train.on_anomaly=rollback recovers automatically.",
    anomaly=True,
)


@dataclass(frozen=True)
class LossThresholds:
    loss_window: int = 50  # points of recent loss history the spike test compares against
    loss_min_history: int = 20  # no spike alarm before this many finite points (window warm-up)
    loss_spike_sigma: float = 6.0  # a point this many standard deviations above the mean spikes
    loss_spike_ratio: float = 2.0  # ... or a point this many times the window mean
    loss_spike_patience: int = 2  # spike points in a row before the alarm (one noisy step is not)
    loss_huge_sigma: float = 12.0  # a single point this far above fires at once
    loss_huge_ratio: float = 3.0  # ... or a single point this many times the mean
    loss_sigma_floor_rel: float = 0.01  # sigma is at least this fraction of |mean| (flat series)
    loss_exit_sigma: float = 3.0  # a reported spike lasts until the loss is within this sigma ...
    loss_exit_ratio: float = 1.5  # ... and below this many times the mean (one warning per episode)


class LossSpike(Family):
    """Spike points stay out of the window, so a spike is measured against the run before it."""

    name = "loss"
    rules = (LOSS_SPIKE,)
    Thresholds = LossThresholds
    t: LossThresholds

    def reset(self) -> None:
        self.window = Series(self.t.loss_window)
        self.streak: list[tuple[int, float]] = []  # spike candidates (step, loss) in a row
        self.episode = 0  # points since a reported spike began; 0 = no spike under way

    def on_step(self, out: list[HealthWarning], point: StepPoint) -> None:
        step, loss = point.step, point.loss
        if not finite(loss):
            return
        loss = float(loss)
        t = self.t
        window = self.window
        if len(window) < t.loss_min_history:
            window.append(step, loss)
            return
        mean, sigma = mean_std(window.values)
        scale = max(sigma, t.loss_sigma_floor_rel * abs(mean), 1e-12)
        z = (loss - mean) / scale
        ratio = loss / mean if mean > 0 else 0.0
        if self.episode:
            # A reported spike lasts until the loss is back near the window (hysteresis), so its
            # noisy tail is one episode, not a string of new spikes.
            if z > t.loss_exit_sigma or (mean > 0 and ratio > t.loss_exit_ratio):
                self.episode += 1
                if self.episode > t.loss_window // 4:
                    window.append(step, loss)  # a lasting new level: let the window adapt
                return
            self.episode = 0
        if not (z > t.loss_spike_sigma or (mean > 0 and ratio > t.loss_spike_ratio)):
            self.streak = []
            window.append(step, loss)
            return
        self.streak.append((step, loss))
        if len(self.streak) > t.loss_window // 4:
            window.append(step, loss)  # a lasting new level: adapt instead of alarming for ever
        huge = z > t.loss_huge_sigma or (mean > 0 and ratio > t.loss_huge_ratio)
        if huge or len(self.streak) >= t.loss_spike_patience:
            self._report(out, step, loss, mean, sigma, scale, ratio)

    def _report(
        self,
        out: list[HealthWarning],
        step: int,
        loss: float,
        mean: float,
        sigma: float,
        scale: float,
        ratio: float,
    ) -> None:
        """A warning at the streak's first point, with the numbers of that point."""
        onset, onset_loss = self.streak[0]
        onset_z = (onset_loss - mean) / scale
        onset_ratio = onset_loss / mean if mean > 0 else 0.0
        points = len(self.streak)
        n = len(self.window)
        message = (
            f"loss spike at step {onset}: {onset_loss:.4g} vs a mean of {mean:.4g} over the last "
            f"{n} points ({fmt_float(onset_z, '.1f')} sigma, {fmt_float(onset_ratio, '.2f')}x)"
            + (f"; {points} points in a row up to step {step}" if points > 1 else "")
        )
        evidence = {
            "loss": round_sig(onset_loss),
            "latest_loss": round_sig(loss),
            "window_mean": round_sig(mean),
            "window_std": round_sig(sigma),
            "sigma": round_sig(onset_z, 4),
            "ratio": round_sig(onset_ratio, 4),
            "window_points": n,
            "spike_points": points,
            "detected_at_step": step,
        }
        warning = LOSS_SPIKE.warning(onset, message, evidence)
        if self.ctx.emit(out, warning, max(onset_ratio, ratio, 1e-9), at=step):
            self.episode, self.streak = len(self.streak), []

    def went_back(self, step: int) -> None:
        self.window.drop_from(step)
        self.streak = []
        self.episode = 0

    def state(self) -> dict[str, Any]:
        return {
            "loss": self.window.state(),
            "loss_streak": [list(p) for p in self.streak],
            "loss_episode": self.episode,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.window = Series(self.t.loss_window, state.get("loss"))
        self.streak = [(int(s), float(v)) for s, v in state.get("loss_streak", [])]
        self.episode = int(state.get("loss_episode", 0))
