"""What every rule family is built from: the warning, a rule's identity, the family base class,
the context the families share, and small statistics over bounded windows.

Pure Python, no torch or numpy. The rule families (cockpit.health.rules.*) and the
monitor import these public names; nothing here knows any particular rule.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from cockpit.common.numbers import finite as finite  # the rule families import it from here

T = TypeVar("T")

SEVERITIES = ("info", "warning", "critical")


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
        # Imported here: the rule list is built from the families, which build on this module.
        from cockpit.health.rules import ANOMALY_RULES

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
            step=int(step) if finite(step := record.get("step")) else 0,
            message=str(record.get("message", "")),
            tip=str(record.get("tip", "")),
            evidence=dict(evidence) if isinstance(evidence, dict) else {},
        )


@dataclass(frozen=True)
class Rule:
    """A rule's identity: its name (a warning's `rule`), usual severity, tip, and whether it is an anomaly."""

    name: str
    tip: str
    severity: str = "warning"
    anomaly: bool = False  # True: the trainer applies train.on_anomaly (warn / halt / rollback)

    def warning(
        self, step: int, message: str, evidence: dict[str, Any], severity: str | None = None
    ) -> HealthWarning:
        return HealthWarning(
            self.name, severity or self.severity, step, message, self.tip, evidence
        )


Emit = Callable[..., bool]  # (out, warning, measure=1.0, *, at=None) -> appended?


@dataclass(slots=True)
class StepPoint:
    """One optimizer step's metrics as the step rules see them (None or non-finite where so read)."""

    step: int
    loss: Any
    grad_norm: Any
    lr: Any
    tokens_per_s: Any = None
    vram_bytes: Any = None
    scaler_skipped: bool = False  # the fp16 GradScaler skipped this step (inf/NaN gradients)
    lr_scale: float = 1.0  # the trainer's extra lr factor after rollbacks


class Context:
    """What the families share: the preset, the GPU size, the device, the latest step and lr, and `emit`.

    `emit(out, warning, measure=1.0, at=None)` is the monitor's de-duplication: it
    appends the warning to `out` unless the same rule fired recently and is not
    clearly worse (`measure`), and says whether it did. The monitor keeps
    `last_step`; the lr family keeps `last_lr` (the latest finite lr) and `peak_lr`.
    """

    __slots__ = (
        "device",
        "emit",
        "gpu_memory_bytes",
        "last_lr",
        "last_step",
        "model",
        "peak_lr",
        "train",
    )

    def __init__(
        self, train: Any, gpu_memory_bytes: int | None, emit: Emit, device: str | None = None
    ) -> None:
        self.train = train  # a TrainConfig, or None: then the rules that need the preset stay quiet
        self.gpu_memory_bytes = gpu_memory_bytes
        self.device = device  # "cpu", "cuda", "cuda:N", or None (unknown): tips fit the device
        self.emit = emit
        self.last_step = -1
        self.last_lr: float | None = None
        self.peak_lr = 0.0
        self.model: Any = None  # the preset's ModelConfig where known (the variant rules read it)


@dataclass(frozen=True)
class NoThresholds:
    """The thresholds of a family that has none."""


class Family:
    """A group of rules over the same observations: their thresholds, state and checks.

    A subclass sets `name` (unique), `rules`, `Thresholds` (a dataclass of its
    thresholds, each named uniquely across families: HealthConfig overrides them by
    name) and defines the hooks it needs; a hook left None is not called:

    - `on_step(out, point)`, `point` a StepPoint
    - `on_eval(out, step, val_loss, train_loss)`
    - `on_silence(out, now, last_event_time, typical_interval_s)`

    Hooks append warnings to `out` through `self.ctx.emit` (which de-duplicates).
    `reset` sets the fresh state, `went_back(step)` forgets the points at and after
    `step` (a rollback), and `state`/`load` save and restore the state as JSON-safe
    fields of the monitor's state dict (keys unique across families).
    """

    name: ClassVar[str] = ""
    rules: ClassVar[tuple[Rule, ...]] = ()
    Thresholds: ClassVar[type] = NoThresholds
    on_step: Callable[..., None] | None = None
    on_eval: Callable[..., None] | None = None
    on_silence: Callable[..., None] | None = None

    def __init__(self, thresholds: Any, ctx: Context) -> None:
        self.t = thresholds
        self.ctx = ctx
        self.reset()

    def reset(self) -> None:
        """Set the fresh state."""

    def went_back(self, step: int) -> None:
        """Steps went back to `step` (a rollback): forget the points at and after it."""

    def state(self) -> dict[str, Any]:
        return {}

    def load(self, state: dict[str, Any]) -> None:
        """Restore from the monitor's state dict; raise (KeyError, TypeError, ValueError) if unreadable."""


# --------------------------------------------------------------------------- small statistics


def mean_std(values: Any) -> tuple[float, float]:
    """Mean and population standard deviation (plain floats: statistics' exact arithmetic is 10x slower)."""
    n = len(values)
    mean = sum(values) / n  # plain sums: absurd magnitudes give inf here, never an OverflowError
    return mean, math.sqrt(sum((x - mean) * (x - mean) for x in values) / n)


def median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def round_sig(value: float, digits: int = 6) -> float:
    """`value` to `digits` significant digits, for evidence (non-finite values pass through)."""
    return float(f"{value:.{digits}g}") if math.isfinite(value) else value


def window(values: Iterable[T], maxlen: int) -> deque[T]:
    """A bounded deque holding at most `maxlen` (at least 1) of `values`."""
    return deque(values, maxlen=max(1, maxlen))


class Series:
    """A bounded window of (step, value) points; `values` is what the statistics read."""

    __slots__ = ("steps", "values")

    def __init__(self, maxlen: int, state: Any = None) -> None:
        steps, values = state if isinstance(state, list) and len(state) == 2 else ((), ())
        self.steps: deque[int] = window((int(x) for x in steps), maxlen)
        self.values: deque[float] = window((float(x) for x in values), maxlen)

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

    def state(self) -> list[list[Any]]:
        return [list(self.steps), list(self.values)]
