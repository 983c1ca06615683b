"""The memory probe child: a few real training steps at two or more micro-batch sizes on CUDA.

`python -m cockpit.train.probe --preset-json JSON --batches 8,16 --steps 2` prints one
JSON line: {"gpu_name": ..., "points": [[batch, peak_reserved_bytes], ...],
"allocated": [[batch, peak_allocated_bytes], ...], "context_bytes": ..., "failed": {...}}.
The model is built (and compiled, if the preset asks) once; only the batch changes
between probes, so there is never one compile per candidate size. A step mirrors the
engine's (cockpit/train/loop.py): autocast forward, backward, clip, fused AdamW.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from typing import Any

import torch

from cockpit.presets import preset_from_dict


def _context_bytes(device: torch.device) -> int:
    """Device memory in use beyond torch's reserved pool: the CUDA context (exact only when alone on the GPU)."""
    torch.empty(1, device=device)  # creates the context
    free, total = torch.cuda.mem_get_info(device)
    return int(total - free - torch.cuda.memory_reserved(device))


def measure(preset_json: str, batches: list[int], steps: int) -> dict[str, Any]:
    """Peak reserved and allocated bytes over `steps` optimizer steps at each micro-batch size."""
    from cockpit.train.model import build_model

    preset = preset_from_dict(json.loads(preset_json))
    m, t = preset.model, preset.train
    device = torch.device("cuda")
    context = _context_bytes(device)
    name = t.dtype if t.dtype != "auto" else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name)
    torch.backends.cuda.matmul.allow_tf32 = True
    model = build_model(m).to(device)
    model.train()
    if t.activation_checkpointing:
        model.set_activation_checkpointing(True)
    runner = torch.compile(model) if t.compile else model
    optimizer = torch.optim.AdamW(
        model.optimizer_groups(t.weight_decay), lr=t.lr, betas=(t.beta1, t.beta2), fused=True
    )
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
    points: list[list[int]] = []
    allocated: list[list[int]] = []
    failed: dict[int, str] = {}
    for batch in batches:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            for _ in range(steps):
                optimizer.zero_grad(set_to_none=True)
                x = torch.randint(0, m.vocab_size, (batch, m.block_size), device=device)
                with torch.autocast(
                    "cuda", dtype=dtype or torch.float32, enabled=dtype is not None
                ):
                    loss = runner(x, x)[1]  # as the trainer does: logits not held through backward
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(
                    model.parameters(), t.grad_clip if t.grad_clip > 0 else float("inf")
                )
                scaler.step(optimizer)
                scaler.update()
            torch.cuda.synchronize()
        except torch.OutOfMemoryError as exc:
            failed[batch] = str(exc).splitlines()[0][:200]
            loss = None  # drop the step's tensors before the next size
            optimizer.zero_grad(set_to_none=True)
            continue
        points.append([batch, int(torch.cuda.max_memory_reserved(device))])
        allocated.append([batch, int(torch.cuda.max_memory_allocated(device))])
    return {
        "gpu_name": torch.cuda.get_device_name(device),
        "points": points,
        "allocated": allocated,
        "context_bytes": context,
        "failed": {str(k): v for k, v in failed.items()},
    }


def main(argv: list[str] | None = None) -> int:
    """Run the probe; exit 2 without CUDA, 1 when every size ran out of memory."""
    parser = argparse.ArgumentParser(prog="python -m cockpit.train.probe")
    parser.add_argument("--preset-json", required=True)
    parser.add_argument(
        "--batches", required=True, help="comma-separated micro-batch sizes, smallest first"
    )
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("probe: CUDA is not available", file=sys.stderr)
        return 2
    batches = [int(b) for b in args.batches.split(",")]
    result = measure(args.preset_json, batches, args.steps)
    print(json.dumps(result))
    if not result["points"]:
        print(
            f"probe: out of memory at every size ({'; '.join(result['failed'].values())})",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
