"""Training health: pure rules over the metric history that return warnings with a tip.

The trainer feeds every step (`observe_step`) and evaluation (`observe_eval`)
to a `HealthMonitor`, writes what it returns as `warning` events and, for the
anomaly rules (non-finite values, loss spikes), applies the preset's
`train.on_anomaly` response. Readers (the app, headless mode, `attach`) rebuild
the same picture with `replay(records)` and ask `check_stalled` whether the run
stopped writing events. Thresholds live in `HealthConfig`; docs/health.md lists
every rule with its threshold, evidence and tip.

Pure Python with bounded windows (deques), cheap per call, no torch or numpy.
The warning type, thresholds, tips and helpers live in cockpit.health_base.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Any

from cockpit.health_base import (
    ANOMALY_RULES,
    RULES,
    SEVERITIES,
    STATE_VERSION,
    TIPS,
    HealthConfig,
    HealthWarning,
    _finite,
    _mean_std,
    _median,
    _num,
    _round,
    _Series,
    _window,
    oom_warning,
    scheduled_lr,
)

__all__ = [
    "ANOMALY_RULES",
    "RULES",
    "SEVERITIES",
    "STATE_VERSION",
    "TIPS",
    "HealthConfig",
    "HealthMonitor",
    "HealthWarning",
    "oom_warning",
    "scheduled_lr",
]


class HealthMonitor:
    """Keeps bounded windows of the metric history and turns them into warnings."""

    def __init__(
        self,
        preset: Any = None,
        *,
        gpu_memory_bytes: int | None = None,
        config: HealthConfig | None = None,
    ) -> None:
        self.config = config or HealthConfig()
        # A Preset or a bare TrainConfig; without one, the lr rules that need the preset stay quiet.
        self.train = getattr(preset, "train", preset)
        self.gpu_memory_bytes = gpu_memory_bytes
        c = self.config
        self._loss = _Series(c.loss_window)
        self._loss_streak: list[tuple[int, float]] = []  # spike candidates (step, loss) in a row
        self._loss_episode = 0  # points since a reported spike began; 0 = no spike under way
        self._grad = _Series(c.grad_window)
        self._grad_flags = _Series(c.grad_window)  # 1 for a spike point, 0 otherwise
        self._grad_log_ratios = _Series(c.grad_var_window)
        self._last_grad: float | None = None
        self._skip_streak = 0
        self._lr_zero_streak = 0
        self._lr_bad_streak = 0
        self._peak_lr = 0.0
        self._last_lr: float | None = None
        self._tps = _Series(c.tps_window)
        self._tps_streak = 0
        self._skip_next_tps = False
        self._evals: deque = _window(
            (), max(c.val_plateau_evals, c.val_rising_evals, c.overfit_evals) + 1
        )
        self._best_val: float | None = None
        self._evals_since_best = 0
        self._last_step = -1
        self._fired: dict[str, list] = {}  # rule -> [step, measure] of its last warning
        self._stall_fired: list[float] | None = (
            None  # [last_event_time, silence_s] of the last stall warning
        )

    # ----------------------------------------------------------------- de-duplication

    def _emit(
        self,
        out: list[HealthWarning],
        warning: HealthWarning,
        measure: float = 1.0,
        *,
        at: int | None = None,
    ) -> bool:
        """Append `warning` unless the same rule fired recently and it is not clearly worse; True if appended."""
        at = warning.step if at is None else at
        last = self._fired.get(warning.rule)
        if last is not None:
            last_step, last_measure = last
            recent = 0 <= at - last_step < self.config.cooldown_steps
            worse = (
                math.isfinite(measure)
                and last_measure > 0
                and measure >= last_measure * self.config.refire_worse
            )
            if recent and not worse:
                return False
        self._fired[warning.rule] = [int(at), float(measure) if math.isfinite(measure) else 0.0]
        out.append(warning)
        return True

    def _went_back(self, step: int) -> None:
        """Steps went back (a rollback): forget what came after, as the trainer's restored monitor did."""
        for series in (self._loss, self._grad, self._grad_flags, self._grad_log_ratios, self._tps):
            series.drop_from(step)
        while self._evals and self._evals[-1][0] >= step:
            self._evals.pop()
        self._skip_next_tps = False
        self._loss_streak = []
        self._loss_episode = 0
        self._skip_streak = self._lr_zero_streak = self._lr_bad_streak = self._tps_streak = 0
        self._last_grad = None
        self._fired = {rule: v for rule, v in self._fired.items() if v[0] < step}

    # ----------------------------------------------------------------- steps

    def observe_step(
        self,
        step: int,
        loss: float | None,
        grad_norm: float | None,
        lr: float | None,
        tokens_per_s: float | None = None,
        *,
        vram_bytes: int | None = None,
        scaler_skipped: bool = False,
        lr_scale: float = 1.0,
    ) -> list[HealthWarning]:
        """Check one optimizer step's metrics; returns the warnings it raises (usually none).

        `lr_scale` is the trainer's extra lr multiplier (rollback_lr_factor after
        rollbacks). With `scaler_skipped`, a non-finite grad norm is the fp16
        GradScaler doing its job, not an anomaly.
        """
        step = int(step)
        if step < self._last_step:
            self._went_back(step)
        self._last_step = step
        out: list[HealthWarning] = []
        self._check_nonfinite(out, step, loss, grad_norm, scaler_skipped)
        self._check_scaler(out, step, scaler_skipped)
        if _finite(loss):
            self._check_loss(out, step, float(loss))
        if _finite(grad_norm) and not scaler_skipped:
            self._check_grad(out, step, float(grad_norm))
        if _finite(lr):
            self._check_lr(out, step, float(lr), lr_scale)
        self._check_throughput(out, step, tokens_per_s)
        self._check_vram(out, step, vram_bytes)
        return out

    def _check_nonfinite(
        self, out: list[HealthWarning], step: int, loss: Any, grad_norm: Any, skipped: bool
    ) -> None:
        bad_loss = isinstance(loss, float) and not math.isfinite(loss)
        bad_grad = isinstance(grad_norm, float) and not math.isfinite(grad_norm) and not skipped
        if not (bad_loss or bad_grad):
            return
        what = " and ".join(n for n, bad in (("loss", bad_loss), ("grad norm", bad_grad)) if bad)
        message = f"non-finite {what} at step {step} (loss {loss}, grad norm {grad_norm})"
        evidence = {"loss": loss, "grad_norm": grad_norm, "lr": self._last_lr}
        self._emit(
            out, HealthWarning("nonfinite", "critical", step, message, TIPS["nonfinite"], evidence)
        )

    def _check_scaler(self, out: list[HealthWarning], step: int, skipped: bool) -> None:
        self._skip_streak = self._skip_streak + 1 if skipped else 0
        n = self._skip_streak
        if n >= self.config.scaler_skip_streak:
            message = f"fp16 GradScaler skipped {n} optimizer steps in a row (gradients overflow)"
            warning = HealthWarning(
                "scaler_skips",
                "warning",
                step,
                message,
                TIPS["scaler_skips"],
                {"consecutive_skips": n},
            )
            self._emit(out, warning)

    def _check_loss(self, out: list[HealthWarning], step: int, loss: float) -> None:
        c = self.config
        window = self._loss
        if len(window) < c.loss_min_history:
            window.append(step, loss)
            return
        mean, sigma = _mean_std(window.values)
        scale = max(sigma, c.loss_sigma_floor_rel * abs(mean), 1e-12)
        z = (loss - mean) / scale
        ratio = loss / mean if mean > 0 else 0.0
        if self._loss_episode:
            # A reported spike lasts until the loss is back near the window (hysteresis), so its
            # noisy tail is one episode, not a string of new spikes.
            if z > c.loss_exit_sigma or (mean > 0 and ratio > c.loss_exit_ratio):
                self._loss_episode += 1
                if self._loss_episode > c.loss_window // 4:
                    window.append(step, loss)  # a lasting new level: let the window adapt
                return
            self._loss_episode = 0
        candidate = z > c.loss_spike_sigma or (mean > 0 and ratio > c.loss_spike_ratio)
        if not candidate:
            self._loss_streak = []
            window.append(step, loss)
            return
        self._loss_streak.append((step, loss))
        if len(self._loss_streak) > c.loss_window // 4:
            window.append(
                step, loss
            )  # a lasting new level: let the window adapt instead of alarming forever
        huge = z > c.loss_huge_sigma or (mean > 0 and ratio > c.loss_huge_ratio)
        if not huge and len(self._loss_streak) < c.loss_spike_patience:
            return
        onset, onset_loss = self._loss_streak[0]
        onset_z = (onset_loss - mean) / scale
        onset_ratio = onset_loss / mean if mean > 0 else 0.0
        points = len(self._loss_streak)
        message = (
            f"loss spike at step {onset}: {onset_loss:.4g} vs a mean of {mean:.4g} over the last "
            f"{len(window)} points ({onset_z:.1f} sigma, {onset_ratio:.2f}x)"
            + (f"; {points} points in a row up to step {step}" if points > 1 else "")
        )
        evidence = {
            "loss": _round(onset_loss),
            "latest_loss": _round(loss),
            "window_mean": _round(mean),
            "window_std": _round(sigma),
            "sigma": _round(onset_z, 4),
            "ratio": _round(onset_ratio, 4),
            "window_points": len(window),
            "spike_points": points,
            "detected_at_step": step,
        }
        warning = HealthWarning(
            "loss_spike", "warning", onset, message, TIPS["loss_spike"], evidence
        )
        if self._emit(out, warning, max(onset_ratio, ratio, 1e-9), at=step):
            self._loss_episode, self._loss_streak = len(self._loss_streak), []

    def _check_grad(self, out: list[HealthWarning], step: int, grad: float) -> None:
        c = self.config
        if self._last_grad is not None and self._last_grad > 0 and grad > 0:
            # a difference of logs: a quotient of extreme norms can overflow to inf or underflow to 0
            self._grad_log_ratios.append(step, math.log(grad) - math.log(self._last_grad))
        self._last_grad = grad
        if len(self._grad) < c.grad_min_history:
            self._grad.append(step, grad)
            self._grad_flags.append(step, 0)
            return
        median = _median(self._grad.values)
        spike = median > 0 and grad > c.grad_spike_ratio * median
        self._grad_flags.append(step, 1 if spike else 0)
        self._grad.append(
            step, grad
        )  # the median shrugs off a few spikes and follows a lasting new level
        count = int(sum(self._grad_flags.values))
        if spike and count >= c.grad_spike_count:
            message = (
                f"{count} grad-norm spikes in the last {len(self._grad_flags)} points; latest {grad:.4g} "
                f"is {grad / median:.1f}x the median {median:.4g}"
            )
            evidence = {
                "spikes": count,
                "window_points": len(self._grad_flags),
                "grad_norm": _round(grad),
                "median": _round(median),
                "ratio": _round(grad / median, 4),
            }
            self._emit(
                out,
                HealthWarning(
                    "grad_spikes", "warning", step, message, TIPS["grad_spikes"], evidence
                ),
            )
        ratios = self._grad_log_ratios
        if len(ratios) >= c.grad_var_window:
            # The median ignores a few isolated spikes (grad_spikes' job); it moves only when most steps swing.
            spread = _median([abs(r) for r in ratios.values])
            if spread > c.grad_var_log_ratio:
                factor = math.exp(spread)
                message = (
                    f"grad norm oscillates: consecutive points differ by a median factor of {factor:.2f}x "
                    f"over the last {len(ratios)} points"
                )
                evidence = {
                    "median_abs_log_ratio": _round(spread, 4),
                    "typical_factor": _round(factor, 4),
                    "window_points": len(ratios),
                }
                warning = HealthWarning(
                    "grad_variability", "warning", step, message, TIPS["grad_variability"], evidence
                )
                self._emit(out, warning, spread)

    def _check_lr(self, out: list[HealthWarning], step: int, lr: float, lr_scale: float) -> None:
        c = self.config
        self._last_lr = lr
        self._peak_lr = max(self._peak_lr, lr)
        train = self.train
        peak = float(train.lr) if train is not None else self._peak_lr
        abs_tol = c.lr_abs_tol_frac * peak
        band = self._expected_band(step) if train is not None else None
        # lr zero for long, outside the points where the schedule itself is at zero
        expects_zero = band is not None and band[0] <= abs_tol
        if lr <= 0.0 and not expects_zero:
            self._lr_zero_streak += 1
        else:
            self._lr_zero_streak = 0
        if self._lr_zero_streak >= c.lr_zero_patience:
            n = self._lr_zero_streak
            message = (
                f"learning rate has been 0 for {n} points (since step {step - n + 1} or earlier)"
            )
            evidence = {
                "lr": lr,
                "zero_points": n,
                "expected_lr": _round(band[1]) if band else None,
            }
            self._emit(
                out, HealthWarning("lr_zero", "warning", step, message, TIPS["lr_zero"], evidence)
            )
        if train is None:
            return
        if lr > peak * (1 + c.lr_rel_tol) + abs_tol:
            message = f"learning rate {lr:.4g} at step {step} is above the preset's max {peak:.4g} ({lr / peak:.2f}x)"
            evidence = {"lr": _round(lr), "max_lr": peak, "ratio": _round(lr / peak, 4)}
            self._emit(
                out,
                HealthWarning(
                    "lr_above_max", "warning", step, message, TIPS["lr_above_max"], evidence
                ),
                lr / peak,
            )
            self._lr_bad_streak = 0
            return
        if self._lr_matches(lr, band, lr_scale, abs_tol) or self._lr_zero_streak:
            self._lr_bad_streak = 0
            return
        self._lr_bad_streak += 1
        if self._lr_bad_streak >= c.lr_schedule_patience:
            expected = scheduled_lr(train, step)
            message = (
                f"learning rate {lr:.4g} at step {step} does not follow the {train.schedule} schedule "
                f"(expected about {expected:.4g}) for {self._lr_bad_streak} points"
            )
            evidence = {
                "lr": _round(lr),
                "expected_lr": _round(expected),
                "schedule": train.schedule,
                "lr_scale": lr_scale,
                "mismatch_points": self._lr_bad_streak,
            }
            self._emit(
                out,
                HealthWarning(
                    "lr_schedule", "warning", step, message, TIPS["lr_schedule"], evidence
                ),
            )

    def _expected_band(self, step: int) -> tuple[float, float]:
        """Lowest and highest scheduled lr over steps step-1..step+1 (0- vs 1-based counting, warmup conventions)."""
        values = [scheduled_lr(self.train, s) for s in (step - 1, step, step + 1)]
        return min(values), max(values)

    def _lr_matches(
        self, lr: float, band: tuple[float, float] | None, lr_scale: float, abs_tol: float
    ) -> bool:
        if band is None:
            return True
        lo, hi = band
        tol = self.config.lr_rel_tol
        train = self.train
        # The trainer's own scale, or any power of rollback_lr_factor a rollback may have applied.
        scales = {float(lr_scale)}
        factor = float(getattr(train, "rollback_lr_factor", 1.0))
        for k in range(int(getattr(train, "max_rollbacks", 0)) + 1):
            scales.add(factor**k)
        for scale in scales:
            if lo * scale * (1 - tol) - abs_tol <= lr <= hi * scale * (1 + tol) + abs_tol:
                return True
        return False

    def _check_throughput(self, out: list[HealthWarning], step: int, tokens_per_s: Any) -> None:
        c = self.config
        if not _finite(tokens_per_s) or tokens_per_s <= 0:
            return
        if self._skip_next_tps:  # the first point after an eval includes the eval's time
            self._skip_next_tps = False
            return
        tps = float(tokens_per_s)
        if len(self._tps) < c.tps_min_history:
            self._tps.append(step, tps)
            return
        median = _median(self._tps.values)
        if tps >= c.tps_drop_frac * median:
            self._tps_streak = 0
            self._tps.append(step, tps)
            return
        self._tps_streak += 1
        if self._tps_streak >= c.tps_patience:
            n = self._tps_streak
            message = (
                f"throughput {tps:,.0f} tok/s is {tps / median:.0%} of this run's median {median:,.0f} tok/s "
                f"for {n} points"
            )
            evidence = {
                "tokens_per_s": _round(tps),
                "median_tokens_per_s": _round(median),
                "fraction": _round(tps / median, 4),
                "points": n,
            }
            warning = HealthWarning(
                "throughput_drop", "warning", step, message, TIPS["throughput_drop"], evidence
            )
            self._emit(out, warning)

    def _check_vram(self, out: list[HealthWarning], step: int, vram_bytes: Any) -> None:
        total = self.gpu_memory_bytes
        if not total or not _finite(vram_bytes):
            return
        frac = float(vram_bytes) / float(total)
        if frac >= 1.0 - self.config.vram_margin:
            gib = 1 << 30
            message = (
                f"GPU memory use {vram_bytes / gib:.2f} GiB is {frac:.1%} of {total / gib:.2f} GiB "
                f"(within {self.config.vram_margin:.0%} of the limit)"
            )
            evidence = {
                "vram_bytes": int(vram_bytes),
                "gpu_memory_bytes": int(total),
                "fraction": _round(frac, 4),
            }
            self._emit(
                out,
                HealthWarning(
                    "vram_near_limit", "warning", step, message, TIPS["vram_near_limit"], evidence
                ),
                frac,
            )

    # ----------------------------------------------------------------- evaluations

    def observe_eval(
        self, step: int, val_loss: float | None, train_loss: float | None = None
    ) -> list[HealthWarning]:
        """Check one evaluation (val loss, and the train-split loss when measured)."""
        step = int(step)
        out: list[HealthWarning] = []
        self._skip_next_tps = True
        if not _finite(val_loss):
            if val_loss is not None:
                message = f"non-finite validation loss at step {step} ({val_loss})"
                warning = HealthWarning(
                    "nonfinite",
                    "critical",
                    step,
                    message,
                    TIPS["nonfinite"],
                    {"val_loss": val_loss},
                )
                self._emit(out, warning)
            return out
        c = self.config
        val = float(val_loss)
        train_val = float(train_loss) if _finite(train_loss) else None
        if self._best_val is None or val < self._best_val * (1 - c.val_min_improvement):
            self._best_val = val
            self._evals_since_best = 0
        else:
            self._evals_since_best += 1
        self._evals.append((step, val, train_val))
        evals = list(self._evals)
        self._check_plateau(out, step, val)
        self._check_rising(out, step, evals)
        self._check_overfitting(out, step, evals)
        return out

    def _check_plateau(self, out: list[HealthWarning], step: int, val: float) -> None:
        c = self.config
        n = self._evals_since_best
        if n < c.val_plateau_evals or self._last_lr is None:
            return
        peak = float(self.train.lr) if self.train is not None else self._peak_lr
        if peak <= 0 or self._last_lr < c.val_plateau_lr_frac * peak:
            return  # late in the decay a flat val loss is expected
        message = (
            f"validation loss {val:.4g} has not improved on its best {self._best_val:.4g} for {n} evals "
            f"while lr is still {self._last_lr / peak:.0%} of its peak"
        )
        evidence = {
            "val_loss": _round(val),
            "best_val_loss": _round(self._best_val),
            "evals_without_improvement": n,
            "lr": _round(self._last_lr),
        }
        self._emit(
            out, HealthWarning("val_plateau", "info", step, message, TIPS["val_plateau"], evidence)
        )

    def _check_rising(
        self, out: list[HealthWarning], step: int, evals: list[tuple[int, float, float | None]]
    ) -> None:
        k = self.config.val_rising_evals
        if len(evals) < k + 1:
            return
        recent = [v for _, v, _ in evals[-(k + 1) :]]
        if all(b > a for a, b in zip(recent, recent[1:], strict=False)):
            first = evals[-(k + 1)][0]
            message = f"validation loss rose for {k} evals in a row: {recent[0]:.4g} at step {first} -> {recent[-1]:.4g}"
            evidence = {
                "val_losses": [_round(v) for v in recent],
                "since_step": first,
                "rise": _round(recent[-1] - recent[0]),
            }
            self._emit(
                out,
                HealthWarning("val_rising", "warning", step, message, TIPS["val_rising"], evidence),
                recent[-1] / recent[0],
            )

    def _check_overfitting(
        self, out: list[HealthWarning], step: int, evals: list[tuple[int, float, float | None]]
    ) -> None:
        c = self.config
        k = c.overfit_evals
        if len(evals) < k + 1 or any(t is None for _, _, t in evals[-(k + 1) :]):
            return
        gaps = [v - t for _, v, t in evals[-(k + 1) :]]  # type: ignore[operator]
        val_now = evals[-1][1]
        if (
            not all(b > a for a, b in zip(gaps, gaps[1:], strict=False))
            or gaps[-1] < c.overfit_min_gap_rel * val_now
        ):
            return
        message = (
            f"train/val gap widened for {k} evals: val - train went {gaps[0]:.4g} -> {gaps[-1]:.4g} "
            f"(val {val_now:.4g}, train {evals[-1][2]:.4g})"
        )
        evidence = {
            "gaps": [_round(g) for g in gaps],
            "val_loss": _round(val_now),
            "train_loss": _round(evals[-1][2]),
        }  # type: ignore[arg-type]
        self._emit(
            out,
            HealthWarning("overfitting", "warning", step, message, TIPS["overfitting"], evidence),
            gaps[-1],
        )

    # ----------------------------------------------------------------- liveness

    def check_stalled(
        self, now: float, last_event_time: float, typical_interval_s: float | None
    ) -> list[HealthWarning]:
        """A warning when a live run has written nothing for much longer than its usual interval."""
        c = self.config
        interval = (
            typical_interval_s if _finite(typical_interval_s) and typical_interval_s > 0 else 0.0
        )
        limit = max(c.stall_factor * interval, c.stall_min_s)
        silence = float(now) - float(last_event_time)
        if silence <= limit:
            return []
        if self._stall_fired is not None:
            fired_for, fired_silence = self._stall_fired
            if fired_for == last_event_time and silence < fired_silence * 2:
                return []
        self._stall_fired = [float(last_event_time), silence]
        message = f"no events for {silence:.0f} s (usually one every {interval:.1f} s); last step {max(self._last_step, 0)}"
        evidence = {
            "silent_s": _round(silence, 4),
            "typical_interval_s": _round(interval, 4),
            "limit_s": _round(limit, 4),
        }
        return [
            HealthWarning(
                "stalled", "warning", max(self._last_step, 0), message, TIPS["stalled"], evidence
            )
        ]

    # ----------------------------------------------------------------- replay and state

    def replay(self, records: Iterable[dict[str, Any]]) -> list[HealthWarning]:
        """Feed recorded `step` and `eval` events through the rules; returns every warning raised."""
        out: list[HealthWarning] = []
        for record in records:
            kind = record.get("event")
            if kind == "step":
                out.extend(
                    self.observe_step(
                        int(record.get("step", 0) or 0),
                        _num(record.get("loss")),
                        _num(_first(record, "grad_norm", "norm")),
                        _num(record.get("lr")),
                        _num(_first(record, "tokens_per_s", "tok_per_s", "tok_s")),
                        vram_bytes=_num(
                            _first(record, "vram_bytes", "mem_reserved", "memory_reserved")
                        ),
                        scaler_skipped=bool(record.get("scaler_skipped", False)),
                        lr_scale=_num(record.get("lr_scale")) or 1.0,
                    )
                )
            elif kind == "eval":
                out.extend(
                    self.observe_eval(
                        int(record.get("step", 0) or 0),
                        _num(record.get("val_loss")),
                        _num(record.get("train_loss")),
                    )
                )
        return out

    def state_dict(self) -> dict[str, Any]:
        """The monitor's memory as small, JSON-safe data (windows are bounded; values are finite)."""
        return {
            "version": STATE_VERSION,
            "loss": self._loss.state(),
            "loss_streak": [list(p) for p in self._loss_streak],
            "loss_episode": self._loss_episode,
            "grad": self._grad.state(),
            "grad_flags": self._grad_flags.state(),
            "grad_log_ratios": self._grad_log_ratios.state(),
            "last_grad": self._last_grad,
            "skip_streak": self._skip_streak,
            "lr_zero_streak": self._lr_zero_streak,
            "lr_bad_streak": self._lr_bad_streak,
            "peak_lr": self._peak_lr,
            "last_lr": self._last_lr,
            "tps": self._tps.state(),
            "tps_streak": self._tps_streak,
            "skip_next_tps": self._skip_next_tps,
            "evals": [list(e) for e in self._evals],
            "best_val": self._best_val,
            "evals_since_best": self._evals_since_best,
            "last_step": self._last_step,
            "fired": {k: list(v) for k, v in self._fired.items()},
            "stall_fired": self._stall_fired,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved (a resumed or rolled-back run continues where it was).

        A state this version cannot read (another format, damaged) starts the monitor
        afresh rather than failing the resume: the windows refill within tens of steps.
        """
        try:
            if int(state.get("version", 0)) != STATE_VERSION:
                raise ValueError("another state format")
            self._load(state)
        except (AttributeError, KeyError, IndexError, TypeError, ValueError):
            self.__init__(self.train, gpu_memory_bytes=self.gpu_memory_bytes, config=self.config)  # type: ignore[misc]

    def _load(self, state: dict[str, Any]) -> None:
        c = self.config
        self._loss = _Series(c.loss_window, state.get("loss"))
        self._loss_streak = [(int(s), float(v)) for s, v in state.get("loss_streak", [])]
        self._loss_episode = int(state.get("loss_episode", 0))
        self._grad = _Series(c.grad_window, state.get("grad"))
        self._grad_flags = _Series(c.grad_window, state.get("grad_flags"))
        self._grad_log_ratios = _Series(c.grad_var_window, state.get("grad_log_ratios"))
        self._last_grad = state.get("last_grad")
        self._skip_streak = int(state.get("skip_streak", 0))
        self._lr_zero_streak = int(state.get("lr_zero_streak", 0))
        self._lr_bad_streak = int(state.get("lr_bad_streak", 0))
        self._peak_lr = float(state.get("peak_lr", 0.0))
        self._last_lr = state.get("last_lr")
        self._tps = _Series(c.tps_window, state.get("tps"))
        self._tps_streak = int(state.get("tps_streak", 0))
        self._skip_next_tps = bool(state.get("skip_next_tps", False))
        maxlen = self._evals.maxlen or 1
        self._evals = _window(
            (
                (int(s), float(v), None if t is None else float(t))
                for s, v, t in state.get("evals", [])
            ),
            maxlen,
        )
        self._best_val = state.get("best_val")
        self._evals_since_best = int(state.get("evals_since_best", 0))
        self._last_step = int(state.get("last_step", -1))
        self._fired = {str(k): [int(v[0]), float(v[1])] for k, v in state.get("fired", {}).items()}
        stall = state.get("stall_fired")
        self._stall_fired = [float(stall[0]), float(stall[1])] if stall else None


def _first(record: dict[str, Any], *names: str) -> Any:
    """The first of several field names present in a record (event fields have had aliases)."""
    for name in names:
        if name in record:
            return record[name]
    return None
