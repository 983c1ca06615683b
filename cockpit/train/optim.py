"""The optimizer, GradScaler and autocast of a run, built the same way for the trainer and the probe.

Optimizers are built by name (`train.optimizer`) from OPTIMIZERS: a builder takes the
model, the train section and the device and returns a torch optimizer whose param
groups carry the learning rate the trainer sets at each step (`set_lr`). adamw is torch's
AdamW, with the fused kernel where torch has one (CUDA, CPU), else foreach, over the model's
`optimizer_groups(weight_decay)`. muon: the parameter-golf baseline's split (cockpit/train/muon.py),
Muon for the matrices and Adam for embeddings, head and scalars, each role at its own rate
(`param_roles`, `role_lrs`); `apply_schedule` sets every group's rate from the one schedule.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch

from cockpit.plan.presets import TrainConfig
from cockpit.train.muon import MuonAdam, momentum_at
from cockpit.train.runtime import AMP_DTYPES, EngineError
from cockpit.train.step import StepRunner

OptimizerBuilder = Callable[[Any, TrainConfig, torch.device], torch.optim.Optimizer]


def _adamw(model: Any, t: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW over the model's decay / no-decay groups, with the fused kernel where this torch
    has one for the device (CUDA; CPU from torch 2.4: 0.6 against 1.8 ms a step for the
    nanoGPT CPU shape), else the foreach one."""
    betas = (t.beta1, t.beta2)
    try:
        return torch.optim.AdamW(
            model.optimizer_groups(t.weight_decay), lr=t.lr, betas=betas, fused=True
        )
    except RuntimeError:  # no fused kernel for this device in this torch (fresh groups: the
        # failed constructor has already written its defaults into the first ones)
        return torch.optim.AdamW(
            model.optimizer_groups(t.weight_decay), lr=t.lr, betas=betas, foreach=True
        )


ROLES = ("matrix", "embed", "head", "scalar")


def param_roles(model: Any) -> dict[str, list[torch.nn.Parameter]]:
    """The model's trainable parameters by role, each once (a tied head is its embedding).

    embed   weights of nn.Embedding modules
    head    an untied output head (a parameter or module named lm_head)
    matrix  every other parameter of 2 or more dimensions, except the architecture's control
            tensors (its spec's control_patterns: golf's residual mixes, scales, gains, skips)
    scalar  the rest: norms, gains, scales, biases, residual mixes, skip weights
    """
    patterns = getattr(model, "control_patterns", ())
    embed_ids = {id(mod.weight) for mod in model.modules() if isinstance(mod, torch.nn.Embedding)}
    roles: dict[str, list[torch.nn.Parameter]] = {role: [] for role in ROLES}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in embed_ids:
            role = "embed"
        elif (
            "lm_head" in name.split(".")[:-1] or name == "lm_head"
        ):  # your own model's: net.lm_head
            role = "head"
        elif p.dim() >= 2 and not any(pattern in name for pattern in patterns):
            role = "matrix"
        else:
            role = "scalar"
        roles[role].append(p)
    return roles


def role_lrs(model: Any, t: TrainConfig) -> dict[str, float]:
    """Each role's base learning rate: seed 001's MATRIX_LR, TIED_EMBED_LR or EMBED_LR, HEAD_LR, SCALAR_LR."""
    roles = param_roles(model)
    tied = not roles["head"]
    return {
        "matrix": t.matrix_lr,
        "embed": t.tied_embed_lr if tied else t.embed_lr,
        "head": t.head_lr,
        "scalar": t.scalar_lr,
    }


def _muon(model: Any, t: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Muon for the matrices, Adam for embeddings, head and scalars, each role at its own rate."""
    roles = param_roles(model)
    lrs = role_lrs(model, t)
    groups: list[dict[str, Any]] = []
    for role in ROLES:
        if not roles[role]:
            continue
        group: dict[str, Any] = {
            "params": roles[role],
            "role": role,
            "lr": lrs[role],
            "base_lr": lrs[role],
        }
        if role == "matrix":
            group.update(
                kind="muon",
                momentum=t.muon_momentum_warmup_start
                if t.muon_momentum_warmup_steps > 0
                else t.muon_momentum,
                nesterov=True,
                backend_steps=t.muon_backend_steps,
                weight_decay=t.weight_decay,
            )
        else:
            group.update(kind="adam", betas=(t.beta1, t.beta2), eps=t.adam_eps)
        groups.append(group)
    return MuonAdam(groups)


OPTIMIZERS: dict[str, OptimizerBuilder] = {"adamw": _adamw, "muon": _muon}


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


def apply_schedule(optimizer: torch.optim.Optimizer, step: int, lr: float, t: TrainConfig) -> None:
    """The step's hyperparameters: `lr` (the schedule's, for train.lr) and Muon's momentum.

    A group with a `base_lr` (the muon optimizer's per-role groups) gets base_lr x lr / train.lr:
    one multiplier for every group, as the reference's lr_mul. Other groups get `lr` itself.
    Muon groups get the momentum of the warmup from muon_momentum_warmup_start to muon_momentum.
    """
    mult = lr / t.lr if t.lr else 0.0
    momentum = None
    for group in optimizer.param_groups:
        base = group.get("base_lr")
        group["lr"] = base * mult if base is not None else lr
        if group.get("kind") == "muon":
            if momentum is None:
                momentum = momentum_at(
                    step,
                    t.muon_momentum_warmup_start,
                    t.muon_momentum,
                    t.muon_momentum_warmup_steps,
                )
            group["momentum"] = momentum


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
