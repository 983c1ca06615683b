"""GPU memory close to the device's total (vram_near_limit)."""

from __future__ import annotations

from dataclasses import dataclass

from cockpit.common.format import fmt_float
from cockpit.health.base import Family, HealthWarning, Rule, StepPoint, finite, round_sig

VRAM_NEAR_LIMIT = Rule(
    "vram_near_limit",
    "Close to running out of GPU memory: lower train.batch_size and raise "
    "train.grad_accum to keep tokens per step, or turn on train.activation_checkpointing.",
)


@dataclass(frozen=True)
class VramThresholds:
    vram_margin: float = 0.05  # warn when usage is within this fraction of the GPU's memory


class Vram(Family):
    """Reserved memory against the monitor's gpu_memory_bytes; quiet without one."""

    name = "vram"
    rules = (VRAM_NEAR_LIMIT,)
    Thresholds = VramThresholds
    t: VramThresholds

    def on_step(self, out: list[HealthWarning], point: StepPoint) -> None:
        step, vram_bytes = point.step, point.vram_bytes
        total = self.ctx.gpu_memory_bytes
        if not total or not finite(vram_bytes):
            return
        frac = float(vram_bytes) / float(total)
        margin = self.t.vram_margin
        if not frac >= 1.0 - margin:
            return
        gib = 1 << 30
        message = (
            f"GPU memory use {fmt_float(vram_bytes / gib, '.2f')} GiB is {fmt_float(frac, '.1%')} of "
            f"{total / gib:.2f} GiB "
            f"(within {margin:.0%} of the limit)"
        )
        evidence = {
            "vram_bytes": int(vram_bytes),
            "gpu_memory_bytes": int(total),
            "fraction": round_sig(frac, 4),
        }
        self.ctx.emit(out, VRAM_NEAR_LIMIT.warning(step, message, evidence), frac)
