"""Predicted versus measured peak training memory for every preset, as a markdown table.

Needs a CUDA GPU. For each preset that fits (or each SPEC given), the memory probe
child (cockpit/train/probe.py) runs a few real training steps at the suggested
micro-batch and two others (half of it, and double it where the estimate says that
fits, else a quarter), and reads torch.cuda.max_memory_reserved(). The prediction is
the analytic estimate's reserved part (total less the CUDA context), never a stored
probe calibration. Beside the measured allocated peak it prints the traced peak of live
tensors (cockpit/train/trace.py, the same step on fake CUDA tensors) at the same sizes. Target (ANCHORS.md): within +-10%, never more than 5% under.

    python bench/vram_table.py [SPEC ...] [--steps 3] [--out table.md] [--json raw.json]

A SPEC is a preset name with optional overrides: "gpt2_124m:train.compile=true".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cockpit.cli.plan import probe_command, trace_command  # noqa: E402
from cockpit.common.format import human_bytes  # noqa: E402
from cockpit.plan.allocator import child_alloc_env  # noqa: E402
from cockpit.plan.estimate import DEFAULT_HEADROOM, estimate, suggest_batch  # noqa: E402
from cockpit.plan.gpu import local_gpu_spec  # noqa: E402
from cockpit.plan.presets import Preset, apply_overrides, list_presets, load_preset  # noqa: E402


def parse_spec(spec: str) -> Preset:
    """'name:key=value:key=value' -> the preset with those overrides."""
    name, *pairs = spec.split(":")
    preset = load_preset(name)
    return apply_overrides(preset, pairs) if pairs else preset


def batches_for(preset: Preset, gpu) -> list[int]:  # noqa: ANN001
    """The suggested micro-batch, half of it, and double it if that fits (else a quarter)."""
    suggestion = suggest_batch(preset, gpu)
    s = suggestion.micro_batch if suggestion else preset.train.batch_size
    budget = gpu.usable_bytes * (1 - DEFAULT_HEADROOM)
    third = (
        2 * s
        if estimate(preset, gpu, batch_size=2 * s).memory.total_bytes <= budget
        else max(1, s // 4)
    )
    return sorted({max(1, s // 2), s, third})


def run_probe(preset: Preset, batches: list[int], steps: int) -> dict:
    """One probe child for one preset (a fresh process: a clean allocator and context)."""
    started = time.monotonic()
    proc = subprocess.run(
        probe_command(preset, batches, steps),
        capture_output=True,
        text=True,
        cwd=REPO,
        env=child_alloc_env(dict(os.environ)),  # the allocator mode a training child runs with
    )
    lines = proc.stdout.strip().splitlines()
    if not lines:
        return {
            "error": (proc.stderr.strip().splitlines() or ["no output"])[-1],
            "seconds": time.monotonic() - started,
        }
    result = json.loads(lines[-1])
    result["seconds"] = time.monotonic() - started
    return result


def run_trace(preset: Preset, batches: list[int], dtype: str) -> dict[int, int]:
    """Traced peak live bytes by micro-batch (cockpit/train/trace.py, fake CUDA tensors); {} when it cannot run."""
    proc = subprocess.run(
        trace_command(preset, batches, dtype), capture_output=True, text=True, cwd=REPO
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {}
    return {p["batch"]: p["peak_bytes"] for p in json.loads(lines[-1])["points"]}


def label(preset: Preset, spec: str) -> str:
    return spec if ":" in spec else preset.name


def main(argv: list[str] | None = None) -> int:
    """Measure, print the markdown table, and optionally keep it and the raw numbers."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("specs", nargs="*", help="presets (default: every built-in preset)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the markdown table here too")
    parser.add_argument("--json", type=Path, help="write the raw measurements here")
    args = parser.parse_args(argv)
    os.environ.setdefault(
        "GPT_COCKPIT_CACHE", tempfile.mkdtemp(prefix="vram-table-")
    )  # no stored calibration
    gpu = local_gpu_spec()
    if gpu is None:
        print(
            "vram_table: no CUDA GPU on this machine (NVML sees none); run it where there is one",
            file=sys.stderr,
        )
        return 2
    specs = args.specs or [p.name for p in list_presets() if p.builtin]
    header = [
        f"Peak training memory on {gpu.name} ({human_bytes(gpu.memory_bytes)}), {args.steps} steps per size; "
        "predicted = analytic estimate less the CUDA context, measured = torch.cuda.max_memory_reserved(); "
        "traced = the step's peak of live tensors on fake CUDA tensors, to compare with measured allocated.",
        "",
        "| preset | micro-batch | predicted | measured | error | measured allocated | traced live | activations form |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    rows: list[str] = []
    raw: list[dict] = []
    context = None
    print("\n".join(header), flush=True)
    for spec in specs:
        preset = parse_spec(spec)
        if estimate(preset, gpu, batch_size=1).memory.total_bytes > gpu.usable_bytes:
            rows.append(f"| {label(preset, spec)} | - | does not fit | - | - | - | - | - |")
            print(rows[-1], flush=True)
            continue
        batches = batches_for(preset, gpu)
        result = run_probe(preset, batches, args.steps)
        traced = run_trace(preset, batches, estimate(preset, gpu).dtype)
        context = result.get("context_bytes", context)
        allocated = dict((b, a) for b, a in result.get("allocated", []))
        measured = dict((b, r) for b, r in result.get("points", []))
        for batch in batches:
            est = estimate(preset, gpu, batch_size=batch)
            predicted = est.memory.reserved_bytes
            entry = {
                "spec": spec,
                "batch": batch,
                "predicted_reserved": predicted,
                "measured_reserved": measured.get(batch),
                "measured_allocated": allocated.get(batch),
                "traced_live": traced.get(batch),
                "breakdown": dict(est.memory.items()),
                "seconds": result.get("seconds"),
            }
            raw.append(entry)
            if batch in measured:
                err = 100 * (predicted - measured[batch]) / measured[batch]
                row = (
                    f"| {label(preset, spec)} | {batch} | {human_bytes(predicted)} | {human_bytes(measured[batch])} | "
                    f"{err:+.1f}% | {human_bytes(allocated[batch])} | "
                    f"{human_bytes(traced[batch]) if batch in traced else '-'} | {est.memory.activation_form} |"
                )
            else:
                why = result.get("failed", {}).get(str(batch)) or result.get("error", "no result")
                row = f"| {label(preset, spec)} | {batch} | {human_bytes(predicted)} | failed: {why[:60]} | - | - | - | - |"
            rows.append(row)
            print(row, flush=True)
    errors = [
        100 * (e["predicted_reserved"] - e["measured_reserved"]) / e["measured_reserved"]
        for e in raw
        if e["measured_reserved"]
    ]
    footer = [""]
    if errors:
        footer.append(
            f"{len(errors)} measurements: error from {min(errors):+.1f}% to {max(errors):+.1f}%, "
            f"mean |error| {sum(abs(e) for e in errors) / len(errors):.1f}%."
        )
    if context is not None:
        footer.append(
            f"CUDA context outside the reserved pool: {human_bytes(context)} (the estimate assumes 512 MiB)."
        )
    print("\n".join(footer))
    if args.out:
        args.out.write_text("\n".join(header + rows + footer) + "\n", encoding="utf-8")
    if args.json:
        args.json.write_text(
            json.dumps({"gpu": gpu.name, "context_bytes": context, "rows": raw}, indent=1),
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
