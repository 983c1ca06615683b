"""CUDA out of memory (oom): written by the trainer through `oom_warning`, not observed here."""

from __future__ import annotations

from typing import Any

from cockpit.health.base import Family, HealthWarning, Rule

OOM = Rule(
    "oom",
    "Out of GPU memory: reduce the batch size (train.batch_size) and raise train.grad_accum "
    "to keep tokens per step; train.activation_checkpointing or a shorter block_size also help.",
)


class Oom(Family):
    """No thresholds and no hooks: the trainer builds the warning when an OOM happens."""

    name = "oom"
    rules = (OOM,)


def oom_warning(
    step: int,
    *,
    batch_size: int,
    grad_accum: int,
    new_batch_size: int | None = None,
    new_grad_accum: int | None = None,
) -> HealthWarning:
    """The warning the trainer writes on CUDA OOM: a retry at a smaller micro-batch, or the final stop."""
    evidence: dict[str, Any] = {"batch_size": batch_size, "grad_accum": grad_accum}
    if new_batch_size:
        evidence.update(new_batch_size=new_batch_size, new_grad_accum=new_grad_accum)
        message = (
            f"CUDA out of memory at micro-batch {batch_size}; retrying with micro-batch "
            f"{new_batch_size} x {new_grad_accum} accumulation (same tokens per step)"
        )
        return OOM.warning(int(step), message, evidence)
    message = f"CUDA out of memory at micro-batch {batch_size}; nothing smaller to retry with"
    return OOM.warning(int(step), message, evidence, severity="critical")
