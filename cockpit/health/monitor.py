"""The health monitor: feeds observations to the rule families, de-duplicates what they find,
and saves and restores their state.

The rules themselves live in cockpit.health.rules, one module per family.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from cockpit.common.numbers import as_float
from cockpit.health.base import Context, Family, HealthWarning, StepPoint
from cockpit.health.rules import FAMILIES

# The checkpoint format of state_dict: the monitor's own fields plus each family's,
# side by side in one flat dict (version 2 since the rules had their first state).
STATE_VERSION = 2


@dataclass(frozen=True)
class Dedup:
    """The monitor's de-duplication: how often one rule may fire."""

    cooldown_steps: int = 200  # a rule does not re-fire within this many steps ...
    refire_worse: float = 1.5  # ... unless its measure got this many times worse


def _pick(cls: type, overrides: dict[str, Any]) -> Any:
    """An instance of the dataclass `cls`, taking (and removing) its fields from `overrides`."""
    names = [f.name for f in fields(cls) if f.name in overrides]
    return cls(**{name: overrides.pop(name) for name in names})


class HealthConfig:
    """Every threshold: each family's own dataclass plus the monitor's `Dedup`.

    Thresholds have unique names across families, so one is overridden and read by
    its name alone: `HealthConfig(cooldown_steps=100, stall_min_s=0.5).stall_min_s`.
    `families` maps a family's name to its thresholds; an unknown name is a TypeError.
    """

    def __init__(self, **overrides: Any) -> None:
        left = dict(overrides)
        self.dedup: Dedup = _pick(Dedup, left)
        self.families: dict[str, Any] = {f.name: _pick(f.Thresholds, left) for f in FAMILIES}
        if left:
            raise TypeError(f"unknown health threshold(s): {', '.join(sorted(left))}")

    def __getattr__(self, name: str) -> Any:
        for part in (self.__dict__.get("dedup"), *self.__dict__.get("families", {}).values()):
            if name in getattr(part, "__dataclass_fields__", ()):
                return getattr(part, name)
        raise AttributeError(f"{type(self).__name__!r} has no threshold {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HealthConfig):
            return NotImplemented
        return (self.dedup, self.families) == (other.dedup, other.families)

    def __repr__(self) -> str:
        return f"HealthConfig(dedup={self.dedup!r}, families={self.families!r})"


class HealthMonitor:
    """Keeps bounded windows of the metric history and turns them into warnings."""

    def __init__(
        self,
        preset: Any = None,
        *,
        gpu_memory_bytes: int | None = None,
        config: HealthConfig | None = None,
        device: str | None = None,
    ) -> None:
        self.config = config or HealthConfig()
        # A Preset or a bare TrainConfig; without one, the lr rules that need the preset stay quiet.
        self.train = getattr(preset, "train", preset)
        self.model = getattr(preset, "model", None)  # a bare TrainConfig has none
        self.gpu_memory_bytes = gpu_memory_bytes
        self.device = device  # the run's device ("cpu", "cuda:0"): a tip names what fits it
        self._start()

    def _start(self) -> None:
        """Fresh families and a fresh memory."""
        self._ctx = Context(self.train, self.gpu_memory_bytes, self._emit, self.device)
        self._ctx.model = self.model
        self._fired: dict[str, list[Any]] = {}  # rule -> [step, measure] of its last warning
        self._families: list[Family] = [
            family(self.config.families[family.name], self._ctx) for family in FAMILIES
        ]
        self._step_checks = [f.on_step for f in self._families if f.on_step is not None]
        self._eval_checks = [f.on_eval for f in self._families if f.on_eval is not None]
        self._silence_checks = [f.on_silence for f in self._families if f.on_silence is not None]

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
            recent = 0 <= at - last_step < self.config.dedup.cooldown_steps
            worse = (
                math.isfinite(measure)
                and last_measure > 0
                and measure >= last_measure * self.config.dedup.refire_worse
            )
            if recent and not worse:
                return False
        self._fired[warning.rule] = [int(at), float(measure) if math.isfinite(measure) else 0.0]
        out.append(warning)
        return True

    def _went_back(self, step: int) -> None:
        """Steps went back (a rollback): forget what came after, as the trainer's restored monitor did."""
        for family in self._families:
            family.went_back(step)
        self._fired = {rule: v for rule, v in self._fired.items() if v[0] < step}

    # ----------------------------------------------------------------- observations

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
        ctx = self._ctx
        if step < ctx.last_step:
            self._went_back(step)
        ctx.last_step = step
        point = StepPoint(
            step, loss, grad_norm, lr, tokens_per_s, vram_bytes, scaler_skipped, lr_scale
        )
        out: list[HealthWarning] = []
        for check in self._step_checks:
            check(out, point)
        return out

    def observe_eval(
        self, step: int, val_loss: float | None, train_loss: float | None = None
    ) -> list[HealthWarning]:
        """Check one evaluation (val loss, and the train-split loss when measured)."""
        step = int(step)
        out: list[HealthWarning] = []
        for check in self._eval_checks:
            check(out, step, val_loss, train_loss)
        return out

    def check_stalled(
        self, now: float, last_event_time: float, typical_interval_s: float | None
    ) -> list[HealthWarning]:
        """A warning when a live run has written nothing for much longer than its usual interval."""
        out: list[HealthWarning] = []
        for check in self._silence_checks:
            check(out, now, last_event_time, typical_interval_s)
        return out

    def replay(self, records: Iterable[dict[str, Any]]) -> list[HealthWarning]:
        """Feed recorded `step` and `eval` events through the rules; returns every warning raised.

        The fields are those the trainer writes (docs/run-directory.md).
        """
        out: list[HealthWarning] = []
        for record in records:
            kind = record.get("event")
            if kind == "step":
                out.extend(
                    self.observe_step(
                        int(record.get("step", 0) or 0),
                        as_float(record.get("loss")),
                        as_float(record.get("grad_norm")),
                        as_float(record.get("lr")),
                        as_float(record.get("tokens_per_s")),
                        vram_bytes=as_float(record.get("vram_bytes")),
                        scaler_skipped=bool(record.get("scaler_skipped", False)),
                        lr_scale=as_float(record.get("lr_scale")) or 1.0,
                    )
                )
            elif kind == "eval":
                out.extend(
                    self.observe_eval(
                        int(record.get("step", 0) or 0),
                        as_float(record.get("val_loss")),
                        as_float(record.get("train_loss")),
                    )
                )
        return out

    # ----------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """The monitor's memory as small, JSON-safe data (windows are bounded; values are finite)."""
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "last_step": self._ctx.last_step,
            "fired": {k: list(v) for k, v in self._fired.items()},
        }
        for family in self._families:
            state.update(family.state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved (a resumed or rolled-back run continues where it was).

        A state this version cannot read (another format, damaged) starts the monitor
        afresh rather than failing the resume: the windows refill within tens of steps.
        """
        try:
            if int(state.get("version", 0)) != STATE_VERSION:
                raise ValueError("another state format")
            for family in self._families:
                family.load(state)
            self._ctx.last_step = int(state.get("last_step", -1))
            self._fired = {
                str(k): [int(v[0]), float(v[1])] for k, v in state.get("fired", {}).items()
            }
        except (AttributeError, KeyError, IndexError, TypeError, ValueError):
            self._start()
