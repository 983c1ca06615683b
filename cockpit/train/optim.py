"""The optimizer, GradScaler and autocast of a run, built the same way for the trainer and the probe.

Optimizers are built by name (`train.optimizer`) from OPTIMIZERS: a builder takes the
model, the train section and the device and returns a torch optimizer whose param
groups carry the learning rate the trainer sets at each step (`set_lr`). AdamW is the
only one for now: fused kernels on CUDA, foreach on CPU, over the model's
`optimizer_groups(weight_decay)`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch

from cockpit.presets import TrainConfig
from cockpit.train.runtime import AMP_DTYPES, EngineError
from cockpit.train.step import StepRunner

OptimizerBuilder = Callable[[Any, TrainConfig, torch.device], torch.optim.Optimizer]


def _adamw(model: Any, t: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW over the model's decay / no-decay groups; fused on CUDA, foreach on CPU."""
    kernels = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(
        model.optimizer_groups(t.weight_decay), lr=t.lr, betas=(t.beta1, t.beta2), **kernels
    )


OPTIMIZERS: dict[str, OptimizerBuilder] = {"adamw": _adamw}


def build_optimizer(model: Any, t: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer `t.optimizer` names, over `model`'s parameters, at learning rate `t.lr`."""
    builder = OPTIMIZERS.get(t.optimizer)
    if builder is None:
        raise EngineError(
            f"train.optimizer={t.optimizer!r} has no builder in the engine; "
            f"choose one of {', '.join(OPTIMIZERS)}",
            kind="optimizer",
        )
    return builder(model, t, device)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every param group for the next step."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def make_scaler(device: torch.device, dtype: str) -> torch.amp.GradScaler:
    """A GradScaler, enabled for fp16 only (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == "fp16")


def autocast_for(device: torch.device, dtype: str) -> AbstractContextManager[Any]:
    """Autocast to bf16 / fp16 on `device`, or a no-op context for fp32."""
    amp = AMP_DTYPES.get(dtype)
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp)


def build_runner(
    model: Any,
    raw_model: torch.nn.Module,
    train: TrainConfig,
    device: torch.device,
    dtype: str,
    **options: Any,
) -> StepRunner:
    """The run's StepRunner: the optimizer, GradScaler and autocast built here, around `model`.

    The trainer, the memory probe and the tracer all take their step from this one place;
    `options` are StepRunner's own (ddp, faults).
    """
    return StepRunner(
        model,
        raw_model,
        build_optimizer(raw_model, train, device),
        make_scaler(device, dtype),
        autocast_for(device, dtype),
        grad_clip=train.grad_clip,
        **options,
    )
