"""The analytic estimate against the traced real step, for every preset at half, its own and double batch.

No GPU needed: the tracer (cockpit/train/trace.py) runs the trainer's step on fake
CUDA tensors and counts live tensor bytes; the analytic figure compared is the
estimate's live part (total less allocator slack and CUDA context), both in the
dtype planned without a GPU (bf16 for `auto`). Prints one row per preset x batch and
then the median |error|, the worst over and the worst under. Goal: median |error|
<= 2%, worst under no lower than -3%.

    python bench/trace_vs_analytic.py [SPEC ...] [--json raw.json]

A SPEC is a preset name with optional overrides: "gpt2_124m:train.grad_accum=2".
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cockpit.common.format import human_bytes  # noqa: E402
from cockpit.plan.estimate import estimate, planning_dtype  # noqa: E402
from cockpit.plan.presets import apply_overrides, list_presets, load_preset  # noqa: E402


def _spec(spec: str):
    name, _, rest = spec.partition(":")
    preset = load_preset(name)
    overrides = [o for o in rest.split(",") if o]
    return (apply_overrides(preset, overrides) if overrides else preset), spec


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("specs", nargs="*")
    parser.add_argument("--json", help="write the raw rows here")
    args = parser.parse_args()
    presets = [_spec(s) for s in args.specs] or [(p, p.name) for p in list_presets() if p.builtin]
    from cockpit.train import trace

    trace.enable_fake_cuda()
    rows = []
    print(f"load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(f"{'preset':34} {'batch':>5} {'analytic':>10} {'traced':>10} {'error':>7} {'peak op'}")
    for preset, label in presets:
        b = preset.train.batch_size
        batches = sorted({max(1, b // 2), b, 2 * b})
        dtype = planning_dtype(preset, None)
        start = time.perf_counter()
        result = trace.trace(preset, batches, dtype)
        for point in result["points"]:
            analytic = estimate(preset, None, batch_size=point["batch"]).memory.live_bytes
            traced = point["peak_bytes"]
            error = (analytic - traced) / traced
            rows.append(
                {
                    "preset": label,
                    "batch": point["batch"],
                    "analytic": analytic,
                    "traced": traced,
                    "error": error,
                }
            )
            print(
                f"{label:34} {point['batch']:>5} {human_bytes(analytic):>10} {human_bytes(traced):>10} "
                f"{100 * error:>+6.1f}% {point['peak_op']}"
            )
        print(f"{'':34} traced {dtype} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    errors = [r["error"] for r in rows]
    inside = sum(-0.03 <= e <= 0.03 for e in errors)
    print(
        f"\n{len(rows)} cases: median |error| {100 * statistics.median(abs(e) for e in errors):.1f}%, "
        f"worst over {100 * max(errors):+.1f}%, worst under {100 * min(errors):+.1f}%, "
        f"{inside} within +-3%"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
