"""Priming steps (seed 001's WARMUP_STEPS): train a few steps, then undo them.

The parameter-golf baseline runs WARMUP_STEPS optimizer steps before training so
that compiled kernels, autotuning and allocator pools are ready, then restores the
initial weights and optimizer state: the measured run starts from the true init.
Here the data position and the RNG streams are restored too, so a primed run trains
exactly as an unprimed one (a test checks it), and the wall-clock cap starts after.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch

from cockpit.train import checkpoint as ckpt
from cockpit.train.step import Split, run_with_oom_retry

if TYPE_CHECKING:
    from cockpit.train.loop import Trainer


def prime(tr: Trainer) -> int:
    """Run train.priming_steps steps on a fresh run and restore everything they changed; the count run."""
    n = tr.t.priming_steps
    if n <= 0 or tr.step > 0:
        return 0
    model_state = {k: v.detach().clone() for k, v in tr.raw_model.state_dict().items()}
    optimizer_state = copy.deepcopy(tr.optimizer.state_dict())
    scaler_state = copy.deepcopy(tr.scaler.state_dict()) if tr.scaler.is_enabled() else None
    sampler_state = copy.deepcopy(tr.train_sampler.state_dict())
    rng = ckpt.rng_state(tr.device)
    for _ in range(n):
        x, y = tr.train_sampler.sample(tr.n_seq)
        prime_step(tr, x, y)
    if tr.device.type == "cuda":
        torch.cuda.synchronize(tr.device)
    tr.raw_model.load_state_dict(model_state)
    tr.optimizer.load_state_dict(optimizer_state)
    if scaler_state is not None:
        tr.scaler.load_state_dict(scaler_state)
    tr.train_sampler.load_state_dict(sampler_state)
    ckpt.set_rng_state(rng, tr.device)
    tr.optimizer.zero_grad(set_to_none=True)
    return n


def prime_step(tr: Trainer, x: torch.Tensor, y: torch.Tensor) -> None:
    """One priming step through the out-of-memory retry, as a training step: a micro-batch
    that does not fit is halved (an `oom` warning, the split kept for training), not a crash."""
    _, _, split = run_with_oom_retry(
        tr.runner,
        x,
        y,
        Split(tr.micro_batch, tr.grad_accum),
        1.0,
        oom_retry=tr.t.oom_retry,
        step=tr.step,
        warn=tr.emit_warning,
    )
    tr.micro_batch, tr.grad_accum = split.micro_batch, split.grad_accum
