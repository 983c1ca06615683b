"""The memory probe child: a few real training steps at two or more micro-batch sizes on CUDA.

`python -m cockpit.train.probe --preset-json JSON --batches 8,16 --steps 2` prints one
JSON line: {"gpu_name": ..., "points": [[batch, peak_reserved_bytes], ...],
"allocated": [[batch, peak_allocated_bytes], ...], "context_bytes": ..., "failed": {...}}.
The model is built (and compiled, if the preset asks) once; only the batch changes
between probes, so there is never one compile per candidate size. A step is the
trainer's own (cockpit/train/step.py), with the model, optimizer, GradScaler and
autocast built as the trainer builds them, so what is measured is what trains.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from typing import Any

import torch

from cockpit.plan.presets import Preset, preset_from_dict
from cockpit.train import optim, setup
from cockpit.train.faults import Faults
from cockpit.train.runtime import Dist, EngineError, enable_tf32, resolve_dtype
from cockpit.train.step import StepRunner


def _context_bytes(device: torch.device) -> int:
    """Device memory in use beyond torch's reserved pool: the CUDA context (exact only when alone on the GPU)."""
    torch.empty(1, device=device)  # creates the context
    free, total = torch.cuda.mem_get_info(device)
    return int(total - free - torch.cuda.memory_reserved(device))


def build_runner(preset: Preset, device: torch.device, faults: Faults | None = None) -> StepRunner:
    """The preset's model, optimizer, GradScaler and autocast on `device`, as the trainer builds them."""
    t = preset.train
    dtype = resolve_dtype(t.dtype, device)
    if device.type == "cuda":
        enable_tf32()
    raw_model, model = setup.build_models(preset, device, Dist(), warn=lambda *_: None)
    raw_model.train()
    return optim.build_runner(
        model, raw_model, t, device, dtype, faults=faults if faults is not None else Faults()
    )


def probe_size(runner: StepRunner, batch: int, steps: int, preset: Preset) -> str | None:
    """`steps` optimizer steps on `batch` random sequences each; None, or why memory ran out."""
    m = preset.model
    device = next(runner.raw_model.parameters()).device
    try:
        for _ in range(steps):
            x = torch.randint(0, m.vocab_size, (batch, m.block_size), device=device)
            runner.run(x, x, micro_batch=batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
    except torch.OutOfMemoryError as exc:
        message = str(exc).splitlines()[0][:200]
    else:
        return None
    runner.optimizer.zero_grad(set_to_none=True)  # drop the step's tensors before the next size
    return message


def measure(preset_json: str, batches: list[int], steps: int) -> dict[str, Any]:
    """Peak reserved and allocated bytes over `steps` optimizer steps at each micro-batch size."""
    preset = preset_from_dict(json.loads(preset_json))
    device = torch.device("cuda")
    context = _context_bytes(device)
    runner = build_runner(preset, device)
    points: list[list[int]] = []
    allocated: list[list[int]] = []
    failed: dict[int, str] = {}
    for batch in batches:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        problem = probe_size(runner, batch, steps, preset)
        if problem is not None:
            failed[batch] = problem
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
    try:
        result = measure(args.preset_json, batches, args.steps)
    except EngineError as exc:  # a dtype this GPU lacks: the trainer would refuse it too
        print(f"probe: {exc}", file=sys.stderr)
        return 1
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
