"""An entry's plan: its preset, its memory per GPU (or RAM), its time; and the machine it packs on.

The memory an entry is planned at is the estimate's reserved bytes (cockpit.plan.estimate:
the exact trace or a probe's calibration where cached, else the analytic model) plus the batch
suggestion's headroom on them, plus the CUDA context every process pays once: several runs on
one GPU each pay their own context, and each estimate's error scales with its own size. The
machine is this one (NVML's GPUs less what other processes hold, the cores this process may
use, available RAM) or a what-if one from the catalog (`--gpu H100`, `--gpu 4xA100-80GB`,
`--gpu H100,T4` for a machine of mixed GPUs). Where a machine's GPUs are of several kinds an
entry is planned on each kind (its dtype, memory and pace there) and packed by those plans.
Every run's host RAM is cockpit.plan.host's: a CPU run's tensors, runtime and data; a GPU run's
CUDA runtime, data and pinned buffers (several small runs on one card each need that much).
"""

from __future__ import annotations

import os
import re
from dataclasses import replace

from cockpit.campaign.packing import Gpu, GpuPlan, Machine, Need
from cockpit.campaign.store import Entry
from cockpit.plan import estimate as est
from cockpit.plan.gpu import GpuSpec, catalog_names, lookup_gpu, query_gpus, spec_for_status
from cockpit.plan.presets import Preset, PresetError, apply_overrides, load_preset

CPU_THREADS_ENV = "GPT_COCKPIT_CPU_THREADS"  # cockpit.train.threads.THREADS_ENV (a test checks)
HEADROOM = est.DEFAULT_HEADROOM  # the batch suggestion's margin, on each run's reserved bytes
WHATIF_RAM_BYTES = 1 << 62  # a catalog machine's host RAM is not known: not a limit in its plans
# Sustained fp32 training FLOP/s per core: nanoGPT's CPU recipe (docs: ANCHORS) runs about
# 3.9 GFLOP (6N x 768 tokens + attention) in 42 ms on 2 cores, ~45 GFLOP/s per core.
CPU_FLOPS_PER_CORE = 40e9
# A small run on a big GPU is bound by launching kernels, not by math: eager PyTorch spends
# about 10 us of host time per op, a GPT block runs ~30 ops forward and backward, and the
# embedding, head, loss and optimizer ~30 more per step. Its share of the GPU is the time its
# kernels compute over that floor, which is what packing several runs onto one card recovers.
KERNEL_LAUNCH_S = 10e-6
OPS_PER_LAYER = 30
OPS_OUTSIDE_LAYERS = 30
START_S = 30.0  # a child's start before its first step: Python, torch, CUDA, the data (no GPU math)


class PlanError(ValueError):
    """A what-if GPU that the catalog does not know, or a count that does not parse."""


def entry_preset(entry: Entry) -> Preset:
    """The preset an entry trains: its preset with its overrides (PresetError when invalid)."""
    return apply_overrides(load_preset(entry.preset), dict(entry.overrides))


def parse_gpu_request(text: str) -> tuple[int, GpuSpec]:
    """`H100` -> (1, spec), `4xA100-80GB` -> (4, spec); PlanError names the known GPUs."""
    if re.search(r"[,+]", text or ""):
        raise PlanError(f"--gpu {text}: a cluster's GPUs are named as one kind, e.g. H100")
    m = re.fullmatch(r"\s*(?:(\d+)\s*[xX*]\s*)?(.+?)\s*", text or "")
    count = int(m.group(1)) if m and m.group(1) else 1
    name = m.group(2) if m else text
    spec = lookup_gpu(name or "")
    if spec is None:
        raise PlanError(f"unknown GPU {name!r}; known: {', '.join(catalog_names())}")
    if not 1 <= count <= 64:
        raise PlanError(f"--gpu {text}: between 1 and 64 GPUs")
    return count, spec


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def available_ram() -> int:
    """RAM available to new processes now, bytes (0 when psutil cannot tell)."""
    from cockpit.plan.host import available_ram as host_available

    return host_available()[0] or 0


def parse_gpu_list(text: str) -> list[tuple[int, GpuSpec]]:
    """`H100,T4` or `2xA100-80GB+2xA100-40GB` -> one (count, spec) per kind, in that order."""
    parts = [p for p in re.split(r"[,+]", text or "") if p.strip()]
    if not parts:
        raise PlanError(f"--gpu {text!r}: name a GPU, e.g. H100, 4xA100-80GB or H100,T4")
    kinds = [parse_gpu_request(p) for p in parts]
    if sum(count for count, _ in kinds) > 64:
        raise PlanError(f"--gpu {text}: between 1 and 64 GPUs")
    return kinds


def whatif_machine(text: str) -> tuple[Machine, dict[int, GpuSpec]]:
    """A machine of `--gpu` catalog GPUs, numbered in the order given (each empty, all of its
    usable memory for the queue): `H100`, `4xA100-80GB`, or several kinds `H100,T4`."""
    gpus: list[Gpu] = []
    specs: dict[int, GpuSpec] = {}
    labels = []
    for count, spec in parse_gpu_list(text):
        for _ in range(count):
            specs[len(gpus)] = spec
            gpus.append(Gpu(len(gpus), spec.name, spec.usable_bytes))
        labels.append(f"{count}x{spec.name}" if count > 1 else spec.name)
    # a what-if machine's host RAM is unknown: its plan checks GPU memory only
    machine = Machine(tuple(gpus), usable_cores(), WHATIF_RAM_BYTES, " + ".join(labels))
    return machine, specs


def local_machine(
    ours_gpu_bytes: dict[int, int] | None = None, ours_ram_bytes: int = 0
) -> tuple[Machine, dict[int, GpuSpec]]:
    """This machine now. Memory other processes hold is NVML's used memory less what this
    queue's own runs are planned at (`ours_gpu_bytes`), never less than zero."""
    ours = ours_gpu_bytes or {}
    gpus, specs = [], {}
    for status in query_gpus():
        spec = spec_for_status(status)
        usable = min(status.memory_total, spec.usable_bytes)
        others = max(0, status.memory_used - ours.get(status.index, 0))
        gpus.append(Gpu(status.index, status.name, max(0, usable - others), usable))
        specs[status.index] = spec
    ram = available_ram() + ours_ram_bytes
    return Machine(tuple(gpus), usable_cores(), ram, "this machine", thread_cap()), specs


def thread_cap() -> int:
    """$GPT_COCKPIT_CPU_THREADS as a number caps the threads each CPU run is granted (0: none)."""
    raw = os.environ.get(CPU_THREADS_ENV, "").strip()
    return int(raw) if raw.isdigit() else 0


def gpu_run_seconds(preset: Preset, spec: GpuSpec, world_size: int) -> tuple[float | None, float]:
    """(seconds alone, share of the GPU's compute it keeps busy) for a run on `spec`."""
    compute = est.eta_seconds(preset, spec)
    if compute is None:
        return None, 1.0
    t = preset.train
    # evals run forward only (about a third of a training step) on eval_steps batches each
    n_evals = t.max_steps // t.eval_interval if t.eval_interval else 1
    evals = n_evals * t.eval_steps / max(1, t.max_steps) / 3
    compute = compute / world_size * (1 + evals)
    ops = OPS_PER_LAYER * preset.model.n_layer + OPS_OUTSIDE_LAYERS
    floor = KERNEL_LAUNCH_S * ops * t.grad_accum * t.max_steps * (1 + evals)
    alone = max(compute, floor) + START_S
    return alone, compute / alone


def cpu_run_seconds(preset: Preset, threads: int) -> float:
    """Seconds a CPU run takes on `threads` cores (fp32, CPU_FLOPS_PER_CORE each)."""
    flops = est.flops_per_token(preset.model) * preset.tokens_per_step * preset.train.max_steps
    return flops / (CPU_FLOPS_PER_CORE * max(1, threads))


def ram_bytes(preset: Preset, device: str, nproc: int = 1) -> int:
    """Planned host RAM (cockpit.plan.host): a CPU run's tensors, runtime and data, or a GPU
    run's CUDA runtime, data and pinned buffers per process."""
    from cockpit.plan.host import host_memory

    return host_memory(preset, device, nproc=nproc).total_bytes


def cpu_run_seconds_here(preset: Preset, threads: int) -> float:
    """A CPU run's time: this machine's measured training speed where there is one (scaled to
    the threads granted), else CPU_FLOPS_PER_CORE a thread."""
    from cockpit.plan.host import load_cpu_speed

    speed = load_cpu_speed()
    if speed is not None and speed.flops_per_s > 0:
        flops = est.flops_per_token(preset.model) * preset.tokens_per_step * preset.train.max_steps
        share = min(1.0, max(1, threads) / max(1, usable_cores() - 1))
        return flops / (speed.flops_per_s * share)
    return cpu_run_seconds(preset, threads)


def gpu_bytes(preset: Preset, spec: GpuSpec, world_size: int) -> int:
    """Planned bytes on each GPU: reserved with headroom, plus this process's CUDA context."""
    e = est.estimate(preset, spec, world_size=world_size)
    context = e.memory.cuda_context or est.CUDA_CONTEXT_BYTES
    reserved = max(0, e.peak_bytes - context)
    return int(reserved * (1 + HEADROOM)) + context


def need_for(
    entry: Entry,
    machine: Machine,
    specs: dict[int, GpuSpec],
    *,
    check_launch: bool = True,
    cpu_threads: int = 1,
) -> Need:
    """What `entry` needs on `machine`; a preset that does not load or cannot launch here is a
    `problem` (the entry never starts, and says why)."""
    base = Need(entry.id, entry.device, entry.device_count or 1)
    try:
        preset = entry_preset(entry)
    except (PresetError, OSError, ValueError) as exc:
        return replace(base, problem=f"preset: {exc}")
    if check_launch:
        from cockpit.runs.prelaunch import launch_problem

        problem = launch_problem(preset)
        if problem:
            return replace(base, problem=problem)
    if base.on_gpu(machine) and specs:
        first = next(iter(specs.values()))
        kinds: dict[str, GpuPlan] = {}  # one plan per kind of GPU: its dtype, memory and pace
        per_gpu = {}
        for g in machine.gpus:
            spec = specs.get(g.index) or first
            if spec.name not in kinds:
                seconds, share = gpu_run_seconds(preset, spec, base.gpus)
                kinds[spec.name] = GpuPlan(gpu_bytes(preset, spec, base.gpus), seconds, share)
            per_gpu[g.index] = kinds[spec.name]
        # until it is placed an entry shows its plan on the machine's first GPU
        shown = per_gpu.get(machine.gpus[0].index) if machine.gpus else None
        if shown is None:  # a gpu entry planned where NVML sees no GPU: the first spec's plan
            seconds, share = gpu_run_seconds(preset, first, base.gpus)
            shown = GpuPlan(gpu_bytes(preset, first, base.gpus), seconds, share)
        return replace(
            base,
            gpu_bytes=shown.gpu_bytes,
            ram_bytes=ram_bytes(preset, "cuda", base.gpus),
            seconds=shown.seconds,
            share=shown.share,
            per_gpu=per_gpu if len(kinds) > 1 else {},
        )
    if base.on_gpu(machine):
        return replace(base, gpu_bytes=0)  # no GPU at all: never_fits says so
    return replace(
        base,
        gpus=0,
        ram_bytes=ram_bytes(preset, "cpu"),
        seconds=cpu_run_seconds_here(preset, cpu_threads),
    )
