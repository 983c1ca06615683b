"""This machine's CPU training speed: a few real steps of a small model, timed.

`python -m cockpit.train.speed [--seconds 4]` prints one JSON line:
{"flops_per_s": ..., "tokens_per_s": ..., "step_ms": ..., "threads": ..., "torch": ...,
"runtime_rss_bytes": ..., "seconds": ...}.

The step is the trainer's own (cockpit/train/step.py, built by optim.build_runner as a CPU
run builds it, fp32) on a 4-layer, 256-wide GPT over 256 tokens, with the child's thread
policy (cockpit/train/threads.py). `flops_per_s` is the model's training FLOPs per token
(6N + 12LHQT, cockpit.plan.estimate.flops_per_token) times the tokens per second: the rate at
which this machine does the work a preset's ETA counts. `runtime_rss_bytes` is the process's
resident memory with torch loaded and before the model is built: the host RAM a CPU run needs
beyond its tensors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from cockpit.train.threads import wait_politely

CALIBRATION_SHAPE = {
    "model.n_layer": 4,
    "model.n_head": 4,
    "model.n_embd": 256,
    "model.block_size": 256,
    "model.vocab_size": 512,
    "train.batch_size": 8,
    "train.grad_accum": 1,
    "train.dtype": "fp32",
    "train.compile": False,
}


def measure(seconds: float) -> dict[str, float | int | str]:
    """Time steps of the calibration model for about `seconds` (after one warm-up step)."""
    import psutil
    import torch

    from cockpit.train.runtime import set_threads

    set_threads()  # the thread count a CPU run uses (train/threads.py)
    from cockpit.plan.estimate import flops_per_token
    from cockpit.plan.presets import apply_overrides, load_preset
    from cockpit.train import optim
    from cockpit.train.models import build_model

    start = time.perf_counter()
    runtime_rss = psutil.Process().memory_info().rss
    preset = apply_overrides(load_preset("tiny_char"), CALIBRATION_SHAPE)
    m, t = preset.model, preset.train
    device = torch.device("cpu")
    torch.manual_seed(0)
    model = build_model(m).to(device)
    model.train()
    runner = optim.build_runner(model, model, t, device, "fp32")
    x = torch.randint(0, m.vocab_size, (t.batch_size, m.block_size))
    runner.run(x, x, t.batch_size)  # warm-up: AdamW's state, oneDNN's kernels
    steps, began = 0, time.perf_counter()
    while steps < 2 or time.perf_counter() - began < seconds:
        runner.run(x, x, t.batch_size)
        steps += 1
    elapsed = time.perf_counter() - began
    tokens_per_s = steps * t.batch_size * m.block_size / elapsed
    return {
        "flops_per_s": tokens_per_s * flops_per_token(m),
        "tokens_per_s": tokens_per_s,
        "step_ms": 1000 * elapsed / steps,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "runtime_rss_bytes": int(runtime_rss),
        "seconds": round(time.perf_counter() - start, 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure and print one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m cockpit.train.speed")
    parser.add_argument("--seconds", type=float, default=4.0, help="time spent in timed steps")
    args = parser.parse_args(argv)
    wait_politely()  # before torch loads OpenMP, as the training child
    print(json.dumps(measure(args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
