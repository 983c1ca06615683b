"""The rule families, listed once; RULES, ANOMALY_RULES and TIPS derive from them.

Each module holds one family: its rules (name, severity, tip), its thresholds
(a dataclass of its own) and its checks. The order below is the order the
monitor runs the families' checks in, so the order of warnings within one step.
docs/health.md says how to add a rule.
"""

from __future__ import annotations

from cockpit.health.base import Family
from cockpit.health.rules.grad import Grad
from cockpit.health.rules.loss import LossSpike
from cockpit.health.rules.lr import Lr
from cockpit.health.rules.nonfinite import Nonfinite
from cockpit.health.rules.oom import Oom
from cockpit.health.rules.stall import Stall
from cockpit.health.rules.throughput import Throughput
from cockpit.health.rules.val import Val
from cockpit.health.rules.variant import Variant
from cockpit.health.rules.vram import Vram

FAMILIES: tuple[type[Family], ...] = (
    Nonfinite,
    LossSpike,
    Grad,
    Lr,
    Val,
    Throughput,
    Vram,
    Stall,
    Oom,
    Variant,
)

RULES = tuple(rule.name for family in FAMILIES for rule in family.rules)
# Rules that trigger the preset's train.on_anomaly response (warn / halt / rollback).
ANOMALY_RULES = frozenset(rule.name for family in FAMILIES for rule in family.rules if rule.anomaly)
TIPS = {rule.name: rule.tip for family in FAMILIES for rule in family.rules}
