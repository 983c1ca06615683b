"""The memory probe child: a few real training steps at two micro-batch sizes on CUDA.

`python -m cockpit.train.probe --preset-json JSON --batches 8,16 --steps 2` prints one
JSON line: {"gpu_name": ..., "points": [[batch, peak_reserved_bytes], ...]}. The model
is built (and compiled, if the preset asks) once; only the batch changes between probes,
so there is never one compile per candidate size (dynamic=False recompiles only on a new
batch shape, twice in all).
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from cockpit.presets import preset_from_dict


def measure(preset_json: str, batches: list[int], steps: int) -> dict:
    """Peak reserved bytes after `steps` optimizer steps at each micro-batch size."""
    from cockpit.train.model import build_model

    preset = preset_from_dict(json.loads(preset_json))
    m, t = preset.model, preset.train
    device = torch.device("cuda")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(
        t.dtype if t.dtype != "auto" else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    )
    torch.backends.cuda.matmul.allow_tf32 = True
    model = build_model(m).to(device)
    if t.activation_checkpointing:
        model.set_activation_checkpointing(True)
    runner = torch.compile(model) if t.compile else model
    optimizer = torch.optim.AdamW(model.optimizer_groups(t.weight_decay), lr=t.lr, betas=(t.beta1, t.beta2), fused=True)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
    points = []
    for batch in batches:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(steps):
            x = torch.randint(0, m.vocab_size, (batch, m.block_size), device=device)
            with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                _, loss = runner(x, x)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip or float("inf"))
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        points.append([batch, int(torch.cuda.max_memory_reserved())])
    return {"gpu_name": torch.cuda.get_device_name(device), "points": points}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cockpit.train.probe")
    parser.add_argument("--preset-json", required=True)
    parser.add_argument("--batches", required=True, help="comma-separated micro-batch sizes, smallest first")
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("probe: CUDA is not available", file=sys.stderr)
        return 2
    batches = [int(b) for b in args.batches.split(",")]
    try:
        result = measure(args.preset_json, batches, args.steps)
    except torch.cuda.OutOfMemoryError as exc:
        print(f"probe: out of memory ({str(exc).splitlines()[0]})", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
