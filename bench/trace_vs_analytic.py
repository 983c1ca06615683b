"""The analytic estimate against the traced real step, for every preset at half, its own and double batch.

No GPU needed: the tracer (cockpit/train/trace.py) runs the trainer's step on fake
CUDA tensors, counts live tensor bytes and replays every allocation and free through the
caching allocator model (cockpit/plan/allocator.py). Two comparisons, both in the dtype
planned without a GPU (bf16 for `auto`):

- live: the estimate's live part (total less allocator slack and CUDA context) against the
  traced peak of live tensors;
- reserved: the estimate's reserved bytes (live plus the analytic allocator slack, what
  max_memory_reserved() should read) against the allocator model's reserved peak, in the mode
  the training child uses (expandable segments unless PYTORCH_CUDA_ALLOC_CONF says otherwise).
  Goal: median |error| <= 2%, none more than 3% under, none more than 8% over.

The plain allocator's and expandable segments' reserved peaks are printed side by side (the
figures behind the child's choice of mode).

    python bench/trace_vs_analytic.py [SPEC ...] [--json raw.json] [--markdown table.md]

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
from cockpit.plan.allocator import child_allocator_mode  # noqa: E402
from cockpit.plan.estimate import estimate, planning_dtype, reserved_key  # noqa: E402
from cockpit.plan.presets import apply_overrides, list_presets, load_preset  # noqa: E402


def _spec(spec: str):
    name, _, rest = spec.partition(":")
    preset = load_preset(name)
    overrides = [o for o in rest.split(",") if o]
    return (apply_overrides(preset, overrides) if overrides else preset), spec


def _summary(errors: list[float], over: float, under: float) -> str:
    inside = sum(under <= e <= over for e in errors)
    return (
        f"median |error| {100 * statistics.median(abs(e) for e in errors):.1f}%, "
        f"worst over {100 * max(errors):+.1f}%, worst under {100 * min(errors):+.1f}%, "
        f"{inside} of {len(errors)} within {100 * under:+.0f}%..{100 * over:+.0f}%"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("specs", nargs="*")
    parser.add_argument("--json", help="write the raw rows here")
    parser.add_argument("--markdown", help="write the table and summary here (bench/results)")
    args = parser.parse_args()
    presets = [_spec(s) for s in args.specs] or [(p, p.name) for p in list_presets() if p.builtin]
    from cockpit.train import trace

    trace.enable_fake_cuda()
    mode = child_allocator_mode()
    rows = []
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"load: {load}")
    print(
        f"allocator mode of the training child: {mode.conf} ({'default' if mode.ours else 'set by the user'})"
    )
    header = (
        f"{'preset':18} {'batch':>5} {'traced live':>11} {'live err':>8} {'model rsv':>10} "
        f"{'analytic':>10} {'rsv err':>7} {'plain':>10} {'expandable':>10}"
    )
    print(header)
    for preset, label in presets:
        b = preset.train.batch_size
        batches = sorted({max(1, b // 2), b, 2 * b})
        dtype = planning_dtype(preset, None)
        start = time.perf_counter()
        result = trace.trace(preset, batches, dtype)
        for point in result["points"]:
            memory = estimate(preset, None, batch_size=point["batch"]).memory
            traced, modelled = point["peak_bytes"], point[reserved_key()]
            row = {
                "preset": label,
                "batch": point["batch"],
                "dtype": dtype,
                "traced_live": traced,
                "analytic_live": memory.live_bytes,
                "live_error": (memory.live_bytes - traced) / traced,
                "model_reserved": modelled,
                "analytic_reserved": memory.reserved_bytes,
                "reserved_error": (memory.reserved_bytes - modelled) / modelled,
                "reserved_plain": point["reserved_plain_bytes"],
                "reserved_expandable": point["reserved_expandable_bytes"],
                "peak_op": point["peak_op"],
            }
            rows.append(row)
            print(
                f"{label:18} {row['batch']:>5} {human_bytes(traced):>11} "
                f"{100 * row['live_error']:>+7.1f}% {human_bytes(modelled):>10} "
                f"{human_bytes(memory.reserved_bytes):>10} {100 * row['reserved_error']:>+6.1f}% "
                f"{human_bytes(row['reserved_plain']):>10} {human_bytes(row['reserved_expandable']):>10}"
            )
        print(f"{'':18} traced {dtype} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    live = _summary([r["live_error"] for r in rows], 0.03, -0.03)
    reserved = _summary([r["reserved_error"] for r in rows], 0.08, -0.03)
    slack = {
        mode_name: [r[f"reserved_{mode_name}"] / r["traced_live"] - 1 for r in rows]
        for mode_name in ("plain", "expandable")
    }
    modes = "; ".join(
        f"{name}: slack over the live peak median {100 * statistics.median(v):.1f}%, "
        f"mean {100 * statistics.mean(v):.1f}%, {100 * min(v):.1f}%..{100 * max(v):.1f}%"
        for name, v in slack.items()
    )
    print(f"\n{len(rows)} cases. live bytes: {live}")
    print(f"reserved (analytic vs allocator model): {reserved}")
    print(f"allocator modes: {modes}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    if args.markdown:
        table = _markdown(rows, load, mode.conf, live, reserved, modes, args.markdown)
        Path(args.markdown).write_text(table)
    return 0


def _markdown(
    rows: list[dict], load: str, conf: str, live: str, reserved: str, modes: str, out: str
) -> str:
    """The table as committed under bench/results (GiB, errors in percent)."""
    gib = 1024**3
    command = f"python bench/trace_vs_analytic.py --markdown {out}"
    lines = [
        "# Analytic reserved bytes vs the caching allocator model's replay of the traced step",
        "",
        f"`{command}`; CPU-only machine, torch {torch_version()}, load: {load}.",
        f"Training child's allocator mode: `{conf}`.",
        "",
        "| preset | batch | dtype | traced live GiB | analytic live | model reserved GiB "
        "| analytic reserved GiB | error | plain GiB | expandable GiB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['batch']} | {r['dtype']} | {r['traced_live'] / gib:.3f} "
            f"| {100 * r['live_error']:+.1f}% | {r['model_reserved'] / gib:.3f} "
            f"| {r['analytic_reserved'] / gib:.3f} | {100 * r['reserved_error']:+.1f}% "
            f"| {r['reserved_plain'] / gib:.3f} | {r['reserved_expandable'] / gib:.3f} |"
        )
    lines += [
        "",
        f"{len(rows)} cases. Live bytes: {live}.",
        "",
        f"Reserved, analytic against the allocator model: {reserved}.",
        "",
        f"Allocator modes: {modes}.",
        "",
    ]
    return "\n".join(lines)


def torch_version() -> str:
    from importlib.metadata import version

    return version("torch")


if __name__ == "__main__":
    sys.exit(main())
