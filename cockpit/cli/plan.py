"""Planning commands: `presets`, `estimate`, `gpus` and `probe` (Rich tables on stdout)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from typing import Any

from rich import box
from rich.console import Console, JustifyMethod
from rich.table import Table

from cockpit.arch import is_own_model
from cockpit.common.diagnostics import EXIT_FAILED, EXIT_OK, EXIT_USAGE, error, info
from cockpit.common.format import human_bytes, human_count, rough_eta
from cockpit.plan.allocator import child_alloc_env
from cockpit.plan.estimate import (
    COMPILE_NOTE,
    DEFAULT_HEADROOM,
    Estimate,
    as_dict,
    count_params,
    estimate,
    flops_per_token,
    suggest_batch,
)
from cockpit.plan.gpu import (
    CATALOG,
    GpuSpec,
    mixed_note,
    nvml_problem,
    query_gpus,
    resolve_gpu,
    run_gpus,
)
from cockpit.plan.host import (
    HOST_MARGIN,
    CpuSpeed,
    cpu_batch_suggestion,
    cpu_eta_line,
    host_memory,
    measure_cpu_speed,
)
from cockpit.plan.host import as_dict as host_dict
from cockpit.plan.measure import ensure_measured
from cockpit.plan.presets import (
    Preset,
    PresetError,
    apply_overrides,
    list_presets,
    load_preset,
    preset_problems,
)
from cockpit.plan.trace_child import child_command, failure_reason, trace_batches, trace_command

NARROW_PRESETS = 110  # below this many columns the presets table drops heads, width and vocab


def probe_command(preset: Preset, batches: list[int], steps: int) -> list[str]:
    """The argv of the memory probe child for `preset` at `batches` (cockpit/train/probe.py)."""
    return child_command("cockpit.train.probe", preset, batches, "--steps", str(steps))


def _console() -> Console:
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:  # piped or captured: do not squeeze tables into 80 columns
        console = Console(highlight=False, soft_wrap=False, width=max(console.width, 160))
    return console


def _cc(cc: tuple[int, int] | None) -> str:
    return "-" if cc is None else f"{cc[0]}.{cc[1]}"


def _gpu_or_fail(name: str | None, nproc: int = 1) -> tuple[GpuSpec | None, bool]:
    try:
        return resolve_gpu(name, nproc=nproc), True
    except ValueError as exc:
        error(str(exc))
        return None, False


def _preset_or_fail(name: str, overrides: list[str]) -> Preset | None:
    try:
        preset = load_preset(name)
        return apply_overrides(preset, overrides) if overrides else preset
    except PresetError as exc:
        error(str(exc))
        return None


# --------------------------------------------------------------------------- presets


def cmd_presets(args: argparse.Namespace) -> int:
    """List presets with their exact sizes and VRAM against a GPU, or show one in full."""
    gpu, ok = _gpu_or_fail(getattr(args, "gpu", None))
    if not ok:
        return EXIT_USAGE
    if getattr(args, "name", None):
        preset = _preset_or_fail(args.name, getattr(args, "overrides", []) or [])
        if preset is None:
            return EXIT_USAGE
        show_preset(preset, gpu)
        return EXIT_OK
    console = _console()
    presets = list_presets()
    gpu_label = f"{gpu.name} ({human_bytes(gpu.memory_bytes)})" if gpu else "no GPU"
    narrow = console.width < NARROW_PRESETS  # e.g. 80 columns: fewer columns, names kept whole
    vram_header = "peak VRAM" if narrow else f"peak VRAM / {gpu_label}"
    title = f"presets (peak VRAM against {gpu_label})" if narrow else "presets"
    table = Table(
        title=title,
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD if narrow else box.HEAVY_HEAD,
    )
    columns: list[tuple[str, JustifyMethod]] = [
        ("name", "left"),
        ("params", "right"),
        ("layers", "right"),
        ("heads", "right"),
        ("width", "right"),
        ("block", "right"),
        ("vocab", "right"),
        ("batch", "right"),
        (vram_header, "right"),
        ("CPU RAM", "right"),  # a CPU run's host RAM (cockpit.plan.host)
        ("CPU ETA", "right"),  # at this machine's measured speed
        ("arch", "left"),
    ]
    speed = None
    if gpu is not None:  # planning for a GPU: the CPU columns would only crowd the table
        columns = [c for c in columns if not c[0].startswith("CPU")]
    else:  # finished CPU runs' speed where there are any, else the cached calibration
        from cockpit.runs.speed import refresh_cpu_speed

        speed = refresh_cpu_speed(getattr(args, "runs_dir", None))
    shown = [c for c in columns if not narrow or c[0] not in ("heads", "width", "vocab")]
    # name and params stay whole however narrow the terminal: the other columns give way
    whole = {
        "name": max((len(p.name) + (0 if p.builtin else 7) for p in presets), default=4),
        "params": 11,
    }
    for col, justify in shown:
        table.add_column(col, justify=justify, no_wrap=True, min_width=whole.get(col))
    for preset in presets:
        m, t = preset.model, preset.train
        est = estimate(preset, gpu)
        pending = est.figures == "not measured yet"  # your own model, before `estimate` measures it
        if gpu is None:
            vram = "no GPU"
        elif pending:
            vram = "[dim]not traced yet[/]"
        else:
            colour = "green" if est.fits else "red"
            vram = f"[{colour}]{human_bytes(est.peak_bytes)}[/]"
        label = preset.name if preset.builtin else f"{preset.name} [cyan](user)[/]"
        batch = f"{t.batch_size}" + (f"x{t.grad_accum}" if t.grad_accum > 1 else "")
        heads = f"{m.n_head}" + (
            f"/{m.n_kv_head}kv" if m.n_kv_head and m.n_kv_head != m.n_head else ""
        )
        cells = {
            "name": label,
            "params": "[dim]not measured[/]" if pending else f"{est.params:,}",
            "layers": str(m.n_layer),
            "heads": heads,
            "width": str(m.n_embd),
            "block": str(m.block_size),
            "vocab": str(m.vocab_size),
            "batch": batch,
            vram_header: vram,
            "arch": m.arch,
        }
        if gpu is None:
            host = host_memory(preset, "cpu")
            colour = {True: "green", False: "red", None: "yellow"}[host.fits]
            cells["CPU RAM"] = f"[{colour}]{human_bytes(host.total_bytes)}[/]"
            eta = speed.eta_seconds(preset) if speed else None
            cells["CPU ETA"] = rough_eta(eta) if eta is not None else "-"
        table.add_row(*(cells[col] for col, _ in shown))
    console.print(table)
    if gpu is None:
        available = host_memory(presets[0], "cpu").available_bytes if presets else None
        ram = f"{human_bytes(available)} of RAM available" if available else "RAM available unknown"
        rate = (
            f"ETAs at {speed.flops_per_s / 1e9:.1f} GFLOP/s ({speed.source})"
            if speed
            else "no CPU speed measured yet (`gpt-cockpit estimate NAME --device cpu` measures it)"
        )
        console.print(f"CPU columns: a CPU run on this machine, {ram}; {rate}")
    for path, why in preset_problems():
        error(f"skipped {path.name}: {why}")
    return EXIT_OK


def show_preset(preset: Preset, gpu: GpuSpec | None) -> None:
    """One preset in full: every field, then the derived numbers."""
    console = _console()
    origin = "built-in" if preset.builtin else "user"
    console.print(
        f"[bold]{preset.name}[/] ({origin}{', extends ' + preset.extends if preset.extends else ''})  {preset.source_path}"
    )
    if preset.description:
        console.print(preset.description)
    data = preset.to_dict()
    for section in ("model", "train", "data"):
        table = Table(
            title=section, title_justify="left", show_header=False, box=None, pad_edge=False
        )
        table.add_column("field", style="dim")
        table.add_column("value")
        for key, value in data[section].items():
            table.add_row(f"{section}.{key}", json.dumps(value))
        console.print(table)
    print_estimate(estimate(preset, gpu), preset, gpu, console=console)


# --------------------------------------------------------------------------- estimate


def print_estimate(
    est: Estimate,
    preset: Preset,
    gpu: GpuSpec | None,
    *,
    console: Console | None = None,
    headroom: float = DEFAULT_HEADROOM,
) -> None:
    """The derived numbers, the memory breakdown, the verdict and the suggestion."""
    console = console or _console()
    m = preset.model
    facts = Table(show_header=False, box=None, pad_edge=False)
    facts.add_column(style="dim")
    facts.add_column()
    own = bool(est.figures)  # your own model: measured from the module, not a formula
    counted = f"; {est.figures}: counted on the meta device" if own else ""
    facts.add_row(
        "parameters",
        f"{est.params:,} ({human_count(est.params, 2)}; {human_count(est.params_non_embedding, 2)} outside embeddings{counted})",
    )
    flops_note = (
        f"{est.figures}: FlopCounterMode over a training step" if own else "6N + 12·L·H·Q·T"
    )
    facts.add_row("FLOPs per token", f"{human_count(est.flops_per_token, 2)} ({flops_note})")
    facts.add_row(
        "tokens per step",
        f"{est.tokens_per_step:,} ({preset.train.batch_size} x {preset.train.grad_accum} x {m.block_size})",
    )
    ratio = est.run_tokens / est.chinchilla_tokens if est.chinchilla_tokens else 0
    facts.add_row(
        "tokens in the run",
        f"{human_count(est.run_tokens, 2)} over {preset.train.max_steps:,} steps ({ratio:.2f}x the ~{human_count(est.chinchilla_tokens, 2)} compute-optimal)",
    )
    facts.add_row(
        "dtype",
        est.dtype + (" (autocast, fp32 master weights)" if est.dtype in ("bf16", "fp16") else ""),
    )
    if est.eta_s is not None:
        facts.add_row("ETA", f"{rough_eta(est.eta_s)} at 35% MFU on {gpu.name if gpu else '?'}")
    ok, why = preset.trainable
    if not ok:
        facts.add_row("trainable", f"[red]no[/]: {why}")
    console.print(facts)

    on = (
        f" on each of {est.world_size} GPUs ({preset.train.parallel})" if est.world_size > 1 else ""
    )
    table = Table(
        title=f"peak training memory at micro-batch {est.batch_size}{on}",
        title_justify="left",
        header_style="bold",
    )
    table.add_column("part")
    table.add_column("bytes", justify="right")
    table.add_column("share", justify="right")
    total = est.memory.total_bytes or 1
    for label, value in est.memory.items():
        why = ZERO_PARTS.get(label, "") if value == 0 else ""
        share = f"{100 * value / total:.0f}%"
        table.add_row(label + (f" [dim]({why})[/]" if why else ""), human_bytes(value), share)
    source = f"your own model, {est.memory.activation_form}" if own else "analytic"
    table.add_row(
        f"[bold]total ({source})[/]", f"[bold]{human_bytes(est.memory.total_bytes)}[/]", ""
    )
    if est.measured:
        table.add_row(
            "[bold]peak (measured by probe)[/]", f"[bold]{human_bytes(est.peak_bytes)}[/]", ""
        )
    elif est.traced:
        table.add_row(
            "[bold]peak (traced line + slack + context)[/]",
            f"[bold]{human_bytes(est.peak_bytes)}[/]",
            "",
        )
    console.print(table)
    per_layer = est.memory.activations_per_layer
    plain = est.memory.activations_per_layer_plain
    if not own:  # your own model's layers have no formula: its memory is the traced step's
        console.print(
            f"activations per layer: {human_bytes(per_layer)} with flash/SDPA, {human_bytes(plain)} with plain attention"
        )
    if preset.train.compile and not est.measured:
        console.print(COMPILE_NOTE)
    colour = "green" if est.fits else ("red" if est.fits is False else "yellow")
    console.print(f"[{colour}]{est.verdict}[/]")
    suggestion = suggest_batch(preset, gpu, headroom, world_size=est.world_size)
    if suggestion is not None:
        console.print(
            f"suggestion: --set train.batch_size={suggestion.micro_batch} --set train.grad_accum={suggestion.grad_accum}  ({suggestion.reason}; peak {human_bytes(suggestion.peak_bytes)})"
        )
    else:
        console.print(
            "suggestion: none without a GPU; plan for one with --gpu (e.g. --gpu A100-80GB)"
        )


def cmd_estimate(args: argparse.Namespace) -> int:
    """`gpt-cockpit estimate NAME`: breakdown, verdict and batch suggestion."""
    world = getattr(args, "nproc", None) or 1
    if world < 1:
        error("--nproc must be at least 1")
        return EXIT_USAGE
    # this machine's GPUs: the smallest of those the run's ranks use (CUDA_VISIBLE_DEVICES applied)
    gpu, ok = _gpu_or_fail(getattr(args, "gpu", None), world)
    if not ok:
        return EXIT_USAGE
    preset = _preset_or_fail(args.name, getattr(args, "overrides", []) or [])
    if preset is None:
        return EXIT_USAGE
    batch = getattr(args, "batch_size", None)
    if batch is not None and batch < 1:
        error("--batch-size must be at least 1")
        return EXIT_USAGE
    headroom = args.headroom if getattr(args, "headroom", None) is not None else DEFAULT_HEADROOM
    if not 0.0 <= headroom < 1.0:
        error("--headroom is a fraction in [0, 1), e.g. 0.08")
        return EXIT_USAGE
    if getattr(args, "device", "auto") == "cpu":
        return estimate_cpu(preset, batch, json_out=bool(getattr(args, "json", False)), args=args)
    # your own model: its parameters and FLOPs are measured, its memory always traced
    # (the tracer child measures it too: one child, unless the trace cannot run here)
    own = is_own_model(preset.model.arch)
    est = estimate(preset, gpu, batch_size=batch, world_size=world)
    exact: dict[str, Any] | None = None
    if getattr(args, "exact", False) or own:
        exact = exact_trace(preset, est.dtype, est.batch_size, quiet=own)
    if own:
        problem = ensure_measured(preset)  # cached by the trace, else the measuring child
        if problem:
            error(f"model.arch: {problem}")
            return EXIT_USAGE
        est = estimate(preset, gpu, batch_size=batch, world_size=world)  # measured and traced
    if getattr(args, "json", False):
        out: dict[str, Any] = as_dict(est)
        if getattr(args, "exact", False) or own:
            out["exact"] = exact
        suggestion = suggest_batch(preset, gpu, headroom, world_size=world)
        out["suggestion"] = (
            None
            if suggestion is None
            else {
                "micro_batch": suggestion.micro_batch,
                "grad_accum": suggestion.grad_accum,
                "tokens_per_step": suggestion.tokens_per_step,
                "peak_bytes": suggestion.peak_bytes,
                "headroom": suggestion.headroom,
                "largest_fit": suggestion.largest_fit,
                "reason": suggestion.reason,
            }
        )
        out["host"] = host_dict(host_memory(preset, "cuda", nproc=world), None, preset)
        print(json.dumps(out, indent=2, default=str))
        return EXIT_OK
    console = _console()
    mixed = "" if getattr(args, "gpu", None) else mixed_note(run_gpus(query_gpus(), nproc=world))
    where = f"on {gpu.name}{mixed}" if gpu else "for a bf16 GPU (none here; --gpu picks one)"
    console.print(f"[bold]{preset.name}[/] {where}")
    print_estimate(est, preset, gpu, console=console, headroom=headroom)
    console.print(host_memory(preset, "cuda", batch_size=batch, nproc=world).verdict)
    if exact is not None:
        print_exact(exact, est, console)
    return EXIT_OK


# --------------------------------------------------------------------------- estimate --device cpu


def cpu_speed_or_measure(runs_dir: str | None = None) -> CpuSpeed | None:
    """This machine's CPU speed: finished CPU runs', else the cached calibration, else measured
    now (a few seconds, said on stderr); None, said in one line, when it cannot be measured."""
    from cockpit.runs.speed import refresh_cpu_speed

    speed = refresh_cpu_speed(runs_dir)
    if speed is not None:
        return speed
    info("measuring this machine's CPU speed: a few training steps (once per machine and torch)")
    got = measure_cpu_speed()
    if isinstance(got, str):
        info(f"no CPU ETA: {got}")
        return None
    return got


def estimate_cpu(
    preset: Preset, batch: int | None, *, json_out: bool, args: argparse.Namespace
) -> int:
    """A CPU run's plan: host RAM by part against the RAM available, and the ETA on this CPU."""
    plan = host_memory(preset, "cpu", batch_size=batch)
    speed = cpu_speed_or_measure(getattr(args, "runs_dir", None))
    t = preset.train
    micro = batch or t.batch_size
    fit = None if plan.fits is not False else cpu_batch_suggestion(preset, plan.available_bytes)
    if json_out:
        out = host_dict(plan, speed, preset)
        out.update(
            preset=preset.name,
            batch_size=micro,
            params=count_params(preset.model),
            tokens_per_step=preset.tokens_per_step,
            flops_per_token=flops_per_token(preset.model),
            suggestion=None if fit is None else {"micro_batch": fit[0], "grad_accum": fit[1]},
        )
        print(json.dumps(out, indent=2, default=str))
        return EXIT_OK
    console = _console()
    console.print(f"[bold]{preset.name}[/] on this machine's CPU ({plan.dtype})")
    params = count_params(preset.model)
    console.print(
        f"parameters {params:,} ({human_count(params, 2)}); {human_count(flops_per_token(preset.model), 2)} "
        f"FLOPs per token; {preset.tokens_per_step:,} tokens per step ({t.batch_size} x "
        f"{t.grad_accum} x {preset.model.block_size}), {t.max_steps:,} steps"
    )
    table = Table(
        title=f"host RAM of a CPU run at micro-batch {micro}",
        title_justify="left",
        header_style="bold",
    )
    table.add_column("part")
    table.add_column("bytes", justify="right")
    for label, value in plan.parts:
        table.add_row(label, human_bytes(value))
    table.add_row("[bold]total[/]", f"[bold]{human_bytes(plan.total_bytes)}[/]")
    if plan.available_bytes is not None:
        table.add_row("available (psutil)", human_bytes(plan.available_bytes))
    console.print(table)
    colour = "green" if plan.fits else ("red" if plan.fits is False else "yellow")
    console.print(f"[{colour}]{plan.verdict}[/]")
    if fit is not None:
        console.print(
            f"suggestion: --set train.batch_size={fit[0]} --set train.grad_accum={fit[1]} "
            f"(the largest micro-batch that fits in {1 - HOST_MARGIN:.0%} of the available RAM, "
            "the same sequences per step)"
        )
    elif plan.fits is False:
        console.print("suggestion: even micro-batch 1 does not fit; shrink the model or block_size")
    console.print(cpu_eta_line(preset, speed))
    return EXIT_OK


# Why a part of the peak can be 0 B, said beside it (a bare "0 B" reads like a mistake).
ZERO_PARTS = {
    # the peak is in the backward, before this step's first gradient; the last step's were freed
    "gradients": "freed before the peak",
    "AMP copies": "fp32: no 16-bit copies",
    "CUDA context": "no GPU",
}


# --------------------------------------------------------------------------- estimate --exact


COMPILE_NOT_TRACED = (
    "train.compile=true: the trace is of the eager step (torch.compile's graphs are not traced); "
    "the compiled step usually holds less"
)


def exact_trace(
    preset: Preset, dtype: str, batch: int, *, quiet: bool = False
) -> dict[str, Any] | None:
    """The traced step at `batch` (from the cache, or the tracer child); None, said in one line, when it cannot run.

    Your own model's tracer child measures its parameters and FLOPs too (kept as the measuring
    child's would be); `quiet` leaves a broken model file for the measuring child to say."""
    from cockpit.plan.estimate import load_traces, save_traces, traced_line
    from cockpit.plan.measure import save_measured

    batches = trace_batches(batch)
    cached = load_traces(preset, dtype)
    missing = [b for b in batches if b not in cached]
    if missing:
        info(
            f"tracing {preset.name} ({dtype}) at micro-batch {', '.join(map(str, missing))} on fake CUDA tensors"
        )
        proc = subprocess.run(trace_command(preset, missing, dtype), capture_output=True, text=True)
        if proc.returncode != 0:
            if not (quiet and proc.returncode == 2):  # 2: a model file the measuring child names
                why = failure_reason(proc.stderr)
                stands = "no memory figure" if est_own(preset) else "the analytic figure stands"
                info(f"exact figure unavailable ({why}); {stands}")
            return None
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        save_traces(preset, dtype, result["points"])
        if result.get("figures"):
            save_measured(preset.model, result["figures"])
        cached = load_traces(preset, dtype)
    point = dict(cached[batch])
    line = traced_line({b: cached[b] for b in batches if b in cached})
    if line is not None:
        point["fixed_bytes"], point["per_sequence_bytes"] = int(line[0]), int(line[1])
    if preset.train.compile:
        point["eager"] = True
        info(COMPILE_NOT_TRACED)
    return point


def est_own(preset: Preset) -> bool:
    """Your own model (PATH.py:ClassName): no analytic memory figure, only the traced one."""
    return is_own_model(preset.model.arch)


def print_exact(exact: dict[str, Any], est: Estimate, console: Console) -> None:
    """The traced peak by category, the op at the peak, and how far the analytic figure is from it."""
    table = Table(
        title=f"traced peak of live tensors at micro-batch {exact['batch']} (the real step on fake CUDA tensors)",
        title_justify="left",
        header_style="bold",
    )
    table.add_column("part")
    table.add_column("bytes", justify="right")
    peak = exact["peak_bytes"] or 1
    for label, value in exact["by_category"].items():
        table.add_row(label, human_bytes(value))
    table.add_row("[bold]peak live (traced)[/]", f"[bold]{human_bytes(exact['peak_bytes'])}[/]")
    table.add_row("reserved (allocator model)", human_bytes(exact["reserved_bytes"]))
    console.print(table)
    live = est.memory.live_bytes
    if est.figures:  # your own model: the memory above is this trace's, there is nothing to compare
        console.print(f"peak at {exact['peak_op']}; your own model's memory is its traced step's")
    else:
        console.print(
            f"peak at {exact['peak_op']}; analytic live bytes {human_bytes(live)} ({100 * (live - peak) / peak:+.1f}% vs traced)"
        )
    if "per_sequence_bytes" in exact:
        console.print(
            f"traced line: {human_bytes(exact['fixed_bytes'])} + {human_bytes(exact['per_sequence_bytes'])} per sequence"
        )
    console.print(
        "not traced: CUDA context, cuBLAS workspaces, allocator fragmentation, torch.compile, DDP buckets"
    )


# --------------------------------------------------------------------------- gpus


def cmd_gpus(args: argparse.Namespace) -> int:
    """This machine's GPUs (NVML) and the planning catalog."""
    console = _console()
    gpus = query_gpus(every=True)  # every GPU, and which cuda:N a run started here sees it as
    if gpus:
        table = Table(title="GPUs on this machine", title_justify="left", header_style="bold")
        columns = (
            "#",
            "cuda",
            "name",
            "memory used / total",
            "util",
            "temp",
            "power",
            "cc",
            "bf16",
        )
        for col in columns:
            table.add_column(col)
        for g in gpus:
            table.add_row(
                str(g.index),
                "hidden" if g.cuda_index is None else f"cuda:{g.cuda_index}",
                g.name,
                f"{human_bytes(g.memory_used)} / {human_bytes(g.memory_total)}",
                "-" if g.utilization is None else f"{g.utilization:.0f}%",
                "-" if g.temperature_c is None else f"{g.temperature_c:.0f} C",
                "-"
                if g.power_w is None
                else f"{g.power_w:.0f} W"
                + (f" / {g.power_limit_w:.0f}" if g.power_limit_w else ""),
                _cc(g.compute_capability),
                "yes" if g.bf16 else "no",
            )
        console.print(table)
    else:
        console.print(f"no GPU on this machine ({nvml_problem() or 'NVML sees none'})")
    table = Table(
        title="catalog for planning (--gpu NAME)", title_justify="left", header_style="bold"
    )
    for col in ("name", "memory", "bf16 TFLOP/s", "fp16 TFLOP/s", "fp32 (TF32) TFLOP/s", "cc"):
        table.add_column(col)
    for spec in CATALOG:
        tf32 = f" ({spec.tf32_tflops:g})" if spec.tf32_tflops is not None else ""
        table.add_row(
            spec.name,
            human_bytes(spec.memory_bytes),
            "-" if spec.bf16_tflops is None else f"{spec.bf16_tflops:g}",
            f"{spec.fp16_tflops:g}",
            f"{spec.fp32_tflops:g}{tf32}",
            _cc(spec.compute_capability),
        )
    console.print(table)
    return EXIT_OK


# --------------------------------------------------------------------------- probe


def cmd_probe(args: argparse.Namespace) -> int:
    """Measure peak memory at two batch sizes on this GPU and remember the calibration."""
    preset = _preset_or_fail(args.name, getattr(args, "overrides", []) or [])
    if preset is None:
        return EXIT_USAGE
    gpu = resolve_gpu(None)
    if gpu is None:
        error(
            f"probe needs a CUDA GPU and this machine has none ({nvml_problem() or 'NVML sees none'}); "
            "`gpt-cockpit estimate` gives the analytic figure meanwhile"
        )
        return EXIT_USAGE
    suggestion = suggest_batch(preset, gpu)
    high = max(2, suggestion.micro_batch if suggestion else preset.train.batch_size)
    low = max(1, high // 2)
    info(
        f"probing {preset.name} on {gpu.name} at micro-batches {low} and {high} ({args.steps} steps each)"
    )
    proc = subprocess.run(
        probe_command(preset, [low, high], args.steps),
        capture_output=True,
        text=True,
        env=child_alloc_env(dict(os.environ)),  # measured in the allocator mode that trains
    )
    if (
        proc.returncode == EXIT_USAGE
    ):  # the child found no CUDA (a CPU-only torch with a GPU present)
        error(
            f"probe: {(proc.stderr.strip().splitlines() or ['CUDA is not available'])[-1].removeprefix('probe: ')}"
        )
        return EXIT_USAGE
    if proc.returncode != 0:
        error(f"probe failed: {(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
        return EXIT_FAILED
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    from cockpit.plan.estimate import fit_calibration, save_calibration

    points = [(int(b), int(peak)) for b, peak in result["points"]]
    try:
        calibration = fit_calibration(result["gpu_name"], points)
    except ValueError:
        failed = "; ".join(f"micro-batch {b}: {why}" for b, why in result.get("failed", {}).items())
        error(
            f"probe measured only {len(points)} size(s), need two ({failed or 'no reason given'}); try a smaller model or block_size"
        )
        return EXIT_FAILED
    path = save_calibration(preset, calibration)
    console = _console()
    table = Table(title=f"probe on {result['gpu_name']}", title_justify="left", header_style="bold")
    for col in ("micro-batch", "measured peak reserved", "analytic estimate", "error"):
        table.add_column(col, justify="right")
    for batch, peak in points:
        predicted = estimate(preset, gpu, batch_size=batch).memory.reserved_bytes
        table.add_row(
            str(batch),
            human_bytes(peak),
            human_bytes(predicted),
            f"{100 * (predicted - peak) / peak:+.1f}%",
        )
    console.print(table)
    console.print(f"calibration saved to {path}; `estimate` and the app now use the measured line")
    return EXIT_OK
