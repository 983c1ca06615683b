"""Muon's Newton-Schulz time per optimizer step: batched by shape (the engine's) against one
matrix at a time (what it did before), on a preset's real matrices.

The preset's model is built on the device, its Muon optimizer made by the engine's own
builder, and every parameter given a fixed random gradient; then `--steps` optimizer
steps are timed each way (after `--warmup` untimed ones, CUDA events on a GPU). The
per-matrix path is the engine's update written out one matrix at a time (the same
momentum, Nesterov and scaling), so the difference is the batching alone. One JSON line
on stdout:

    {"preset": ..., "device": ..., "matrices": N, "shapes": K,
     "batched_ms": x, "per_matrix_ms": y, "speedup": y / x}

    python bench/muon_ns.py [--preset golf_baseline] [--device cuda] [--steps 20] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from cockpit.train.model import build_model  # noqa: E402

from cockpit.plan.presets import apply_overrides, load_preset  # noqa: E402
from cockpit.train.muon import MuonAdam, muon_scale, newton_schulz  # noqa: E402
from cockpit.train.optim import build_optimizer  # noqa: E402

QUICK = ["model.n_layer=2", "model.n_embd=64", "model.n_head=2", "model.n_kv_head=2"]


def per_matrix_step(opt: MuonAdam) -> None:
    """The Muon groups' update one matrix at a time (the engine's before batching)."""
    for group in opt.param_groups:
        if group["kind"] != "muon":
            continue
        lr, momentum = group["lr"], group["momentum"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = opt.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p.grad)
            buf = state["momentum_buffer"]
            buf.mul_(momentum).add_(p.grad)
            g = p.grad.add(buf, alpha=momentum) if group["nesterov"] else p.grad
            update = newton_schulz(g, group["backend_steps"], opt._ns_dtype(p))
            p.add_((update * muon_scale(p.shape)).to(p.dtype), alpha=-lr)


def batched_step(opt: MuonAdam) -> None:
    """The engine's Muon update (batched by shape), the Adam groups left out."""
    with torch.no_grad():
        for group in opt.param_groups:
            if group["kind"] == "muon":
                opt._muon_group(group)


def time_ms(step: Callable[[], None], device: torch.device, steps: int, warmup: int) -> float:
    """Mean milliseconds of `step` over `steps` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            step()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / steps
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) * 1000.0 / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="golf_baseline")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a 2-layer model (CPU dry runs)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    preset = apply_overrides(load_preset(args.preset), ["train.optimizer=muon"])
    if args.quick:
        preset = apply_overrides(preset, QUICK)
    model = build_model(preset.model).to(device)
    opt = build_optimizer(model, preset.train, device)
    assert isinstance(opt, MuonAdam), type(opt)
    torch.manual_seed(0)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    for group in opt.param_groups:
        group["lr"] = 1e-6  # the weights barely move: every timed step sees the same shapes
    muon = [p for g in opt.param_groups if g["kind"] == "muon" for p in g["params"]]
    with torch.no_grad():
        per_matrix = time_ms(lambda: per_matrix_step(opt), device, args.steps, args.warmup)
    batched = time_ms(lambda: batched_step(opt), device, args.steps, args.warmup)
    print(
        json.dumps(
            {
                "preset": preset.name,
                "device": str(device),
                "matrices": len(muon),
                "shapes": len({tuple(p.shape) for p in muon}),
                "batched_ms": round(batched, 3),
                "per_matrix_ms": round(per_matrix, 3),
                "speedup": round(per_matrix / batched, 2) if batched > 0 else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
