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
    # micro-batches every torchrun rank has finished a step at (run_with_oom_retry)
    proven: set[int] = field(default_factory=set)

    def run(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        micro_batch: int,
        loss_factor: float = 1.0,
        *,
        agree: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on (x, y); returns (mean loss, grad norm before clipping), on the device.

        `agree` (DDP under torchrun): no gradient sync in the backward; the ranks first agree
        that none ran out of memory (RanksOutOfMemory if one did), then average the gradients.
        """
        n = x.size(0)
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=x.device)
        starts = range(0, n, micro_batch)
        for i, start in enumerate(starts):
            xb, yb = x[start : start + micro_batch], y[start : start + micro_batch]
            self.faults.check_oom(xb.size(0))
            last = i == len(starts) - 1 and not agree
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
        if agree:
            agree_then_average(self.raw_model, x.device)
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


class RanksOutOfMemory(RuntimeError):
    """Another torchrun rank ran out of memory in this step: every rank retries with it."""


def agree_then_average(raw_model: torch.nn.Module, device: torch.device) -> None:
    """Under torchrun, after a step's backward without gradient sync: RanksOutOfMemory if any
    rank ran out of memory, else every gradient averaged over the ranks as DDP would."""
    from cockpit.train.dist import average_gradients, rank_out_of_memory, torchrun_world

    rank = rank_out_of_memory(False, device)
    if rank is not None:
        raise RanksOutOfMemory(f"rank {rank} ran out of memory")
    average_gradients(list(raw_model.parameters()), torchrun_world())


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

    Under torchrun no rank retries alone: a rank out of memory mid-step leaves the others
    waiting in the gradient all-reduce (or DDP's reducer half done). The first step at each
    micro-batch is a checked one (`StepRunner.run(agree=True)`): the ranks agree whether
    any ran out before the gradients are synced, and all retry with the same split. An
    out-of-memory error in a later step, or under FSDP (whose forward already gathers
    weights), ends the run with one line (train/dist.py's failure path stops the others).
    """
    from cockpit.train.dist import torchrun_world

    world = torchrun_world() if runner.ddp or runner.fsdp else 1
    while True:
        checked = world > 1 and runner.ddp and split.micro_batch not in runner.proven
        ran_out = False
        try:
            loss, norm = runner.run(x, y, split.micro_batch, loss_factor, agree=checked)
            runner.proven.add(split.micro_batch)
            return loss, norm, split
        except torch.OutOfMemoryError as exc:
            message, ran_out = one_line(str(exc), 200), True
            if world > 1 and not checked:
                raise _refusal(runner, split, message) from None
        except RanksOutOfMemory as exc:
            message = str(exc)
        # Out of the except block: the error's traceback, which holds the step's activations, is gone.
        if ran_out and checked:
            _free(runner, x)
            _tell_the_others(x.device)
        split = _after_oom(runner, split, x, message, oom_retry=oom_retry, step=step, warn=warn)


def _tell_the_others(device: torch.device) -> None:
    """This rank's side of the agreement: it ran out (the others learn it in theirs)."""
    from cockpit.train.dist import rank_out_of_memory

    rank_out_of_memory(True, device)


def _refusal(runner: StepRunner, split: Split, message: str) -> EngineError:
    """The one line that ends a torchrun run whose rank ran out of memory where none can retry."""
    from cockpit.train.dist import torchrun_rank

    where = (
        "FSDP's forward already gathers weights with the other ranks"
        if runner.fsdp
        else f"a later step than the first at micro-batch {split.micro_batch}"
    )
    return EngineError(
        f"out of memory on rank {torchrun_rank()} at micro-batch {split.micro_batch} ({message}); "
        f"under torchrun no rank can retry alone ({where}): start again with a smaller "
        "train.batch_size and a larger train.grad_accum (the same tokens per step)",
        kind="oom",
    )


def _free(runner: StepRunner, x: torch.Tensor) -> None:
    """Drop the failed step's gradients and cached blocks."""
    runner.optimizer.zero_grad(set_to_none=True)
    gc.collect()
    if x.device.type == "cuda":
        torch.cuda.empty_cache()


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
    _free(runner, x)
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
