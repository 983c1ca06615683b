"""A live run that stopped writing events (stalled): asked by readers through check_stalled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cockpit.health.base import Family, HealthWarning, Rule, finite, round_sig

STALLED = Rule(
    "stalled",
    "The run stopped writing events: check `gpt-cockpit runs` (a dead process reads as "
    "crashed) and the run's console.log; a hung data source or a full disk also stop it.",
)


@dataclass(frozen=True)
class StallThresholds:
    stall_factor: float = 10.0  # silence longer than this many typical event intervals
    stall_min_s: float = 60.0  # ... and at least this many seconds


class Stall(Family):
    """Once per silence, and again when the silence doubles (its own de-duplication)."""

    name = "stall"
    rules = (STALLED,)
    Thresholds = StallThresholds
    t: StallThresholds

    def reset(self) -> None:
        self.fired: list[float] | None = None  # [last_event_time, silence_s] of the last warning

    def on_silence(
        self,
        out: list[HealthWarning],
        now: float,
        last_event_time: float,
        typical_interval_s: float | None,
    ) -> None:
        interval = (
            typical_interval_s if finite(typical_interval_s) and typical_interval_s > 0 else 0.0
        )
        limit = max(self.t.stall_factor * interval, self.t.stall_min_s)
        silence = float(now) - float(last_event_time)
        if silence <= limit:
            return
        if self.fired is not None:
            fired_for, fired_silence = self.fired
            if fired_for == last_event_time and silence < fired_silence * 2:
                return
        self.fired = [float(last_event_time), silence]
        step = max(self.ctx.last_step, 0)
        message = (
            f"no events for {silence:.0f} s (usually one every {interval:.1f} s); last step {step}"
        )
        evidence = {
            "silent_s": round_sig(silence, 4),
            "typical_interval_s": round_sig(interval, 4),
            "limit_s": round_sig(limit, 4),
        }
        out.append(STALLED.warning(step, message, evidence))

    def state(self) -> dict[str, Any]:
        return {"stall_fired": self.fired}

    def load(self, state: dict[str, Any]) -> None:
        stall = state.get("stall_fired")
        self.fired = [float(stall[0]), float(stall[1])] if stall else None
