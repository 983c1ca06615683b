"""Training health: pure rules over the metric history that return warnings with a tip.

The trainer feeds every step (`observe_step`) and evaluation (`observe_eval`)
to a `HealthMonitor`, writes what it returns as `warning` events and, for the
anomaly rules (non-finite values, loss spikes), applies the preset's
`train.on_anomaly` response. Readers (the app, headless mode, `attach`) rebuild
the same picture with `replay(records)` and ask `check_stalled` whether the run
stopped writing events.

Layout: `base` (the warning, Rule, Family, the shared context, small
statistics), `monitor` (HealthMonitor, HealthConfig), and `rules/`, one module
per rule family holding its logic, thresholds and tips. docs/health.md lists
every rule. Pure Python with bounded windows, cheap per call, no torch or numpy.
"""

from __future__ import annotations

from cockpit.health.base import SEVERITIES, HealthWarning
from cockpit.health.monitor import STATE_VERSION, HealthConfig, HealthMonitor
from cockpit.health.rules import ANOMALY_RULES, FAMILIES, RULES, TIPS
from cockpit.health.rules.oom import oom_warning

__all__ = [
    "ANOMALY_RULES",
    "FAMILIES",
    "RULES",
    "SEVERITIES",
    "STATE_VERSION",
    "TIPS",
    "HealthConfig",
    "HealthMonitor",
    "HealthWarning",
    "oom_warning",
]
