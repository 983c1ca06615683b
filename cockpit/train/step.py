"""One optimizer step, as the trainer runs it and the memory probe measures it.

`StepRunner.run(x, y, micro_batch)` is the whole step on one batch of sequences:
forward and backward over micro-batches of at most `micro_batch` sequences
(autocast; each micro-batch's loss weighted so the step's loss is the mean over all
its sequences whatever the split; DDP gradient sync on the last micro-batch only),
then GradScaler unscale, the clip call (which measures the global grad norm, with
max_norm=inf when clipping is off), the optimizer step and the scaler update. It
never syncs with the host: the loss and the norm it returns stay on the device.

`run_with_oom_retry` adds the trainer's out-of-memory response: halve the
micro-batch, raise the accumulation so the step keeps the same sequences, warn
(`oom`), and redo the step; an EngineError at micro-batch 1 or with retry off.

Any caller with a model, an optimizer, a GradScaler, an autocast context and a
batch drives one step the same way: build a StepRunner and call `run`.
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch

from cockpit.health import oom_warning
from cockpit.train.faults import Faults
from cockpit.train.runtime import EngineError, one_line

if TYPE_CHECKING:
    from torch.distributed.fsdp import FSDPModule


@dataclass(frozen=True)
class Split:
    """How a step's sequences are cut: micro-batches of `micro_batch`, `grad_accum` of them."""

    micro_batch: int
    grad_accum: int

    def halved(self, n_seq: int) -> Split:
        """Half the micro-batch; accumulation ceil(n_seq / half), the last micro-batch may be smaller."""
        micro_batch = self.micro_batch // 2
        return Split(micro_batch, -(-n_seq // micro_batch))


@dataclass
class StepRunner:
    """What one optimizer step drives; `run` does the step."""

    model: Any  # what runs forward: the model itself, or it compiled and/or DDP-wrapped
    raw_model: torch.nn.Module  # the model whose parameters are clipped
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    autocast: AbstractContextManager[Any] = field(default_factory=contextlib.nullcontext)
    grad_clip: float = 0.0  # the global grad-norm clip; 0 = off (the norm is still measured)
    ddp: bool = False  # `model` is DistributedDataParallel: sync gradients on the last micro-batch
    fsdp: bool = (
        False  # `raw_model` is FSDP2-sharded: reduce-scatter gradients on the last micro-batch
    )
    faults: Faults = field(default_factory=Faults)  # test hook: injected out-of-memory errors

    def run(
        self, x: torch.Tensor, y: torch.Tensor, micro_batch: int, loss_factor: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on (x, y); returns (mean loss, grad norm before clipping), on the device."""
        n = x.size(0)
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=x.device)
        starts = range(0, n, micro_batch)
        for i, start in enumerate(starts):
            xb, yb = x[start : start + micro_batch], y[start : start + micro_batch]
            self.faults.check_oom(xb.size(0))
            last = i == len(starts) - 1
            sync = self.model.no_sync() if self.ddp and not last else contextlib.nullcontext()
            if self.fsdp:
                cast("FSDPModule", self.raw_model).set_requires_gradient_sync(last)
            with sync:
                with self.autocast:
                    # drop the logits now: holding them through backward costs 2 bytes per logit
                    loss = self.model(xb, yb)[1]
                if loss_factor != 1.0:
                    loss = loss * loss_factor
                weight = xb.size(0) / n  # mean over all sequences of the step, whatever the split
                scaled = loss * weight if weight != 1.0 else loss
                self.scaler.scale(scaled).backward()
            total += scaled.detach().float()
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        # The clip call already computes the global norm; with clipping off, max_norm=inf only measures.
        max_norm = self.grad_clip if self.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), max_norm)
        if self.fsdp:  # a DTensor over the shards: the global norm as a plain tensor
            from cockpit.train.sharded import full_norm

            norm = full_norm(norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return total, norm.detach()

    def scale(self) -> torch.Tensor | None:
        """A device copy of the GradScaler's scale after the step (fp16 only), read back later."""
        scale: torch.Tensor | None = getattr(self.scaler, "_scale", None)
        if self.scaler.is_enabled() and scale is not None:
            return scale.detach().clone()
        return None


def run_with_oom_retry(
    runner: StepRunner,
    x: torch.Tensor,
    y: torch.Tensor,
    split: Split,
    loss_factor: float,
    *,
    oom_retry: bool,
    step: int,
    warn: Callable[[Any], None],
) -> tuple[torch.Tensor, torch.Tensor, Split]:
    """One step; on out-of-memory, halve the micro-batch (same sequences) and redo it.

    `step` is the number the step will have (for the `oom` warning, handed to `warn`);
    returns (loss, grad norm, the split the step ran with).
    """
    while True:
        try:
            loss, norm = runner.run(x, y, split.micro_batch, loss_factor)
            return loss, norm, split
        except torch.OutOfMemoryError as exc:
            message = one_line(str(exc), 200)
        # Out of the except block: the error's traceback, which holds the step's activations, is gone.
        split = _after_oom(runner, split, x, message, oom_retry=oom_retry, step=step, warn=warn)


def _after_oom(
    runner: StepRunner,
    split: Split,
    x: torch.Tensor,
    message: str,
    *,
    oom_retry: bool,
    step: int,
    warn: Callable[[Any], None],
) -> Split:
    """Free the failed step's memory; the smaller split to retry with, or an EngineError."""
    runner.optimizer.zero_grad(set_to_none=True)
    gc.collect()
    if x.device.type == "cuda":
        torch.cuda.empty_cache()
    mb, accum = split.micro_batch, split.grad_accum
    if not oom_retry:
        raise EngineError(
            f"out of memory at micro-batch {mb} ({message}); lower train.batch_size and raise train.grad_accum, "
            "or set train.oom_retry=true",
            kind="oom",
        )
    if mb <= 1:
        warn(oom_warning(step, batch_size=mb, grad_accum=accum))
        raise EngineError(
            f"out of memory even at micro-batch 1 ({message}); the model does not fit: use a smaller model "
            "or model.block_size, train.activation_checkpointing, or a bigger GPU",
            kind="oom",
        )
    new = split.halved(x.size(0))
    warn(
        oom_warning(
            step,
            batch_size=mb,
            grad_accum=accum,
            new_batch_size=new.micro_batch,
            new_grad_accum=new.grad_accum,
        )
    )
    return new
