"""The response to an anomaly found at a read-back: halt, or roll back to the last checkpoint.

train.on_anomaly=halt ends the run (HaltTraining, end reason `halted`). rollback
restores checkpoints/last.pt (model, optimizer, RNG, health) but keeps the data
position, so training goes on past the batches that caused the problem, with the
learning rate scaled by train.rollback_lr_factor; after train.max_rollbacks it halts.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from cockpit.train import checkpoint as ckpt
from cockpit.train import snapshot
from cockpit.train.runtime import HaltTraining

if TYPE_CHECKING:
    from cockpit.train.loop import Trainer


def respond(tr: Trainer, warning: Any) -> None:
    """Apply train.on_anomaly (halt or rollback) to an anomaly found at the last read-back."""
    where = (
        f"checkpoints/last.pt from step {tr.last_ckpt_step} is from before the problem"
        if tr.last_ckpt_step is not None
        else "no checkpoint was written before the problem"
    )
    if tr.t.on_anomaly == "halt":
        raise HaltTraining(f"{warning.message}; halted (train.on_anomaly=halt); {where}")
    if tr.rollbacks >= tr.t.max_rollbacks:
        raise HaltTraining(
            f"{warning.message}; halted after {tr.rollbacks} rollbacks (train.max_rollbacks={tr.t.max_rollbacks}); {where}"
        )
    roll_back(tr, warning)


def roll_back(tr: Trainer, warning: Any) -> None:
    """Restore the latest checkpoint but keep the data position; scale the lr; say so."""
    t = tr.t
    try:
        loaded = ckpt.load_latest(tr.ckpt_dir)
    except ckpt.CheckpointError as exc:
        raise HaltTraining(f"{warning.message}; cannot roll back ({exc})") from None
    bad_step, sampler_state = tr.step, tr.train_sampler.state_dict()
    snapshot.restore(tr, loaded.state, counters=False)
    tr.train_sampler.load_state_dict(sampler_state)  # keep going past the batches that caused it
    if tr.scaler.is_enabled():
        tr.last_scale = float(tr.scaler.get_scale())
    tr.rollbacks += 1
    tr.lr_scale *= t.rollback_lr_factor
    skipped = bad_step - tr.step
    lr_note = (
        f"; lr x{t.rollback_lr_factor:g} (now x{tr.lr_scale:g})"
        if t.rollback_lr_factor != 1.0
        else ""
    )
    tr.warn(
        "rollback",
        "warning",
        f"rolled back from step {bad_step} to step {tr.step} ({loaded.path.name}) after: {warning.message}; "
        f"skipping the {skipped} steps of batches since{lr_note}; rollback {tr.rollbacks}/{t.max_rollbacks}",
        "Rollbacks that repeat mean the run itself is unstable: lower train.lr or raise train.warmup_steps.",
        evidence={
            "from_step": bad_step,
            "to_step": tr.step,
            "cause": warning.rule,
            "skipped_steps": skipped,
            "skipped_sequences": skipped * tr.n_seq,
            "lr_scale": tr.lr_scale,
            "rollbacks": tr.rollbacks,
        },
    )
    tr.interval_start = time.perf_counter()
