"""The GPU acceptance run: every number the cockpit shows on a CUDA GPU, checked in one command.

    python bench/gpu_acceptance.py [--only 1,3] [--results DIR | --out FILE] [--budget 540]
    python bench/gpu_acceptance.py --device cpu --quick     # a dry run of the harness on CPU

On a CUDA machine it runs the eleven checks below, most valuable first (1, 3, 5, 2, 7,
4, 8, 6, 9, 10, 11), each under its own time budget and all of them inside one overall
deadline (--budget, counted from the start): a check that fails, errs, runs out of
time or whose child crashes does not stop the others, and one that finds too little
of the overall time left is skipped for time. The report,
bench/results/<gpu>-<date>.md, is rewritten after every check, so it survives a kill;
SIGTERM or Ctrl-C ends the check in progress, stops its children and writes it.
Without CUDA (and without --device cpu) it says so in one line and exits 0. The checks go through the project's own code paths: training runs are
`runs.launch` children on run directories, memory is the probe and tracer children
(`plan_cli.probe_command` / `trace_command`, the sizes of bench/vram_table.py), the
calibration is `gpt-cockpit probe`, attach / stop / resume are the CLI commands,
the monitoring overhead is bench/event_overhead.py.

1. bf16 + torch.compile: tiny_char, small and gpt2_124m (at the suggested micro-batch)
   train briefly; tokens/s and MFU as the cockpit reports them, each recomputed from the
   step records' timestamps and the GPU's catalog peak; the loss falls.
2. fp16 forced: a NaN injected at one step; the GradScaler skips that step and the run
   recovers (finite losses, no further skips, the loss back below where it was).
3. Memory: for every built-in preset at three micro-batches, the analytic estimate
   against torch.cuda.max_memory_reserved (error and sign), NVML's used memory against
   the estimate's total, the tracer's live peak against max_memory_allocated, the caching
   allocator model's replay of the traced step (cockpit/plan/allocator.py) against
   max_memory_reserved (probe and tracer both in the training child's allocator mode); then
   the probe's calibration for gpt2_124m against a size it did not probe.
4. Batch suggestion: 200 steps at the suggested micro-batch for gpt2_124m (from check 1),
   golf_baseline and bdh_8gb: no out-of-memory, peak memory against the GPU's.
5. Out-of-memory retry from a real OOM: gpt2_124m at a micro-batch the estimate puts at
   1.25x the GPU's memory; the run halves and finishes with the same tokens per step.
6. Events and health on versus off (bench/event_overhead.py on the GPU): ratio >= 0.98.
7. NVML panel values (cockpit.plan.gpu.query_gpus) against nvidia-smi's at the same moment.
8. A run launched detached (runs.launch, as the app does), `attach --no-ui`, `stop`
   (checkpoint), `resume --no-ui`: the losses continue where they stopped.
9. The next batch prefetched on a side stream (GPT_COCKPIT_PREFETCH=1) against not:
   tiny_char, two runs each, alternating; tokens/s of both, the same losses.
10. Muon's Newton-Schulz per optimizer step on golf_baseline's matrices (bench/muon_ns.py):
   batched by shape, as the engine runs it, against one matrix at a time.
11. DDP overlap (two GPUs or more): small, compiled, on one rank and on two; tokens/s per
   GPU of each (blocks compiled before the DDP wrap, so all-reduce overlaps backward).

In --quick mode (meant for --device cpu) every preset is shrunk to a few thousand
parameters and runs a few dozen steps, so the harness runs end to end in a few
minutes; figures are reported but the speed and memory goals are not judged, and the
checks that need a GPU (2, 7, the measured half of 3) say so and skip. Check 4 trains
its three presets at a fixed micro-batch there, and check 5 injects the out-of-memory
error (GPT_COCKPIT_FAULT=oom_above_batch).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import acceptance as acc  # noqa: E402
from acceptance import Budget, Check, Skip  # noqa: E402
from vram_table import batches_for  # noqa: E402

from cockpit import rundir, runs  # noqa: E402
from cockpit.cli.plan import probe_command, trace_command  # noqa: E402
from cockpit.plan.allocator import child_alloc_env  # noqa: E402
from cockpit.plan.estimate import (  # noqa: E402
    estimate,
    flops_per_token,
    load_calibration,
    suggest_batch,
)
from cockpit.plan.gpu import (  # noqa: E402
    GpuSpec,
    GpuStatus,
    local_gpu_spec,
    nvml_problem,
    peak_flops,
    query_gpus,
    spec_for_status,
)
from cockpit.plan.presets import Preset, apply_overrides, list_presets, load_preset  # noqa: E402

RESULTS = REPO / "bench" / "results"
# The whole run, Python's start and the report included, stays inside one 10-minute command:
# the checks get this many seconds from the start, the rest is margin for the last child's kill.
TOTAL_BUDGET_S = 540.0
HOME_VARS = ("GPT_COCKPIT_CONFIG", "GPT_COCKPIT_RUNS", "GPT_COCKPIT_CACHE", "GPT_COCKPIT_STATE")
EXT_VAR = "GPT_COCKPIT_EXT_DIR"

# Every preset shrunk to a few thousand parameters for --quick (any architecture accepts these).
QUICK_SHRINK = [
    "model.n_layer=2",
    "model.n_head=2",
    "model.n_kv_head=2",
    "model.n_embd=32",
    "model.block_size=32",
    "model.vocab_size=256",
    "model.mlp_internal_dim_multiplier=4",
    "train.batch_size=4",
    "train.grad_accum=1",
    "train.compile=false",
    "train.dtype=fp32",
]


@dataclass
class Context:
    """What the checks share: the device, the mode, a work folder, the corpus, the GPU."""

    device: str  # cuda | cpu
    quick: bool
    work: Path
    corpus: Path
    gpu: GpuSpec | None
    shared: dict[str, Any] = field(default_factory=dict)  # results one check leaves for another

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def need_gpu(self, what: str) -> None:
        if not self.cuda or self.gpu is None:
            raise Skip(f"{what} needs a CUDA GPU (device {self.device})")


# --------------------------------------------------------------------------- helpers


# Asked in a child so this process never imports torch nor holds a CUDA context (some 500 MiB
# of the GPU that would skew every NVML reading and the out-of-memory check).
_CUDA_FACTS = """
import json
try:
    import torch
except ImportError as exc:
    print(json.dumps({"problem": f"torch does not import: {exc}"}))
    raise SystemExit(0)
if not torch.cuda.is_available():
    print(json.dumps({"problem": f"torch {torch.__version__} sees no CUDA GPU"}))
    raise SystemExit(0)
p = torch.cuda.get_device_properties(0)
print(json.dumps({"name": p.name, "total_memory": p.total_memory, "cc": [p.major, p.minor],
                  "torch": torch.__version__, "cuda": torch.version.cuda, "count": torch.cuda.device_count()}))
"""


def cuda_facts() -> dict[str, Any]:
    """CUDA device 0 as torch sees it ({"name", "total_memory", "cc", "torch", "cuda"}), or
    {"problem": why} when there is none (no torch, a CPU-only torch, no GPU, a broken driver)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CUDA_FACTS], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"problem": f"the CUDA query did not answer: {exc}"}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"problem": f"the CUDA query failed (exit {proc.returncode}): {tail}"}


def gpu_spec(facts: dict[str, Any]) -> GpuSpec:
    """This GPU's planning spec: NVML's (its memory, the catalog's peaks), else torch's facts."""
    spec = local_gpu_spec()
    if spec is not None:
        return spec
    total = int(facts["total_memory"])
    cc = tuple(facts.get("cc") or (0, 0))
    status = GpuStatus(0, facts["name"], total, 0, total, None, None, None, None, cc)  # type: ignore[arg-type]
    return spec_for_status(status)


def make_corpus(folder: Path, n_bytes: int) -> Path:
    """A learnable generated text (sentences from a few words): the runs need no download."""
    rng = random.Random(0)
    words = "the quick brown fox jumps over lazy dog and cat sat on mat while bird sings".split()
    lines, size = [], 0
    while size < n_bytes:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + ".\n"
        lines.append(line)
        size += len(line)
    path = folder / "corpus.txt"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def preset_for(ctx: Context, name: str, *overrides: str) -> Preset:
    """A built-in preset on the generated corpus (byte tokenizer), no evals or samples, shrunk
    in quick mode, with the check's overrides last. Warmup (10 steps) and a warmdown schedule's
    decay (a quarter of the run) are cut to fit the check's short train.max_steps."""
    preset = load_preset(name)
    steps = [int(o.split("=", 1)[1]) for o in overrides if o.startswith("train.max_steps=")]
    n = steps[-1] if steps else preset.train.max_steps
    common = [
        f"data.source={ctx.corpus}",
        "data.tokenizer=byte",
        "data.tokenizer_model=",  # golf's SentencePiece model belongs to its FineWeb shards
        "train.eval_interval=0",
        "train.sample_tokens=0",
        f"train.warmup_steps={min(10, n // 4)}",
    ]
    if preset.train.schedule == "warmdown":
        common.append(f"train.warmdown_steps={n // 4}")
    shrink = QUICK_SHRINK if ctx.quick else []
    return apply_overrides(preset, [*common, *shrink, *overrides])


@dataclass
class Trained:
    run_dir: Path
    code: int
    records: list[dict[str, Any]]

    @property
    def steps(self) -> list[dict[str, Any]]:
        return acc.steps_of(self.records)

    def console_tail(self) -> str:
        try:
            text = (self.run_dir / rundir.CONSOLE_LOG).read_text(errors="replace")
        except OSError:
            return ""
        return " / ".join(text.strip().splitlines()[-3:])


def train(
    ctx: Context,
    budget: Budget,
    preset: Preset,
    *,
    fault: str = "",
    label: str = "",
    env: dict[str, str] | None = None,
    nproc: int = 1,
) -> Trained:
    """Launch the training child on a fresh run directory and wait for it within the budget."""
    run_dir = rundir.create_run_dir(preset, ctx.work / "runs" / (label or preset.name))
    env = {**(env or {}), **({"GPT_COCKPIT_FAULT": fault} if fault else {})} or None
    ranks = runs.Ranks(nproc=nproc) if nproc > 1 else None
    handle = runs.launch(run_dir, device=ctx.device, detach=False, env=env, ranks=ranks)
    assert handle.process is not None
    try:
        code = handle.process.wait(timeout=budget.timeout())
    except BaseException:  # past the budget, or interrupted: the child goes too
        with contextlib.suppress(Exception):
            rundir.stop_run(run_dir, kill=True)  # the lock's holder, should it differ
        handle.process.kill()  # a child not yet holding its lock is not found by stop_run
        with contextlib.suppress(subprocess.TimeoutExpired):
            handle.process.wait(timeout=30)
        raise
    return Trained(run_dir, code, rundir.read_events(run_dir / rundir.EVENTS_JSONL))


def run_child(cmd: list[str], budget: Budget, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, cwd=REPO, timeout=budget.timeout(), **kw
    )


def last_json_line(proc: subprocess.CompletedProcess[str]) -> dict[str, Any] | None:
    import json

    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return None
    return json.loads(lines[-1])


class NvmlPeak:
    """The highest memory NVML reports used on GPU 0 while the block runs (sampled every 50 ms)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.baseline: int | None = None
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _used(self) -> int | None:
        gpus = query_gpus()
        return gpus[0].memory_used if gpus else None

    def _sample(self) -> None:
        while not self._stop.is_set():
            used = self._used()
            if used is not None:
                self.peak = used if self.peak is None else max(self.peak, used)
            self._stop.wait(self.interval)

    def __enter__(self) -> NvmlPeak:
        self.baseline = self._used()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def delta(self) -> int | None:
        if self.peak is None or self.baseline is None:
            return None
        return self.peak - self.baseline


def nvml_delta(ctx: Context) -> contextlib.AbstractContextManager[NvmlPeak | None]:
    return NvmlPeak() if ctx.cuda else contextlib.nullcontext()


def tokens_per_s_from_times(steps: list[dict[str, Any]], every: int = 1) -> float | None:
    """Tokens/s from the step records' own timestamps over the steady part (after a fifth).

    On CUDA a record's time is when the host finished queuing the step, and the host runs
    ahead within a read-back interval of `every` steps: only records at the same place in
    their intervals are compared, so the span is whole intervals, each ending in a sync."""
    kept = acc.steady(steps)
    if every > 1 and kept:
        place = kept[0]["step"] % every
        kept = [s for s in kept if s["step"] % every == place]
    if len(kept) < 2:
        return None
    seconds = kept[-1]["time"] - kept[0]["time"]
    tokens = (kept[-1].get("tokens") or 0) - (kept[0].get("tokens") or 0)  # cumulative counts
    return tokens / seconds if seconds > 0 and tokens > 0 else None


# --------------------------------------------------------------------------- 1. throughput


def start_to_first_log(records: list[dict[str, Any]]) -> float | None:
    """Seconds from the `start` record to the first step record: the first steps and, with
    torch.compile, the compilation (the cost a run pays before its first figure)."""
    start = next((r for r in records if r.get("event") == "start"), None)
    steps = acc.steps_of(records)
    if start is None or not steps or "time" not in start:
        return None
    return steps[0]["time"] - start["time"]


FINAL_EVAL_STEPS = 4  # check 1's final eval: the compile is the cost to see, not the batches


def run_end_s(records: list[dict[str, Any]]) -> float | None:
    """Seconds from the last step record to the end record: the final eval and checkpoint."""
    steps = acc.steps_of(records)
    end = next((r for r in reversed(records) if r.get("event") == "end"), None)
    if not steps or end is None or end.get("time") is None or steps[-1].get("time") is None:
        return None
    return round(float(end["time"]) - float(steps[-1]["time"]), 2)


def _throughput_one(ctx: Context, check: Check, budget: Budget, name: str) -> None:
    steps = 30 if ctx.quick else (200 if name == "gpt2_124m" else 100)
    extra = [
        f"train.max_steps={steps}",
        "train.log_interval=5" if ctx.quick else "train.log_interval=10",
        # The final eval runs through the compiled model in eval mode: a second Inductor
        # compile (as long as the first for gpt2_124m). A few batches keep it to that compile;
        # its time, with the last checkpoint's, is a figure of its own and not a step's.
        f"train.eval_steps={FINAL_EVAL_STEPS}",
    ]
    if not ctx.quick:
        extra += ["train.dtype=bf16", "train.compile=true"]
    preset = preset_for(ctx, name, *extra)
    if name == "gpt2_124m" and ctx.gpu is not None:
        suggestion = suggest_batch(preset, ctx.gpu)
        if suggestion:
            preset = apply_overrides(
                preset, [f"train.batch_size={suggestion.micro_batch}", "train.grad_accum=1"]
            )
    with nvml_delta(ctx) as nvml:
        run = train(ctx, budget, preset, label=f"throughput-{name}")
    if name == "gpt2_124m":
        ctx.shared["gpt2_124m"] = (preset, run, nvml.peak if nvml else None)
    steps_ = run.steps
    tok = acc.median_or_none(s.get("tokens_per_s") for s in acc.steady(steps_))
    timed = tokens_per_s_from_times(steps_, preset.train.log_interval)
    first, last, falling = acc.loss_falling([s["loss"] for s in steps_])
    check.fig(f"{name} micro-batch", preset.train.batch_size)
    check.fig(f"{name} tokens/s (cockpit, median)", tok)
    check.fig(f"{name} tokens/s (step timestamps)", timed)
    check.fig(f"{name} loss first -> last", f"{first:.3f} -> {last:.3f}")
    check.fig(
        f"{name} start -> first logged step (s, compile included)", start_to_first_log(run.records)
    )
    check.fig(
        f"{name} last step -> end (s: final eval, its compile, checkpoint)", run_end_s(run.records)
    )
    check.expect(
        run.code == 0,
        f"{name}: the run finished (exit {run.code})"
        + (f": {run.console_tail()[:160]}" if run.code else ""),
    )
    if ctx.cuda and not ctx.quick:
        start = next((r for r in run.records if r.get("event") == "start"), {})
        check.expect(
            start.get("dtype") == "bf16" and start.get("compile") is True,
            f"{name}: trained in bf16 with torch.compile (start record: dtype {start.get('dtype')}, compile {start.get('compile')})",
        )
    check.expect(falling, f"{name}: loss falls ({first:.3f} -> {last:.3f})")
    if tok and timed and ctx.cuda:  # on CPU the cockpit times the step alone, not the logging
        check.expect(
            acc.close(tok, timed, 0.10),
            f"{name}: the cockpit's tokens/s {tok:,.0f} within 10% of the timestamps' {timed:,.0f}",
        )
    if ctx.cuda and not ctx.quick:  # quick mode trains in fp32: the bf16 peak does not apply
        _mfu_figures(ctx, check, name, preset, steps_, tok)


def _mfu_figures(ctx: Context, check: Check, name: str, preset: Preset, steps, tok) -> None:  # noqa: ANN001
    mfu = acc.median_or_none(s.get("mfu") for s in acc.steady(steps))
    gpu_name = ctx.gpu.name if ctx.gpu else ""
    peak = peak_flops(gpu_name, "bf16")
    check.fig(f"{name} MFU (cockpit)", mfu)
    if not tok:
        check.note(f"{name}: no tokens/s logged, so no MFU")
    elif peak:
        recomputed = tok * flops_per_token(preset.model) / peak
        check.fig(f"{name} MFU (recomputed, peak {peak / 1e12:g} TFLOP/s)", recomputed)
        check.expect(
            mfu is not None and acc.close(mfu, recomputed, 0.05),
            f"{name}: the cockpit's MFU {mfu} agrees with tokens/s x FLOPs/token / peak ({recomputed:.4f})",
        )
    else:
        check.note(f"{gpu_name} is not in the catalog: no peak FLOP/s, no MFU")
    if name == "gpt2_124m" and mfu is not None:
        check.fig("gpt2_124m MFU goal (>= 50%) met", mfu >= acc.MFU_GOAL)


def check_throughput(ctx: Context) -> Callable[[Check, Budget], None]:
    def body(check: Check, budget: Budget) -> None:
        for name in ("gpt2_124m", "small", "tiny_char"):  # the headline figure first
            _throughput_one(ctx, check, budget, name)

    return body


# --------------------------------------------------------------------------- 2. fp16 scaler


def check_fp16(ctx: Context) -> Callable[[Check, Budget], None]:
    def body(check: Check, budget: Budget) -> None:
        ctx.need_gpu("fp16 with a GradScaler")
        bad = 40
        preset = preset_for(
            ctx,
            "tiny_char",
            "train.dtype=fp16",
            "train.compile=false",
            "train.max_steps=120",
            "train.log_interval=1",
            "train.on_anomaly=warn",
        )
        run = train(ctx, budget, preset, fault=f"nan_at_step={bad}", label="fp16")
        r = acc.scaler_recovery(run.steps, bad)
        for k, v in r.items():
            check.fig(k, v)
        check.fig(
            "scaler skips before the fault",
            [s["step"] for s in run.steps if s.get("scaler_skipped") and s["step"] < bad],
        )
        check.expect(run.code == 0, f"the run finished (exit {run.code})")
        check.expect(
            acc.scaler_recovered(r), f"step {bad} skipped by the GradScaler and the run recovered"
        )

    return body


# --------------------------------------------------------------------------- 3. memory


# Check 3 measures presets in this order (gpt2_124m first: the calibration compares with it), then
# the other built-ins by size, until its budget is nearly spent: each preset is the probe child
# (the GPU) and the tracer child (CPU, fake CUDA tensors) side by side, some 10-20 s on an H100.
MEMORY_ORDER = (
    "gpt2_124m",
    "golf_baseline",
    "bdh_8gb",
    "small",
    "350M_1024",
    "500M_1024",
    "tiny_gpt_50m",
    "tiny_char",
    "150M_1024",
    "bdh_14gb",
)
PRESET_RESERVE_S = 20.0  # a preset is started only with this much of the check's budget left


def memory_presets(ctx: Context) -> list[Preset]:
    """The presets check 3 measures, most valuable first."""
    if ctx.quick:
        return [preset_for(ctx, n) for n in ("tiny_char", "golf_baseline", "bdh_8gb")]
    builtin = {p.name: p for p in list_presets() if p.builtin}
    first = [builtin.pop(n) for n in MEMORY_ORDER if n in builtin]
    rest = sorted(
        builtin.values(), key=lambda p: estimate(p, ctx.gpu, batch_size=1).memory.total_bytes
    )
    return first + rest


def child_tail(proc: subprocess.CompletedProcess[str]) -> str:
    """A failed child's last line of stderr (or stdout), for the report."""
    lines = (proc.stderr or "").strip().splitlines() or (proc.stdout or "").strip().splitlines()
    return lines[-1][:200] if lines else "no output"


def _start_trace(preset: Preset, batches: list[int], dtype: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        trace_command(preset, batches, dtype),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=child_alloc_env(dict(os.environ)),  # the allocator model in the mode the probe runs
    )


def _finish(proc: subprocess.Popen[str], budget: Budget) -> subprocess.CompletedProcess[str]:
    """Wait for a child within the budget; killed (and TimeoutExpired raised on) past it."""
    try:
        out, err = proc.communicate(timeout=budget.timeout())
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _probe(
    ctx: Context, check: Check, budget: Budget, preset: Preset, batches: list[int]
) -> tuple[dict[int, int], dict[int, int], int | None]:
    """The probe child at `batches` with NVML sampled meanwhile: (reserved, allocated, NVML delta)."""
    with NvmlPeak() as nvml:
        # in the allocator mode a training child runs with (expandable segments unless set)
        proc = run_child(
            probe_command(preset, batches, 3), budget, env=child_alloc_env(dict(os.environ))
        )
    result = last_json_line(proc) or {}
    measured = {int(b): int(r) for b, r in result.get("points", [])}
    allocated = {int(b): int(a) for b, a in result.get("allocated", [])}
    if result.get("failed"):
        check.fig(f"{preset.name} out of memory in the probe", result["failed"])
    check.expect(
        bool(measured),
        f"{preset.name}: the probe child measured (exit {proc.returncode})"
        + ("" if measured else f": {child_tail(proc)}"),
    )
    ctx.shared.setdefault("measured", {})[preset.name] = measured
    return measured, allocated, nvml.delta


def _measure_preset(ctx: Context, check: Check, budget: Budget, preset: Preset) -> list[float]:
    """Probe (GPU) and trace (CPU) one preset at three sizes, side by side; the reserved errors
    in percent."""
    gpu = ctx.gpu
    dtype = estimate(preset, gpu).dtype
    batches = batches_for(preset, gpu) if gpu else [1, 2, 4]
    # The tracer after the probe, not beside it: FakeTensor opens a real CUDA context on a
    # CUDA build (fake_tensor.py init_gpu_context), ~0.5 GiB that NVML would count in the
    # probe's delta.
    measured, allocated, nvml_peak = (
        _probe(ctx, check, budget, preset, batches) if ctx.cuda else ({}, {}, None)
    )
    tracer = _start_trace(preset, batches, dtype)
    try:
        traced_proc = _finish(tracer, budget)
    finally:
        if tracer.poll() is None:
            tracer.kill()
            tracer.communicate()
    traced = last_json_line(traced_proc) or {}
    traced_peak = {p["batch"]: p["peak_bytes"] for p in traced.get("points", [])}
    # the caching allocator model's replay of the traced step: what max_memory_reserved() reads
    modelled = {p["batch"]: p["reserved_bytes"] for p in traced.get("points", [])}
    if not traced_peak:
        check.note(f"{preset.name}: the tracer child gave no points ({child_tail(traced_proc)})")
    errors = []
    for b in batches:
        est = estimate(preset, gpu, batch_size=b).memory
        parts = [f"analytic reserved {acc.format_value(est.reserved_bytes / acc.MIB)} MiB"]
        if b in traced_peak:
            parts.append(f"traced live {traced_peak[b] / acc.MIB:,.0f} MiB")
        if b in measured:
            err = acc.pct_error(est.reserved_bytes, measured[b])
            errors.append(err)
            parts.append(f"measured reserved {measured[b] / acc.MIB:,.0f} MiB, error {err:+.1f}%")
            if b in traced_peak and b in allocated:
                parts.append(
                    f"traced vs allocated {acc.pct_error(traced_peak[b], allocated[b]):+.1f}%"
                )
            if b in modelled:
                model_err = acc.pct_error(modelled[b], measured[b])
                parts.append(
                    f"allocator model {modelled[b] / acc.MIB:,.0f} MiB ({model_err:+.1f}%)"
                )
                if b == batches[0]:  # the probe's first size starts from a fresh allocator
                    check.expect(
                        acc.memory_error_ok(model_err),
                        f"{preset.name} @ {b}: allocator model vs max_memory_reserved() "
                        f"within -5..+10% ({model_err:+.1f}%)",
                    )
        elif b in modelled:
            parts.append(f"allocator model reserved {modelled[b] / acc.MIB:,.0f} MiB")
        check.fig(f"{preset.name} @ {b}", "; ".join(parts))
    if nvml_peak is not None and measured:
        top = max(measured)
        total = estimate(preset, gpu, batch_size=top).memory.total_bytes
        check.fig(
            f"{preset.name} NVML used (peak) vs estimated total @ {top}",
            f"{nvml_peak / acc.MIB:,.0f} MiB vs {total / acc.MIB:,.0f} MiB ({acc.pct_error(total, nvml_peak):+.1f}%)"
            if nvml_peak > 0
            else f"no NVML reading ({nvml_problem() or 'no rise seen'})",
        )
    if not ctx.cuda:
        check.expect(len(traced_peak) == len(batches), f"{preset.name}: traced at {batches}")
    return errors


def _calibration(ctx: Context, check: Check, budget: Budget) -> None:
    """`gpt-cockpit probe gpt2_124m`, then its line against the sizes check 3 measured (one of
    them, double or a quarter of the suggestion, it did not probe)."""
    proc = run_child([sys.executable, "-m", "cockpit", "probe", "gpt2_124m"], budget)
    check.expect(
        proc.returncode == 0,
        f"`gpt-cockpit probe gpt2_124m` exit {proc.returncode}"
        + ("" if proc.returncode == 0 else f": {child_tail(proc)}"),
    )
    preset = load_preset("gpt2_124m")
    cal = load_calibration(preset, ctx.gpu.name) if ctx.gpu else None
    measured = ctx.shared.get("measured", {}).get("gpt2_124m", {})
    if cal is None or not measured:
        check.note("no calibration or no measurement of gpt2_124m to compare it with")
        return
    for b, peak in sorted(measured.items()):
        err = acc.pct_error(cal.predict(b), peak)
        check.fig(
            f"calibration @ {b}",
            f"{cal.predict(b) / acc.MIB:,.0f} MiB vs measured {peak / acc.MIB:,.0f} MiB ({err:+.1f}%)",
        )
        check.expect(
            acc.memory_error_ok(err), f"calibrated prediction @ {b} within -5..+10% ({err:+.1f}%)"
        )


def check_memory(ctx: Context) -> Callable[[Check, Budget], None]:
    def body(check: Check, budget: Budget) -> None:
        presets = memory_presets(ctx)
        left_out = []
        for preset in presets:
            if left_out or budget.remaining() < PRESET_RESERVE_S:
                left_out.append(preset.name)
                continue
            if (
                ctx.gpu
                and estimate(preset, ctx.gpu, batch_size=1).memory.total_bytes
                > ctx.gpu.usable_bytes
            ):
                check.fig(f"{preset.name}", "does not fit at micro-batch 1 (not measured)")
                continue
            errors = _measure_preset(ctx, check, budget, preset)
            if errors:
                check.expect(
                    all(acc.memory_error_ok(e) for e in errors),
                    f"{preset.name}: analytic vs measured reserved within -5..+10% ({', '.join(f'{e:+.1f}%' for e in errors)})",
                )
            if ctx.cuda and preset.name == "gpt2_124m":
                _calibration(ctx, check, budget)
        if left_out:
            check.fig("not measured (the check's time was spent)", left_out)
        if not ctx.cuda:
            check.note("no CUDA: analytic and traced only; measured and calibration need a GPU")

    return body


# --------------------------------------------------------------------------- 4. batch suggestion


def _suggested_preset(ctx: Context, check: Check, name: str) -> Preset | None:
    """The preset at the suggested micro-batch (accumulation 1); on CPU (quick) at its own."""
    preset = preset_for(
        ctx, name, f"train.max_steps={20 if ctx.quick else 200}", "train.log_interval=10"
    )
    if ctx.gpu is None:
        return apply_overrides(preset, ["train.grad_accum=1"])
    suggestion = suggest_batch(preset, ctx.gpu)
    if suggestion is None:
        check.expect(False, f"{name}: no micro-batch suggested")
        return None
    return apply_overrides(
        preset, [f"train.batch_size={suggestion.micro_batch}", "train.grad_accum=1"]
    )


def _suggested_run(ctx: Context, check: Check, budget: Budget, name: str) -> None:
    shared = ctx.shared.get(name)
    if shared is not None:
        preset, run, nvml_peak = shared
        check.note(
            f"{name}: the run of check 1"
            + (" (its micro-batch is the suggestion)" if ctx.gpu else "")
        )
    else:
        preset = _suggested_preset(ctx, check, name)
        if preset is None:
            return
        with nvml_delta(ctx) as nvml:
            run = train(ctx, budget, preset, label=f"suggested-{name}")
        nvml_peak = nvml.peak if nvml else None
    reserved = max((s.get("vram_bytes") or 0 for s in run.steps), default=0)
    ooms = len(acc.warnings_of(run.records, "oom"))
    check.fig(f"{name} micro-batch", preset.train.batch_size)
    check.expect(
        run.code == 0 and ooms == 0,
        f"{name}: {len(run.steps)} steps logged, exit {run.code}, {ooms} out-of-memory warnings"
        + (f": {run.console_tail()[:160]}" if run.code else ""),
    )
    if ctx.gpu is None:
        return
    total = ctx.gpu.memory_bytes
    predicted = estimate(preset, ctx.gpu).memory.total_bytes
    check.fig(
        f"{name} predicted total / reserved seen / NVML peak / GPU (MiB)",
        [predicted // acc.MIB, reserved // acc.MIB, (nvml_peak or 0) // acc.MIB, total // acc.MIB],
    )
    check.expect(
        nvml_peak is None or nvml_peak <= total,
        f"{name}: peak used memory under the GPU's {total // acc.MIB} MiB",
    )


def check_suggestion(ctx: Context) -> Callable[[Check, Budget], None]:
    def body(check: Check, budget: Budget) -> None:
        if not ctx.cuda:
            check.note(
                "no CUDA: each preset trains 20 steps at its own micro-batch (no suggestion)"
            )
        for name in ("gpt2_124m", "golf_baseline", "bdh_8gb"):
            _suggested_run(ctx, check, budget, name)

    return body


# --------------------------------------------------------------------------- 5. OOM retry


def too_big_batch(preset: Preset, gpu: GpuSpec, factor: float = 1.25) -> int:
    """The smallest power of two whose estimate exceeds `factor` x the GPU's memory."""
    batch = 1
    while estimate(preset, gpu, batch_size=batch).memory.total_bytes <= factor * gpu.memory_bytes:
        batch *= 2
        if batch > 4096:
            break
    return batch


def check_oom(ctx: Context) -> Callable[[Check, Budget], None]:
    def body(check: Check, budget: Budget) -> None:
        if ctx.cuda and ctx.gpu is not None:
            preset = preset_for(
                ctx,
                "gpt2_124m",
                "train.compile=false",
                "train.max_steps=6",
                "train.log_interval=1",
            )
            batch = too_big_batch(preset, ctx.gpu)
            fault = ""
            check.fig(
                f"estimate at micro-batch {batch} / GPU memory (MiB)",
                [
                    estimate(preset, ctx.gpu, batch_size=batch).memory.total_bytes // acc.MIB,
                    ctx.gpu.memory_bytes // acc.MIB,
                ],
            )
        else:
            preset = preset_for(ctx, "tiny_char", "train.max_steps=12", "train.log_interval=1")
            batch, fault = 8, "oom_above_batch=2"
            check.note(
                "no CUDA: the out-of-memory error is injected (GPT_COCKPIT_FAULT=oom_above_batch=2)"
            )
        preset = apply_overrides(
            preset, [f"train.batch_size={batch}", "train.grad_accum=1", "train.oom_retry=true"]
        )
        run = train(ctx, budget, preset, fault=fault, label="oom")
        r = acc.oom_retry_result(run.records, batch)
        for k, v in r.items():
            check.fig(k, v)
        check.expect(
            acc.oom_retried(r),
            f"halved from micro-batch {batch}, same tokens per step, finished (exit {run.code})"
            + (f": {run.console_tail()[:160]}" if run.code else ""),
        )

    return body


# --------------------------------------------------------------------------- 6. monitoring overhead


def check_overhead(ctx: Context) -> Callable[[Check, Budget], None]:
    def body(check: Check, budget: Budget) -> None:
        cmd = [
            sys.executable,
            str(REPO / "bench" / "event_overhead.py"),
            "--device",
            ctx.device,
            "--data",
            str(ctx.corpus),
        ]
        if ctx.quick:
            cmd += ["--block", "5", "--pairs", "2", "--batch-size", "4"]
            cmd += [
                f"--set={o}"
                for o in (
                    "model.n_layer=1",
                    "model.n_embd=32",
                    "model.n_head=2",
                    "model.block_size=32",
                )
            ]
        else:
            cmd += ["--block", "50", "--pairs", "6"]
        proc = run_child(cmd, budget)
        match = re.search(r"median ratio on/off\s+([0-9.]+)", proc.stdout)
        offs = re.search(r"median tokens/s\s+off ([0-9,]+)\s+on ([0-9,]+)", proc.stdout)
        if offs:
            check.fig("median tokens/s off / on", f"{offs.group(1)} / {offs.group(2)}")
        ratio = check.fig("median ratio on/off", float(match.group(1)) if match else None)
        check.expect(
            proc.returncode == 0 and ratio is not None,
            f"event_overhead.py ran (exit {proc.returncode})",
        )
        if ctx.quick:
            check.note(
                "quick mode: blocks of 5 steps are noise; the 0.98 goal is judged on the full run only"
            )
        else:
            check.expect(
                acc.at_least(ratio, acc.OVERHEAD_GOAL), f"ratio {ratio} >= {acc.OVERHEAD_GOAL}"
            )

    return body


# --------------------------------------------------------------------------- 7. NVML vs nvidia-smi


def _ours() -> dict[str, Any]:
    gpus = query_gpus()
    if not gpus:
        return {}
    g = gpus[0]
    return {
        "memory_used_mib": g.memory_used / acc.MIB,
        "memory_total_mib": g.memory_total / acc.MIB,
        "utilization": g.utilization,
        "temperature_c": g.temperature_c,
        "power_w": g.power_w,
    }


NVML_SETTLE_S = 1.0


def check_nvml(ctx: Context) -> Callable[[Check, Budget], None]:
    def body(check: Check, budget: Budget) -> None:
        ctx.need_gpu("NVML")
        time.sleep(NVML_SETTLE_S)  # the last check's load fades from utilization and power
        query = "--query-gpu=" + ",".join(acc.SMI_FIELDS)
        before = _ours()
        try:
            proc = run_child(
                ["nvidia-smi", "-i", "0", query, "--format=csv,noheader,nounits"], budget
            )
        except FileNotFoundError:
            raise Skip("nvidia-smi is not on PATH") from None
        after = _ours()
        if proc.returncode != 0 or not proc.stdout.strip():
            check.expect(False, f"nvidia-smi answered (exit {proc.returncode}): {child_tail(proc)}")
            return
        if not before:
            check.expect(False, f"NVML read GPU 0 ({nvml_problem() or 'no device'})")
            return
        smi = acc.parse_smi_line(proc.stdout.strip().splitlines()[0])
        rows_before = acc.nvml_comparison(before, smi)
        rows_after = dict((n, ok) for n, _, _, ok in acc.nvml_comparison(after, smi))
        for name, mine, theirs, ok in rows_before:
            check.fig(
                name,
                f"cockpit {acc.format_value(mine)} / {acc.format_value(after.get(name))} (before / after), nvidia-smi {acc.format_value(theirs)}",
            )
            check.expect(ok or rows_after.get(name, False), f"{name} agrees with nvidia-smi")

    return body


# --------------------------------------------------------------------------- 8. detach, attach, stop, resume


class ChildDied(RuntimeError):
    """A detached training child ended before the check could do what it waits for."""


def _wait_for_step(run_dir: Path, step: int, budget: Budget) -> int:
    """The last logged step once it reaches `step`; ChildDied if the run ends first."""
    path = run_dir / rundir.EVENTS_JSONL
    while True:
        budget.timeout()
        if path.exists():
            seen = [r["step"] for r in acc.steps_of(rundir.read_events(path))]
            if seen and seen[-1] >= step:
                return seen[-1]
        status = rundir.run_status(run_dir)
        if status not in rundir.LIVE_STATUSES:
            tail = Trained(run_dir, -1, []).console_tail()[:160]
            raise ChildDied(f"the run ended ({status}) before step {step}: {tail}")
        time.sleep(0.05)


def check_lifecycle(ctx: Context) -> Callable[[Check, Budget], None]:
    def body(check: Check, budget: Budget) -> None:
        total, stop_after = (150, 40) if ctx.quick else (600, 200)
        preset = preset_for(
            ctx,
            "tiny_char",
            f"train.max_steps={total}",
            "train.log_interval=5",
            "train.compile=false",
        )
        run_dir = rundir.create_run_dir(preset, ctx.work / "runs" / "lifecycle")
        cli = [sys.executable, "-m", "cockpit"]
        runs.launch(run_dir, device=ctx.device, detach=True)
        attach = subprocess.Popen(
            [*cli, "attach", str(run_dir), "--no-ui"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )
        try:
            check.fig("step seen before stop", _wait_for_step(run_dir, stop_after, budget))
            stop = run_child([*cli, "stop", str(run_dir)], budget)
            attached_out, _ = attach.communicate(timeout=budget.timeout())
        finally:
            if attach.poll() is None:
                attach.kill()
                attach.wait()
        first = rundir.read_events(run_dir / rundir.EVENTS_JSONL)
        end = acc.end_of(first)
        check.fig("stopped at step / reason", f"{end.get('step')} / {end.get('reason')}")
        check.expect(
            stop.returncode == 0 and end.get("reason") == "stopped",
            f"`stop` exit {stop.returncode}, end reason {end.get('reason')}",
        )
        check.expect(
            (run_dir / rundir.CHECKPOINTS / "last.pt").exists(),
            "a checkpoint was written at the stop",
        )
        step_lines = sum(1 for line in attached_out.splitlines() if "step" in line)
        check.expect(
            attach.returncode == 0 and step_lines > 0,
            f"`attach --no-ui` followed it ({step_lines} step lines, exit {attach.returncode})",
        )
        resumed = run_child(
            [*cli, "resume", str(run_dir), "--no-ui", "--device", ctx.device], budget
        )
        records = rundir.read_events(run_dir / rundir.EVENTS_JSONL)
        after = acc.steps_of(records[len(first) :])
        r = acc.resume_continuity(acc.steps_of(first), after)
        for k, v in r.items():
            check.fig(k, v)
        final = acc.end_of(records)
        check.expect(
            resumed.returncode == 0
            and final.get("reason") == "finished"
            and final.get("step") == total,
            f"`resume --no-ui` exit {resumed.returncode}, finished at step {final.get('step')} of {total}",
        )
        check.expect(acc.losses_continue(r), "losses continue after the resume")

    return body


# --------------------------------------------------------------------------- 9. prefetch


def check_prefetch(ctx: Context) -> Callable[[Check, Budget], None]:
    """The trainer with the next batch copied on a side stream (GPT_COCKPIT_PREFETCH=1) against
    without, alternating: tokens/s of each and the same losses (the same batches)."""

    def body(check: Check, budget: Budget) -> None:
        extra = (
            ["train.max_steps=30", "train.log_interval=5"]
            if ctx.quick
            else [
                "train.max_steps=200",
                "train.log_interval=10",
                "train.dtype=bf16",
            ]
        )
        preset = preset_for(ctx, "tiny_char", "train.compile=false", *extra)
        speeds: dict[str, list[float]] = {"0": [], "1": []}
        last: dict[str, float] = {}
        for n, flag in enumerate(("0", "1", "1", "0")):
            run = train(
                ctx, budget, preset, label=f"prefetch-{n}", env={"GPT_COCKPIT_PREFETCH": flag}
            )
            check.expect(
                run.code == 0,
                f"run {n + 1} (prefetch {flag}) finished (exit {run.code})"
                + (f": {run.console_tail()[:160]}" if run.code else ""),
            )
            tok = acc.median_or_none(s.get("tokens_per_s") for s in acc.steady(run.steps))
            speeds[flag].append(tok or 0.0)
            last.setdefault(flag, run.steps[-1]["loss"] if run.steps else math.nan)
        off, on = (acc.median_or_none(speeds[f]) for f in ("0", "1"))
        check.fig("tokens/s off / on (median of 2 each)", [off, on])
        check.fig("ratio on / off", on / off if off else None)
        check.fig("last loss off / on", [last["0"], last["1"]])
        check.expect(
            acc.close(last["0"], last["1"], 0.01), "the same batches: last losses within 1%"
        )

    return body


# --------------------------------------------------------------------------- 10. Newton-Schulz


def check_newton_schulz(ctx: Context) -> Callable[[Check, Budget], None]:
    """bench/muon_ns.py on golf_baseline's matrices: Muon's update per step batched by shape
    (the engine's) against one matrix at a time."""

    def body(check: Check, budget: Budget) -> None:
        cmd = [sys.executable, str(REPO / "bench" / "muon_ns.py"), "--device", ctx.device]
        cmd += ["--quick", "--steps", "5"] if ctx.quick else ["--steps", "20"]
        proc = run_child(cmd, budget)
        result = last_json_line(proc)
        if proc.returncode != 0 or result is None:
            check.expect(
                False, f"bench/muon_ns.py ran (exit {proc.returncode}): {child_tail(proc)}"
            )
            return
        check.fig("Muon matrices / shapes", f"{result['matrices']} / {result['shapes']}")
        check.fig("Newton-Schulz + momentum per step, batched (ms)", result["batched_ms"])
        check.fig("... one matrix at a time (ms)", result["per_matrix_ms"])
        check.fig("speedup", result["speedup"])
        if ctx.cuda and not ctx.quick:
            check.expect(
                result["batched_ms"] <= result["per_matrix_ms"],
                f"batched no slower than per matrix ({result['batched_ms']} vs "
                f"{result['per_matrix_ms']} ms)",
            )

    return body


# --------------------------------------------------------------------------- 11. DDP overlap


DDP_SCALING_GOAL = 0.85  # tokens/s per GPU on 2 ranks over 1: backward and all-reduce overlap


def check_ddp_overlap(ctx: Context) -> Callable[[Check, Budget], None]:
    """small with torch.compile on one rank and on two (DDP, compiled per block before the
    wrap so a block's gradients are all-reduced while earlier blocks run backward): tokens/s
    per GPU of each. Needs two GPUs."""

    def body(check: Check, budget: Budget) -> None:
        gpus = len(query_gpus()) if ctx.cuda else 0  # as CUDA sees them (CUDA_VISIBLE_DEVICES)
        if not ctx.cuda or gpus < 2:
            raise Skip(f"DDP overlap needs two CUDA GPUs ({gpus} here)")
        preset = preset_for(
            ctx, "small", "train.max_steps=100", "train.log_interval=10", "train.compile=true"
        )
        per_gpu: dict[int, float | None] = {}
        for nproc in (1, 2):
            run = train(ctx, budget, preset, label=f"ddp-{nproc}", nproc=nproc)
            check.expect(run.code == 0, f"{nproc} rank(s): the run finished (exit {run.code})")
            tok = acc.median_or_none(s.get("tokens_per_s") for s in acc.steady(run.steps))
            per_gpu[nproc] = tok / nproc if tok else None
            check.fig(f"tokens/s per GPU, {nproc} rank(s)", per_gpu[nproc])
        one, two = per_gpu[1], per_gpu[2]
        scaling = two / one if one and two else None
        check.fig("scaling per GPU, 2 ranks / 1", scaling)
        check.expect(
            scaling is not None and scaling >= DDP_SCALING_GOAL,
            f"2 ranks keep >= {DDP_SCALING_GOAL:.0%} of one rank's tokens/s per GPU ({scaling})",
        )

    return body


# --------------------------------------------------------------------------- the run

# (number, title, budget in seconds, the check), in the order they run: most valuable first.
# Budgets for an H100 (python and torch start ~5 s a child; torch.compile of gpt2_124m 40-90 s,
# of small and tiny_char 20-40 s each, twice in check 1: training, then the final eval in eval
# mode); the overall deadline cuts the last ones short first.
CHECKS: list[tuple[str, str, float, Callable[[Context], Callable[[Check, Budget], None]]]] = [
    ("1", "bf16 + compile: tokens/s, MFU, loss falling", 270, check_throughput),
    ("3", "Memory: analytic, traced, measured, NVML; probe calibration", 110, check_memory),
    ("5", "OOM retry from a real out-of-memory", 45, check_oom),
    ("2", "fp16: GradScaler skips an injected NaN and recovers", 35, check_fp16),
    ("7", "NVML panel values vs nvidia-smi", 10, check_nvml),
    ("4", "Batch suggestion: 200 steps, no OOM", 60, check_suggestion),
    ("8", "Detached launch, attach, stop, resume", 45, check_lifecycle),
    ("6", "Events and health on vs off: tokens/s ratio >= 0.98", 35, check_overhead),
    ("9", "Next batch prefetched on a side stream vs not: tokens/s", 50, check_prefetch),
    (
        "10",
        "Muon's Newton-Schulz per step: batched by shape vs per matrix",
        30,
        check_newton_schulz,
    ),
    ("11", "DDP on two GPUs, compiled per block: tokens/s per GPU vs one", 120, check_ddp_overlap),
]


def stop_leftovers(ctx: Context) -> None:
    """Kill any run a check left alive (a timeout can orphan a resumed or detached child)."""
    for run_dir in sorted((ctx.work / "runs").glob("*")):
        with contextlib.suppress(Exception):
            if rundir.run_status(run_dir) in rundir.LIVE_STATUSES:
                rundir.stop_run(run_dir, kill=True)


def run_all(
    ctx: Context,
    only: set[str] | None,
    overall: Budget,
    say: Callable[[str], None] = print,
    slack: float = 1.0,
    written: Callable[[list[Check]], None] = lambda checks: None,
) -> list[Check]:
    """Every check in order, each under its budget and what is left of `overall`. `written` gets
    the whole list after each change (the report is rewritten then); SIGTERM or Ctrl-C ends the
    check in progress as interrupted and the others as not run."""
    checks = [Check(key, title, budget_s * slack) for key, title, budget_s, _ in CHECKS]
    for check in checks:
        if only and check.key not in only:
            check.status = "skip"
            check.note("not selected (--only)")
    written(checks)
    try:
        for check, (_, _, _, make) in zip(checks, CHECKS, strict=True):
            if check.status == "skip":
                continue
            say(f"check {check.key}: {check.title} (budget {check.budget_s:g} s)")
            check.status = "running"
            written(checks)
            try:
                acc.run_check(check, make(ctx), overall=overall)
            finally:
                stop_leftovers(ctx)
            say(f"  {check.word} in {check.seconds:.0f} s" + "".join(f"; {n}" for n in check.notes))
            written(checks)
    except KeyboardInterrupt as exc:
        for check in checks:
            if check.status in ("pending", "running"):
                check.status = "skip" if check.status == "pending" else "interrupted"
                check.note(f"not run: the run was interrupted ({exc or 'SIGINT'})")
        say(f"interrupted ({exc or 'SIGINT'}): the report keeps what was done")
        written(checks)
    return checks


def tree_digest() -> str:
    """A digest of the code that ran (cockpit/, bench/, presets/), to pin a report where no git is."""
    h = hashlib.sha256()
    for folder, pattern in (("cockpit", "*.py"), ("bench", "*.py"), ("presets", "*.json")):
        for path in sorted((REPO / folder).rglob(pattern)):
            h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def git_commit() -> str:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (no git here)"
    return proc.stdout.strip() or "unknown (not a git checkout)"


def machine_facts(device_name: str, mode: str, total: float) -> dict[str, Any]:
    def version(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "absent"

    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {
        "device": device_name,
        "date": date.today().isoformat(),
        "mode": mode,
        "torch": version("torch"),
        "nvidia-ml-py": version("nvidia-ml-py"),
        "commit": git_commit(),
        "code digest (cockpit, bench, presets)": tree_digest(),
        "python": platform.python_version(),
        "CPUs": os.cpu_count(),
        "load average (1 min)": load,
        "seconds so far": round(total, 1),
    }


@contextlib.contextmanager
def private_home(folder: Path) -> Iterator[None]:
    """Runs, caches, presets and the run index of this run in `folder`, not the user's; the
    children import this tree (PYTHONPATH), installed or not, from any working directory."""
    saved = {v: os.environ.get(v) for v in (*HOME_VARS, "PYTHONPATH", EXT_VAR)}
    for var in HOME_VARS:
        os.environ[var] = str(folder / var.rsplit("_", 1)[-1].lower())
    # The tracer's fake-CUDA extension (a CPU-only torch: a C++ build of a minute or two) is kept
    # where the test suite keeps it, not rebuilt in every run's fresh cache.
    os.environ.setdefault(EXT_VAR, str(REPO / ".cache" / "fake_cuda"))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), saved["PYTHONPATH"]) if p)
    try:
        yield
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """SIGTERM (and SIGHUP) raise `Interrupted` in the main thread, once: the check in progress
    ends, its children are killed and the report is written; a second signal is ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stops = (signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.getsignal(sig) for sig in stops}

    def handler(signum: int, frame: object) -> None:
        for sig in stops:
            signal.signal(sig, signal.SIG_IGN)
        raise acc.Interrupted(signal.Signals(signum).name)

    for sig in stops:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument(
        "--quick", action="store_true", help="tiny presets, few steps: a dry run of the harness"
    )
    parser.add_argument("--only", help="comma-separated check numbers (default: all)")
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="the folder of the report, named <gpu>-<date>.md (default bench/results)",
    )
    parser.add_argument("--out", type=Path, help="the report's file (instead of --results)")
    parser.add_argument(
        "--budget",
        type=float,
        default=TOTAL_BUDGET_S,
        help="seconds from the start for all checks together; later checks are skipped for time",
    )
    parser.add_argument(
        "--slack",
        type=float,
        default=1.0,
        help="multiply every check's budget (a loaded machine; the report shows the budgets used)",
    )
    return parser.parse_args(argv)


def device_and_gpu(args: argparse.Namespace) -> tuple[str, GpuSpec | None, list[str]] | None:
    """(the device's name, its spec, notes), or None when --device cuda finds no CUDA GPU."""
    if args.device != "cuda":
        return f"cpu-{os.cpu_count()}core" + ("-quick" if args.quick else ""), None, []
    facts = cuda_facts()
    if "problem" in facts:
        print(
            f"gpu_acceptance: no CUDA GPU here ({facts['problem']}); nothing to check. "
            "`--device cpu --quick` dry-runs the harness."
        )
        return None
    gpu = gpu_spec(facts)
    notes = [f"torch {facts.get('torch')}, CUDA {facts.get('cuda')}, {facts.get('count')} GPU(s)"]
    if not query_gpus():
        notes.append(f"NVML: {nvml_problem() or 'sees no GPU'}; the spec comes from torch")
    return facts["name"], gpu, notes


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    overall = Budget(args.budget * args.slack)  # the deadline counts from the start
    found = device_and_gpu(args)
    if found is None:
        return 0
    device_name, gpu, notes = found
    out = args.out or acc.report_path(args.results, device_name)
    mode = "quick" if args.quick else "full"

    facts = machine_facts(device_name, mode, 0.0)  # git and the digest once, not per write
    facts["notes"] = "; ".join(notes) or "-"

    def write(checks: list[Check]) -> None:
        with contextlib.suppress(OSError):
            facts["load average (1 min)"] = round(os.getloadavg()[0], 2)
        facts["seconds so far"] = round(time.monotonic() - started, 1)
        acc.write_report(out, checks, facts)

    print(f"gpu_acceptance: {device_name} ({mode}); report: {out}")
    with (
        stop_signals_interrupt(),
        tempfile.TemporaryDirectory(prefix="gpu-acceptance-") as tmp,
        private_home(Path(tmp) / "home"),
    ):
        work = Path(tmp)
        corpus = make_corpus(work, 100_000 if args.quick else 3_000_000)
        ctx = Context(args.device, args.quick, work, corpus, gpu)
        only = {k.strip() for k in args.only.split(",")} if args.only else None
        checks = run_all(ctx, only, overall, slack=args.slack, written=write)
    total = time.monotonic() - started
    passed = sum(c.passed for c in checks)
    print(f"{passed} of {len(checks)} checks passed in {total:.0f} s; report: {out}")
    return acc.exit_code(checks)


if __name__ == "__main__":
    sys.exit(main())
