"""Muon for the matrices, Adam for the rest: the parameter-golf baseline's optimizer (seed 001).

One torch optimizer whose param groups each carry a `kind`:

    muon   2-D weight matrices of the blocks: SGD momentum (nesterov), the update
           orthogonalised by a quintic Newton-Schulz iteration, scaled by
           sqrt(max(1, rows / cols)); optional decoupled weight decay
    adam   embeddings, the untied head, scalars and vectors: Adam (no weight decay)

and a `base_lr`: the trainer sets each group's lr to base_lr times the schedule's
multiplier, so every group follows the one schedule (the reference's lr_mul).

Why our own Muon and not torch.optim.Muon (torch >= 2.9): torch's keeps an EMA
momentum buffer (buf.lerp_(g, 1 - momentum)) where the reference sums
(buf.mul_(momentum).add_(g)). With a fixed momentum the two differ by a constant
factor that the Newton-Schulz normalisation removes, but the reference warms the
momentum from 0.85 to 0.95, and then the two updates differ; torch's also
normalises with norm().clamp(eps) where the reference adds eps. So the update
here is written out, as the reference writes it, and runs on every torch we support.

The iteration runs in bfloat16 on CUDA (as the reference does) and in float32
elsewhere (bfloat16 matmuls on a CPU are slow and gain nothing).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # the reference's quintic (a, b, c)
NS_EPS = 1e-7


def newton_schulz(g: torch.Tensor, steps: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The reference's zeropower_via_newtonschulz5: `g` (2-D, or a batch of matrices) made near-orthogonal.

    Singular values end in a band around 1 (about 0.7 to 1.2 after 5 steps), not exactly at 1:
    the coefficients trade exactness for speed.
    """
    a, b, c = NS_COEFFICIENTS
    x = g.to(dtype)
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + NS_EPS)
    transposed = g.size(-2) > g.size(-1)
    if transposed:
        x = x.mT
    for _ in range(steps):
        A = x @ x.mT
        B = b * A + c * (A @ A)
        x = a * x + B @ x
    return x.mT if transposed else x


def muon_scale(shape: torch.Size) -> float:
    """The reference's shape correction: sqrt(max(1, rows / cols))."""
    return max(1.0, shape[-2] / shape[-1]) ** 0.5


class MuonAdam(torch.optim.Optimizer):
    """Muon over the groups of kind "muon", Adam over the groups of kind "adam".

    Group keys: muon groups `momentum`, `nesterov`, `backend_steps`, `weight_decay`;
    adam groups `betas`, `eps`. Every group has `lr` (set per step) and `base_lr`.
    State: one momentum buffer per Muon parameter; step, exp_avg, exp_avg_sq per Adam one.
    """

    def __init__(self, groups: Iterable[dict[str, Any]], *, ns_dtype: torch.dtype | None = None):
        defaults = {
            "lr": 0.0,
            "base_lr": 0.0,
            "kind": "adam",
            "momentum": 0.95,
            "nesterov": True,
            "backend_steps": 5,
            "weight_decay": 0.0,
            "betas": (0.9, 0.95),
            "eps": 1e-8,
        }
        super().__init__(list(groups), defaults)
        self.ns_dtype = ns_dtype

    def _ns_dtype(self, p: torch.Tensor) -> torch.dtype:
        if self.ns_dtype is not None:
            return self.ns_dtype
        return torch.bfloat16 if p.device.type == "cuda" else torch.float32

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["kind"] == "muon":
                self._muon_group(group)
            else:
                self._adam_group(group)
        return loss

    def _muon_group(self, group: dict[str, Any]) -> None:
        """The momentum and Newton-Schulz update of every matrix of the group.

        Matrices of one shape are orthogonalised together, as one batch: golf's 9 blocks
        have 5 shapes, so 5 iterations of a few batched matmuls replace 54 of small ones
        (about a thousand kernel launches a step, host-bound on a fast GPU). Each matrix
        of a batch gets what it would alone (the norm is per matrix), to float rounding.
        """
        lr, momentum = group["lr"], group["momentum"]
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        for p in params:
            if "momentum_buffer" not in self.state[p]:
                self.state[p]["momentum_buffer"] = torch.zeros_like(p.grad)
        grads = [p.grad for p in params]
        bufs = [self.state[p]["momentum_buffer"] for p in params]
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, grads)
        if group["nesterov"]:
            grads = list(torch._foreach_add(grads, bufs, alpha=momentum))
        by_shape: dict[tuple[Any, ...], list[int]] = {}
        for i, p in enumerate(params):
            # FSDP's sharded DTensors one by one: their matmuls gather, a stack would not
            alone = i if hasattr(grads[i], "device_mesh") else None
            by_shape.setdefault((tuple(p.shape), p.dtype, p.device, alone), []).append(i)
        steps, ns_dtype = group["backend_steps"], self._ns_dtype(params[0])
        for (shape, *_same), members in by_shape.items():
            if len(members) == 1:
                updates = [newton_schulz(grads[members[0]], steps, ns_dtype)]
            else:
                updates = list(
                    newton_schulz(torch.stack([grads[i] for i in members]), steps, ns_dtype)
                )
            scale = muon_scale(torch.Size(shape))
            for i, update in zip(members, updates, strict=True):
                update = update * scale
                p = params[i]
                if group["weight_decay"]:
                    p.mul_(1.0 - lr * group["weight_decay"])
                p.add_(update.to(p.dtype), alpha=-lr)

    def _adam_group(self, group: dict[str, Any]) -> None:
        """torch.optim.Adam's update (no amsgrad, no weight decay), written out."""
        lr, eps = group["lr"], group["eps"]
        beta1, beta2 = group["betas"]
        for p in group["params"]:
            if p.grad is None:
                continue
            g = p.grad
            state = self.state[p]
            if not state:
                state["step"] = (
                    0  # a Python int: no device read per step (and none on fake tensors)
                )
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            t = state["step"]
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg.lerp_(g, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            bias1 = 1 - beta1**t
            bias2_sqrt = math.sqrt(1 - beta2**t)
            denom = (exp_avg_sq.sqrt() / bias2_sqrt).add_(eps)
            p.addcdiv_(exp_avg, denom, value=-lr / bias1)


def momentum_at(step: int, start: float, end: float, warmup_steps: int) -> float:
    """The reference's Muon momentum warmup: linear from `start` at step 0 to `end` at warmup_steps."""
    frac = min(step / warmup_steps, 1.0) if warmup_steps > 0 else 1.0
    return (1 - frac) * start + frac * end
