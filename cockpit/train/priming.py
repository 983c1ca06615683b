"""Priming steps (seed 001's WARMUP_STEPS): train a few steps, then undo them.

The parameter-golf baseline runs WARMUP_STEPS optimizer steps before training so
that compiled kernels, autotuning and allocator pools are ready, then restores the
initial weights and optimizer state: the measured run starts from the true init.
Here the data position and the RNG streams are restored too, so a primed run trains
exactly as an unprimed one (a test checks it), and the wall-clock cap starts after.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from cockpit.train import checkpoint as ckpt
from cockpit.train.step import Split, StepRunner, run_with_oom_retry


@dataclass
class Primer:
    """Runs priming steps with the run's step runner and sampler, then undoes them."""

    runner: StepRunner  # the model, optimizer and scaler the steps change
    sampler: Any  # the training BatchSampler (its position is restored)
    device: torch.device
    oom_retry: bool = True  # train.oom_retry: a micro-batch that does not fit is halved
    warn: Callable[[Any], None] = lambda warning: None  # the `oom` warning (a HealthWarning)

    def prime(self, steps: int, n_seq: int, split: Split) -> Split:
        """Run `steps` optimizer steps of `n_seq` sequences and restore everything they changed;
        the micro-batch split that fits (a priming step runs through the out-of-memory retry,
        as a training step does: a micro-batch too large is halved, not a crash)."""
        if steps <= 0:
            return split
        model, optimizer, scaler = self.runner.raw_model, self.runner.optimizer, self.runner.scaler
        model_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        optimizer_state = copy.deepcopy(optimizer.state_dict())
        scaler_state = copy.deepcopy(scaler.state_dict()) if scaler.is_enabled() else None
        sampler_state = copy.deepcopy(self.sampler.state_dict())
        rng = ckpt.rng_state(self.device)
        for _ in range(steps):
            x, y = self.sampler.sample(n_seq)
            _, _, split = run_with_oom_retry(
                self.runner, x, y, split, 1.0, oom_retry=self.oom_retry, step=0, warn=self.warn
            )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
        if scaler_state is not None:
            scaler.load_state_dict(scaler_state)
        self.sampler.load_state_dict(sampler_state)
        ckpt.set_rng_state(rng, self.device)
        optimizer.zero_grad(set_to_none=True)
        return split
