"""The run's counters: the step, tokens seen, lr scale, rollbacks, the micro-batch split, the best val loss.

One object that the loop advances and the parts read; what of it a checkpoint keeps
is its `state_dict` (in the checkpoint's top-level keys, as written since format 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainState:
    """What the loop counts; saved with every checkpoint."""

    batch_size: int  # train.batch_size: the micro-batch a run starts with
    grad_accum: int  # micro-batches per step on this rank (changed by an out-of-memory retry)
    step: int = 0  # optimizer steps done
    tokens_seen: int = 0  # tokens of all ranks trained on
    lr_scale: float = 1.0  # the schedule's factor after rollbacks (train.rollback_lr_factor)
    rollbacks: int = 0
    best_val_loss: float | None = None
    micro_batch: int = 0  # sequences per forward (0: train.batch_size)
    start_accum: int = field(init=False, default=0)  # the preset's accumulation on this rank

    def __post_init__(self) -> None:
        self.start_accum = self.grad_accum  # the preset's split, for a resume whose preset changed
        self.micro_batch = self.micro_batch or self.batch_size

    @property
    def n_seq(self) -> int:
        """This rank's sequences per step (fixed for the run whatever the split)."""
        return self.batch_size * self.start_accum

    def state_dict(self) -> dict[str, Any]:
        """The counters as a checkpoint's top-level keys."""
        return {
            "step": self.step,
            "schedule": {"step": self.step, "lr_scale": self.lr_scale, "rollbacks": self.rollbacks},
            "micro_batch": self.micro_batch,
            "grad_accum": self.grad_accum,
            "best_val_loss": self.best_val_loss,
            "tokens": self.tokens_seen,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Every counter of a checkpoint (a resume); the preset's split if the preset changed it."""
        self.rewind(state)
        sched = state.get("schedule", {})
        self.lr_scale = float(sched.get("lr_scale", 1.0))
        self.rollbacks = int(sched.get("rollbacks", 0))
        self.tokens_seen = int(state.get("tokens", 0))
        self.micro_batch = int(state.get("micro_batch", self.micro_batch))
        self.grad_accum = int(state.get("grad_accum", self.grad_accum))
        if self.micro_batch * self.grad_accum < self.n_seq:  # the preset changed
            self.micro_batch, self.grad_accum = self.batch_size, self.start_accum

    def rewind(self, state: dict[str, Any]) -> None:
        """The step and best val loss of a checkpoint (a rollback keeps the other counters)."""
        self.step = int(state["step"])
        self.best_val_loss = state.get("best_val_loss")
