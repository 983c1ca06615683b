"""Host memory and CPU time of a run: what a CPU run needs of RAM and how long it takes here.

No torch. A CPU run's tensors live in host RAM: the same breakdown as on a GPU
(cockpit.plan.estimate.memory_breakdown), in the dtype a CPU trains in (fp32 for `auto`),
plus the torch runtime and the training data; it is compared with the RAM psutil says is
available. A GPU run needs host RAM too: each process's CUDA runtime, the data and the
pinned buffers its batches are copied from. docs/estimator.md ("Host memory and CPU time").

A CPU run's ETA comes from this machine's measured speed: `python -m cockpit.train.speed` (a
few seconds of real training steps of a small model) gives the training FLOP/s this machine
does; it is cached per machine and torch version in the per-user cache folder and refreshed
from the step times of finished CPU runs (cockpit.runs.speed). The ETA is a preset's training
FLOPs over that rate.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cockpit.common.format import human_bytes, rough_eta
from cockpit.plan.estimate import (
    GIB,
    MIB,
    calibration_dir,
    flops_per_token,
    memory_breakdown,
    spec_of,
)
from cockpit.plan.presets import Preset

# A CPU training process before its tensors: Python, torch and its kernels, the tokenizer and the
# event writer (torch loaded: 244-256 MiB resident here; a tiny_char run at micro-batch 16 peaked
# at 610 MiB, 130 MiB of it the step's tensors and about 120 MiB the corpus being tokenized;
# `python -m cockpit.train.speed` measures the torch-loaded figure on each machine).
CPU_RUNTIME_BYTES = 384 * MIB
# A CUDA process's host memory: the CUDA runtime, cuBLAS/cuDNN and the context's host side
# (2-3.5 GiB resident is usual for a CUDA build of torch; not measured by this project yet).
CUDA_RUNTIME_BYTES = 3 * GIB
# The CPU allocator (glibc malloc) keeps some freed memory and fragments: a margin on the step's
# tensors (not measured yet).
CPU_ALLOCATOR_SLACK = 0.10
# Tokenizing a text source holds the text, its UTF-32 code points (4 bytes a character) and the
# ids (8, then 2) at once on the first run: about this many bytes per byte of text.
TEXT_BYTES_PER_BYTE = 16
CPU_SCORE_TENSORS = 6  # s^2 tensors of a CPU math-path attention's backward (see below)
DEFAULT_CORPUS_BYTES = 8 * MIB  # cockpit.text.corpus reads at most this much of the default corpus
# How far a host plan may be off (no real run has checked it yet): a launch is refused only when
# the plan, less this share, is still over the RAM available; a suggested micro-batch plans within
# the RAM available less this share, so the launch check never refuses it.
HOST_MARGIN = 0.15
SPEED_SECONDS = 2.0  # timed steps of the calibration


def cpu_dtype(preset: Preset) -> str:
    """The dtype a CPU run trains in: fp32 for auto (bf16 when asked; fp16 is refused on CPU)."""
    return "fp32" if preset.train.dtype == "auto" else preset.train.dtype


def available_ram() -> tuple[int | None, int | None]:
    """(available, total) bytes of RAM as psutil reports them; (None, None) when it cannot."""
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.available), int(vm.total)
    except (ImportError, OSError, AttributeError):
        return None, None


def _source_bytes(source: str) -> tuple[int, str]:
    """(resident bytes, what they are) of a data source while it is loaded."""
    if source == "default":
        return DEFAULT_CORPUS_BYTES * TEXT_BYTES_PER_BYTE, "the default corpus, tokenized"
    path = Path(os.path.expanduser(source))
    if source.endswith(".bin") or "*" in source or (path.is_dir() and any(path.glob("*.bin"))):
        return 0, "token files, memory-mapped (the page cache gives way)"
    try:
        if path.is_file():
            size = path.stat().st_size
        elif path.is_dir():
            size = 0
            for i, p in enumerate(path.rglob("*")):
                if i > 10_000:
                    break
                if p.is_file():
                    size += p.stat().st_size
        else:
            return 0, "no such source"
    except OSError:
        return 0, "unreadable source"
    return size * TEXT_BYTES_PER_BYTE, "the text, tokenized on the first run"


@dataclass
class HostPlan:
    """Host RAM a run needs, by part, against the RAM available."""

    device: str  # "cpu" or "cuda"
    parts: list[tuple[str, int]]
    available_bytes: int | None
    total_ram_bytes: int | None
    dtype: str = ""
    nproc: int = 1

    @property
    def total_bytes(self) -> int:
        return sum(b for _, b in self.parts)

    @property
    def fits(self) -> bool | None:
        """True/False against the available RAM; None when psutil cannot tell."""
        if self.available_bytes is None:
            return None
        return self.total_bytes <= self.available_bytes

    @property
    def refused(self) -> bool:
        """Over the available RAM by more than the plan's error margin (HOST_MARGIN)."""
        if self.available_bytes is None:
            return False
        return self.total_bytes * (1 - HOST_MARGIN) > self.available_bytes

    @property
    def verdict(self) -> str:
        """One line: the RAM needed against the RAM available."""
        need = human_bytes(self.total_bytes)
        where = (
            "a CPU run's tensors and runtime" if self.device == "cpu" else "a GPU run's host side"
        )
        if self.available_bytes is None:
            return f"host RAM: needs about {need} ({where}); available RAM unknown"
        have = human_bytes(self.available_bytes)
        if self.fits:
            return f"host RAM: {need} of {have} available ({where})"
        return f"host RAM: needs {need}, {have} available ({where}; {human_bytes(self.total_bytes - self.available_bytes)} short)"


def host_memory(
    preset: Preset, device: str = "cpu", *, batch_size: int | None = None, nproc: int = 1
) -> HostPlan:
    """Host RAM for `preset` trained on `device` ("cpu", or "cuda" for a GPU run's host side)."""
    available, total = available_ram()
    data, data_what = _source_bytes(preset.data.source)
    if device == "cpu":
        dtype = cpu_dtype(preset)
        mem = memory_breakdown(preset, None, batch_size=batch_size, dtype=dtype, flash=True)
        step = [
            (label, b)
            for label, b in mem.items()
            if b and label not in ("allocator slack", "CUDA context")
        ]
        scores = cpu_attention_scores_bytes(preset, batch_size or preset.train.batch_size, dtype)
        if scores:
            step.append(("attention scores (CPU math path: dropout)", scores))
        live = sum(b for _, b in step)
        speed = load_cpu_speed()
        runtime = speed.runtime_rss_bytes if speed and speed.runtime_rss_bytes else 0
        parts = step + [
            ("CPU allocator slack (10%)", int(live * CPU_ALLOCATOR_SLACK)),
            ("torch runtime", max(runtime, CPU_RUNTIME_BYTES)),
            (f"data: {data_what}", data),
        ]
        return HostPlan("cpu", parts, available, total, dtype=dtype, nproc=1)
    m, t = preset.model, preset.train
    batch = batch_size or t.batch_size
    pinned = 2 * 2 * _next_pow2(8 * batch * m.block_size)  # x and y, int64, one batch ahead;
    # pinned host memory comes from a caching allocator that rounds to powers of two
    parts = [
        (f"CUDA runtime ({nproc} process{'es' if nproc > 1 else ''})", CUDA_RUNTIME_BYTES * nproc),
        (f"data: {data_what}", data * nproc),
        ("pinned batch buffers", pinned * nproc),
    ]
    return HostPlan("cuda", parts, available, total, nproc=nproc)


def cpu_attention_scores_bytes(preset: Preset, batch: int, dtype: str) -> int:
    """The s^2 attention tensors of a CPU step with dropout (0 without dropout, or for BDH, whose
    scores the breakdown already counts).

    torch's CPU flash attention takes no dropout, so a CPU step with attention dropout runs the
    math path: at its backward the scores' softmax, the dropout mask, the dropped weights and
    their gradients are live, about six s^2 tensors and a byte mask per layer (measured on
    tiny_char, fp32: peak RSS 2.0 GiB at micro-batch 128 and 3.8 GiB at 256, 25 bytes per
    score element beyond the flash plan)."""
    m = preset.model
    if m.dropout == 0:
        return 0
    try:
        if not spec_of(m).flash_attention:  # BDH: its scores are already in the breakdown
            return 0
    except ValueError:  # your own model before it is measured: its trace holds what it keeps
        return 0
    element = 4 if dtype == "fp32" else 2
    per_element = CPU_SCORE_TENSORS * element + 1
    return m.n_layer * m.n_head * m.block_size * m.block_size * batch * per_element


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


# --------------------------------------------------------------------------- CPU speed


@dataclass
class CpuSpeed:
    """This machine's training FLOP/s (fp32, the run's thread policy), and where it comes from."""

    flops_per_s: float
    source: str  # "calibration" or "N finished runs"
    measured_at: float
    machine: str
    torch: str
    runtime_rss_bytes: int | None = None
    runs: list[str] = field(default_factory=list)  # the run ids the figure was read from

    def eta_seconds(self, preset: Preset) -> float | None:
        """The run's training FLOPs over this rate."""
        if self.flops_per_s <= 0:
            return None
        total = flops_per_token(preset.model) * preset.tokens_per_step * preset.train.max_steps
        return total / self.flops_per_s


def torch_version() -> str:
    """The installed torch's version, without importing it ("" when none is installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_name() -> str:
    """This machine as speed figures are keyed: host, CPU model and the cores this process may use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return f"{socket.gethostname()} / {_cpu_model()} / {cores} cores"


def speed_path() -> Path:
    """The cached speed of this machine and torch version."""
    key = hashlib.sha256(f"{machine_name()}|{torch_version()}".encode()).hexdigest()[:16]
    return calibration_dir() / f"cpu_speed-{key}.json"


def load_cpu_speed() -> CpuSpeed | None:
    """This machine's cached speed (None when never measured, or unreadable)."""
    try:
        raw = json.loads(speed_path().read_text(encoding="utf-8"))
        return CpuSpeed(
            float(raw["flops_per_s"]),
            str(raw["source"]),
            float(raw["measured_at"]),
            str(raw["machine"]),
            str(raw["torch"]),
            raw.get("runtime_rss_bytes"),
            list(raw.get("runs", [])),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_cpu_speed(speed: CpuSpeed) -> Path:
    """Keep this machine's speed (atomic write)."""
    from cockpit.common.fsutil import atomic_write_text

    path = speed_path()
    atomic_write_text(path, json.dumps(asdict(speed), indent=2) + "\n")
    return path


def speed_command(seconds: float = SPEED_SECONDS) -> list[str]:
    """The argv of the speed calibration child (cockpit/train/speed.py)."""
    return [sys.executable, "-m", "cockpit.train.speed", "--seconds", str(seconds)]


def measure_cpu_speed(seconds: float = SPEED_SECONDS, timeout_s: float = 120.0) -> CpuSpeed | str:
    """Run the calibration child and cache its figure; a one-line reason when it cannot run."""
    try:
        proc = subprocess.run(
            speed_command(seconds),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the speed calibration did not run: {exc}"
    if proc.returncode != 0:
        if "No module named 'torch'" in proc.stderr:
            return "torch is not installed here (pip install torch)"
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"the speed calibration failed: {last[:200]}"
    try:
        raw = json.loads(proc.stdout.strip().splitlines()[-1])
        speed = CpuSpeed(
            float(raw["flops_per_s"]),
            "calibration",
            time.time(),
            machine_name(),
            torch_version(),
            int(raw.get("runtime_rss_bytes") or 0) or None,
        )
    except (ValueError, KeyError, IndexError, TypeError):
        return "the speed calibration's output did not parse"
    save_cpu_speed(speed)
    return speed


def record_run_speeds(samples: list[tuple[str, float]]) -> CpuSpeed | None:
    """Replace the cached speed with the median FLOP/s of finished runs ((run id, FLOP/s), this
    machine and torch version): what real runs did beats a few calibration steps."""
    if not samples:
        return None
    rates = sorted(rate for _, rate in samples)
    median = rates[len(rates) // 2]
    old = load_cpu_speed()
    if old is not None and sorted(old.runs) == sorted(r for r, _ in samples):
        return old  # nothing new
    speed = CpuSpeed(
        median,
        f"{len(samples)} finished run{'s' if len(samples) > 1 else ''}",
        time.time(),
        machine_name(),
        torch_version(),
        old.runtime_rss_bytes if old else None,
        [r for r, _ in samples],
    )
    save_cpu_speed(speed)
    return speed


def cpu_eta_line(preset: Preset, speed: CpuSpeed | None) -> str:
    """'ETA ... on this CPU' with where the speed comes from, or why there is none yet."""
    if speed is None:
        return "CPU ETA: not measured yet (`gpt-cockpit estimate NAME --device cpu` measures it)"
    eta = speed.eta_seconds(preset)
    if eta is None:
        return "CPU ETA: unknown"
    rate = speed.flops_per_s / 1e9
    return (
        f"CPU ETA: {rough_eta(eta)} for {preset.train.max_steps:,} steps at {rate:.1f} GFLOP/s "
        f"(this machine, {speed.source})"
    )


def as_dict(plan: HostPlan, speed: CpuSpeed | None, preset: Preset) -> dict[str, Any]:
    """A JSON-safe view of the host plan (and, for CPU, the ETA) for --json."""
    out: dict[str, Any] = {
        "device": plan.device,
        "dtype": plan.dtype or None,
        "parts": dict(plan.parts),
        "total_bytes": plan.total_bytes,
        "available_bytes": plan.available_bytes,
        "total_ram_bytes": plan.total_ram_bytes,
        "fits": plan.fits,
        "verdict": plan.verdict,
    }
    if plan.device == "cpu":
        out["eta_s"] = speed.eta_seconds(preset) if speed else None
        out["cpu_flops_per_s"] = speed.flops_per_s if speed else None
        out["cpu_speed_source"] = speed.source if speed else None
    return out


def cpu_batch_suggestion(preset: Preset, available_bytes: int | None) -> tuple[int, int] | None:
    """(micro-batch, grad_accum) to suggest for a CPU run: the largest micro-batch whose plan fits
    in the available RAM less HOST_MARGIN (so runs.prelaunch.plan_problem never refuses it),
    the same sequences per step; None when the RAM is unknown or not even micro-batch 1 fits."""
    if not available_bytes:
        return None
    return host_batch_fit(preset, int(available_bytes * (1 - HOST_MARGIN)))


def host_batch_fit(preset: Preset, budget_bytes: int) -> tuple[int, int] | None:
    """(micro-batch, grad_accum) of the largest CPU micro-batch whose host plan stays within
    `budget_bytes`, keeping the preset's sequences per step; None when not even 1 fits."""

    def need(b: int) -> int:
        return host_memory(preset, "cpu", batch_size=b).total_bytes

    if need(1) > budget_bytes:
        return None
    lo, hi = 1, 2
    while hi <= 1 << 20 and need(hi) <= budget_bytes:  # linear in the batch: double, then bisect
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if need(mid) <= budget_bytes else (lo, mid)
    target = preset.train.batch_size * preset.train.grad_accum
    micro = min(lo, target)
    return micro, -(-target // micro)
