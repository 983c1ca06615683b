"""Pure arithmetic about a preset: parameters, FLOPs, tokens, time, and peak training VRAM.

No torch. Every number a person sees in `gpt-cockpit estimate` and the app's plan
panel comes from here; docs/estimator.md explains each term and where it comes from.

The memory model follows one optimizer step of the engine (cockpit/train/loop.py):
fp32 master weights, fp32 gradients, AdamW's two fp32 moments, autocast's 16-bit
weight copies, the activations the backward pass keeps (Korthikanti et al. 2022,
with the flash/SDPA form that drops the s^2 term), the logits and cross-entropy
buffers (which dominate small models with a 50k vocabulary), the allocator's
slack, and the CUDA context (outside torch.cuda.max_memory_reserved()).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cockpit import arch as archs
from cockpit.arch import ArchSpec
from cockpit.common.format import human_bytes
from cockpit.plan.allocator import COMM_SLACK, child_allocator_mode, planned_slack
from cockpit.plan.gpu import GpuSpec
from cockpit.plan.presets import ModelConfig, Preset

MIB = 1024**2
GIB = 1024**3
CHINCHILLA_TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022: compute-optimal tokens ~ 20 x parameters
DEFAULT_HEADROOM = (
    0.08  # fraction of GPU memory a suggestion keeps free ("barely fits" sizes crash later)
)
DEFAULT_MFU = 0.35  # assumed model FLOPs utilisation for ETAs before a run measures its own
CUDA_CONTEXT_BYTES = 512 * MIB  # CUDA context + cuBLAS/cuDNN workspaces: 0.3-2 GiB, ~0.5 typical
COMPILE_NOTE = (
    "train.compile=true: planned as the eager step (torch.compile's memory is not measured; "
    "it usually holds less, so the plan errs on the safe side)"
)


# --------------------------------------------------------------------------- parameters and FLOPs


def spec_of(m: ModelConfig) -> ArchSpec:
    """The architecture's spec (cockpit/arch); for a model file of your own, its measured figures.

    ValueError for an unknown architecture, and for your own model before it was measured
    (cockpit.plan.measure.ensure_measured runs the measuring child)."""
    if archs.is_own_model(m.arch):
        from cockpit.plan.measure import measured_spec

        return measured_spec(m)
    try:
        return archs.get_spec(m.arch)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None


def count_params(m: ModelConfig) -> int:
    """Exact parameter count of the module cockpit.train.models.build_model(m) builds."""
    return spec_of(m).count_params(m)


def matrix_params(m: ModelConfig) -> int:
    """Parameters the muon optimizer trains with Muon (cockpit.train.optim.param_roles' "matrix").

    The blocks' weight matrices: not embeddings, the head, norms, gains, scales or mixes.
    """
    return spec_of(m).matrix_params(m)


def optimizer_state_bytes(m: ModelConfig, optimizer: str) -> int:
    """fp32 optimizer state: AdamW keeps two moments per parameter; muon one momentum
    buffer per matrix parameter and Adam's two moments for the rest."""
    params = count_params(m)
    if optimizer == "adamw":
        return params * 8
    if optimizer == "muon":
        matrices = matrix_params(m)
        return matrices * 4 + (params - matrices) * 8
    return 0


def embedding_params(m: ModelConfig) -> int:
    """Parameters in position embeddings (left out of FLOPs, as nanoGPT's estimate_mfu does)."""
    return spec_of(m).embedding_params(m)


def flops_per_token(m: ModelConfig) -> float:
    """Training FLOPs per token: 6N + 12*L*H*Q*T (PaLM appendix B; N without position embeddings)."""
    return spec_of(m).flops_per_token(m)


def mfu(tokens_per_s: float, flops_per_tok: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation in [0, 1]: achieved FLOP/s over the GPU's peak (None when unknown)."""
    if not peak or peak <= 0 or tokens_per_s <= 0:
        return None
    return tokens_per_s * flops_per_tok / peak


def training_dtype(preset: Preset, gpu: GpuSpec | None) -> str:
    """The dtype the engine will train in: auto -> bf16 where the GPU has it, fp16 where not, fp32 on CPU."""
    dtype = preset.train.dtype
    if dtype != "auto":
        return dtype
    if gpu is None:
        return "fp32"
    return "bf16" if gpu.bf16 else "fp16"


def planning_dtype(preset: Preset, gpu: GpuSpec | None) -> str:
    """The dtype memory is planned for: the training dtype on `gpu`, or bf16 without a GPU.

    Without a GPU to plan for we plan for a typical modern one (bf16, flash attention):
    the CPU this machine would train on has no VRAM to estimate.
    """
    if gpu is None and preset.train.dtype == "auto":
        return "bf16"
    return training_dtype(preset, gpu)


# --------------------------------------------------------------------------- memory


@dataclass
class MemoryBreakdown:
    """Peak training memory by part, in bytes."""

    weights: int  # fp32 master weights
    gradients: int  # fp32 gradients
    optimizer: int  # AdamW exp_avg + exp_avg_sq, fp32 (muon: one buffer per matrix parameter)
    amp_copies: int  # autocast's 16-bit copies of the matmul weights, kept for backward
    activations: int  # what backward keeps, all layers
    logits: int  # logits, their fp32 copy, log-softmax and its gradient
    allocator_slack: int  # fragmentation in the caching allocator
    cuda_context: int  # CUDA context and library workspaces (not in max_memory_reserved)
    activation_form: str  # "flash/SDPA" or "plain attention (s^2 term)"
    activations_per_layer: int
    activations_per_layer_plain: int  # the same layer with materialised attention scores
    comm_buffers: int = (
        0  # several GPUs: DDP's gradient buckets, or FSDP's gathered units (memory_per_gpu)
    )
    comm_form: str = ""  # "DDP gradient buckets" | "FSDP gathered blocks"

    @property
    def reserved_bytes(self) -> int:
        """What torch.cuda.max_memory_reserved() should read at the peak."""
        return self.total_bytes - self.cuda_context

    @property
    def live_bytes(self) -> int:
        """Live tensor bytes at the peak: what the tracer (cockpit.train.trace) counts."""
        return self.total_bytes - self.allocator_slack - self.cuda_context

    @property
    def total_bytes(self) -> int:
        return (
            self.weights
            + self.gradients
            + self.optimizer
            + self.amp_copies
            + self.activations
            + self.logits
            + self.allocator_slack
            + self.cuda_context
            + self.comm_buffers
        )

    def items(self) -> list[tuple[str, int]]:
        """(label, bytes) for display, largest parts a person cares about first."""
        return [
            ("weights", self.weights),
            ("gradients", self.gradients),
            ("optimizer state", self.optimizer),
            ("AMP copies", self.amp_copies),
            (f"activations ({self.activation_form})", self.activations),
            ("logits + cross-entropy", self.logits),
            ("allocator slack", self.allocator_slack),
            ("CUDA context", self.cuda_context),
        ] + ([(self.comm_form, self.comm_buffers)] if self.comm_buffers else [])


def _layer_activation_bytes(m: ModelConfig, batch: int, dtype: str, *, flash: bool) -> int:
    """Bytes one block keeps for backward, term by term as the traced step keeps them (docs/estimator.md)."""
    return spec_of(m).layer_activation_bytes(m, batch, dtype, flash=flash)


def _stream_grad_bytes(m: ModelConfig, tokens: int) -> int:
    """In a block's backward with num_streams n > 1: three n-stream fp32 tensors at once (the
    streams' incoming gradient, the one being built, and the product post's gradient sums)."""
    return 12 * m.num_streams * tokens * m.n_embd if m.num_streams > 1 else 0


def _stream_backward_extra(m: ModelConfig, tokens: int, dtype: str) -> int:
    """With residual streams the peak can move from the log-softmax into the last block's
    backward: the stream gradients are live there, the logits and the head's inputs are not."""
    if m.num_streams <= 1:
        return 0
    half = 4 if dtype == "fp32" else 2
    in_block = _stream_grad_bytes(m, tokens) - (4 + half) * m.n_embd * tokens
    return max(0, in_block - _logit_bytes(m, tokens, dtype))


def matmul_params(m: ModelConfig) -> int:
    """Parameters autocast casts to 16 bits for a matmul (one cached copy each, kept for backward)."""
    return spec_of(m).matmul_params(m)


def _outside_blocks_bytes(m: ModelConfig, tokens: int, dtype: str) -> int:
    """Per-token bytes outside the blocks: the batch (inputs, targets), the last residual, the head's input."""
    return spec_of(m).outside_blocks_bytes(m, tokens, dtype)


def _logit_bytes(m: ModelConfig, tokens: int, dtype: str) -> int:
    """At the peak (log-softmax backward): the saved fp32 log-softmax, its incoming and outgoing gradient."""
    per_logit = 12
    if m.logit_softcap > 0:
        per_logit += 2 if dtype != "fp32" else 4  # tanh keeps its output for backward
    return tokens * m.vocab_size * per_logit


def _chunked_logit_bytes(m: ModelConfig, tokens: int, dtype: str) -> int:
    """model.loss_chunk, as traced: the peak is in one chunk's backward, either at its log-softmax
    (that chunk's logits, plus the head weight's 16-bit copy the chunk casts) or, for small chunks,
    at the head weight's gradient (the copy and the gradient); plus the gradient pieces of the
    head's input, all tokens. Golf's peak moves into the blocks' backward once its small logits
    are chunked (25, in fp32 17, bytes per token per width, measured)."""
    half = 4 if dtype == "fp32" else 2
    h, v, c = m.n_embd, m.vocab_size, min(tokens, m.loss_chunk)
    at_softmax = _logit_bytes(m, c, dtype) + half * v * h
    at_weight_grad = 2 * half * v * h + half * c * v
    total = max(at_softmax, at_weight_grad) + (8 - half) * tokens * h
    return max(total, spec_of(m).chunked_logit_floor(m, tokens, dtype))


def memory_breakdown(
    preset: Preset,
    gpu: GpuSpec | None = None,
    *,
    batch_size: int | None = None,
    flash: bool | None = None,
    dtype: str | None = None,
) -> MemoryBreakdown:
    """Peak training memory of one micro-batch step for `preset` (optionally at another batch, or
    in another dtype than the one planned for `gpu`: a CPU run's, cockpit.plan.host)."""
    m, t = preset.model, preset.train
    batch = batch_size or t.batch_size
    dtype = dtype or planning_dtype(preset, gpu)
    if spec_of(m).measured:  # your own model: no formula for its activations, its trace instead
        return _traced_breakdown(preset, gpu, batch, dtype)
    # SDPA picks flash (sm80+) or memory-efficient attention (sm50+): neither keeps the s^2 scores
    use_flash = (gpu is None or gpu.compute_capability >= (5, 0)) if flash is None else flash
    if not spec_of(m).flash_attention:  # bdh's linear attention keeps its scores
        use_flash = False
    params = count_params(m)
    weights = params * 4
    optimizer = optimizer_state_bytes(m, t.optimizer)
    amp_copies = 0 if dtype == "fp32" else matmul_params(m) * 2
    per_layer_flash = _layer_activation_bytes(m, batch, dtype, flash=True)
    per_layer_plain = _layer_activation_bytes(m, batch, dtype, flash=False)
    per_layer = per_layer_flash if use_flash else per_layer_plain
    s, h = m.block_size, m.n_embd
    tokens = s * batch
    if t.activation_checkpointing:
        # each block keeps only its input; one block's activations live again during its recompute,
        # after the logits are gone (the head's gradient exists by then): whichever is larger
        activations = m.n_layer * tokens * h * 4 * m.num_streams  # n fp32 residual streams
        # the residual stream's gradient and, in golf, the U-Net skips' gradients waiting for their block
        n_skip = spec_of(m).checkpoint_waiting_tensors(m)
        recompute = per_layer + tokens * h * 4 * (1 + n_skip) + 4 * m.vocab_size * h
        if (
            m.num_streams > 1
        ):  # two n-stream fp32 gradients, less what the plain block keeps (traced)
            recompute += (8 * m.num_streams - 10) * tokens * h
        logits_now = _logit_bytes(m, tokens, dtype)
        activations += max(0, recompute - logits_now)
    else:
        activations = m.n_layer * per_layer
        activations += _stream_backward_extra(m, tokens, dtype)
    # train.compile: planned as the eager step (compile_note): inductor's savings are not measured,
    # and a plan must never be under what eager needs without a measurement
    activations += _outside_blocks_bytes(m, tokens, dtype)
    logits = _logit_bytes(m, tokens, dtype)
    if m.loss_chunk > 0:
        logits = _chunked_logit_bytes(m, tokens, dtype)
    # The peak is in the last micro-batch's log-softmax backward: no gradient of this step exists yet
    # unless earlier micro-batches made them; or at the step's end, gradients complete, if that is more.
    gradients = params * 4 if t.grad_accum > 1 else 0
    at_logits = weights + gradients + optimizer + amp_copies + activations + logits
    at_end = weights + params * 4 + optimizer + _end_of_backward_extra(m)
    if at_end > at_logits:
        gradients, amp_copies, activations, logits = params * 4, 0, _end_of_backward_extra(m), 0
    allocated = weights + gradients + optimizer + amp_copies + activations + logits
    slack = planned_slack(int(allocated), _freed_logits_bytes(m, tokens, dtype))
    return MemoryBreakdown(
        weights=weights,
        gradients=gradients,
        optimizer=optimizer,
        amp_copies=amp_copies,
        activations=int(activations),
        logits=int(logits),
        allocator_slack=slack,
        cuda_context=CUDA_CONTEXT_BYTES if gpu is not None else 0,
        activation_form="flash/SDPA" if use_flash else "plain attention",
        activations_per_layer=per_layer_flash,
        activations_per_layer_plain=per_layer_plain,
    )


def _traced_breakdown(
    preset: Preset, gpu: GpuSpec | None, batch: int, dtype: str
) -> MemoryBreakdown:
    """Your own model's memory: the traced step's bytes by category, on the line through its two
    traced micro-batches; before it is traced, the weights, gradients and optimizer state alone."""
    m, t = preset.model, preset.train
    points = load_traces(preset, dtype)
    params = count_params(m)
    parts = {
        "weights": params * 4,
        "gradients": params * 4 if t.grad_accum > 1 else 0,
        "optimizer": optimizer_state_bytes(m, t.optimizer),
        "activations": 0,
        "temporaries": 0,
        "logits/loss": 0,
    }
    form = "not traced yet"
    if len(points) >= 2:
        lo, hi = min(points), max(points)
        low, high = points[lo].get("by_category", {}), points[hi].get("by_category", {})
        for name in parts:
            a, b = low.get(name, 0), high.get(name, 0)
            parts[name] = max(0, int(a + (b - a) * (batch - lo) / (hi - lo)))
        form = "traced"
    allocated = sum(parts.values())
    return MemoryBreakdown(
        weights=parts["weights"],
        gradients=parts["gradients"],
        optimizer=parts["optimizer"],
        amp_copies=0,  # in the traced activations and temporaries
        activations=parts["activations"] + parts["temporaries"],
        logits=parts["logits/loss"],
        allocator_slack=planned_slack(allocated, 0),  # no formula knows its logits' hole
        cuda_context=CUDA_CONTEXT_BYTES if gpu is not None else 0,
        activation_form=form,
        activations_per_layer=0,
        activations_per_layer_plain=0,
    )


def fsdp_unit_params(m: ModelConfig) -> int:
    """Parameters of FSDP2's largest unit: one block, or the root (embeddings, head, final norm)."""
    params = count_params(m)
    per_block = spec_of(m).non_embedding_params(m) // max(1, m.n_layer)
    return max(per_block, params - per_block * m.n_layer)


def memory_per_gpu(
    preset: Preset,
    gpu: GpuSpec | None = None,
    *,
    world_size: int = 1,
    parallel: str | None = None,
    batch_size: int | None = None,
) -> MemoryBreakdown:
    """Peak memory of ONE GPU of a run on `world_size` GPUs (train.parallel, or `parallel`).

    Each rank runs the preset's micro-batch, so activations and logits are one GPU's. DDP
    replicates the model and adds its gradient buckets (a flat fp32 copy of every gradient,
    all-reduced bucket by bucket). FSDP2 shards fp32 weights, gradients and AdamW state
    1/world_size each, and adds the full weights of the unit being run plus the one
    prefetched (2 x the largest unit) and that unit's unsharded gradients before their
    reduce-scatter (1 x). One GPU is memory_breakdown's.
    """
    mem = memory_breakdown(preset, gpu, batch_size=batch_size)
    if world_size <= 1:
        return mem
    mode = parallel or preset.train.parallel
    params = count_params(preset.model)
    if mode == "fsdp":
        unit = fsdp_unit_params(preset.model) * 4
        shard = -(-params * 4 // world_size)
        mem = replace(
            mem,
            weights=shard,
            gradients=shard if mem.gradients else 0,
            optimizer=mem.optimizer // world_size,
            comm_buffers=3 * unit,
            comm_form="FSDP gathered blocks",
        )
    else:
        mem = replace(mem, comm_buffers=params * 4, comm_form="DDP gradient buckets")
    allocated = mem.total_bytes - mem.allocator_slack - mem.cuda_context
    tokens = preset.model.block_size * (batch_size or preset.train.batch_size)
    hole = _freed_logits_bytes(preset.model, tokens, planning_dtype(preset, gpu))
    return replace(mem, allocator_slack=planned_slack(allocated, hole))


def _freed_logits_bytes(m: ModelConfig, tokens: int, dtype: str) -> int:
    """The 16-bit logits (fp32: the logits), freed in the forward once the loss has its fp32 copy;
    their block stays reserved at the log-softmax peak (cockpit.plan.allocator.planned_slack)."""
    if not spec_of(m).logits_hole:
        return 0
    half = 4 if dtype == "fp32" else 2
    return half * min(tokens, m.loss_chunk or tokens) * m.vocab_size


def _end_of_backward_extra(m: ModelConfig) -> int:
    """A tied embedding's two gradients (head and lookup) and their sum, alive at once, fp32."""
    tied = spec_of(m).tied_head(m)
    return 8 * m.vocab_size * m.n_embd if tied else 0


# --------------------------------------------------------------------------- calibration (probe)


def calibration_dir() -> Path:
    """Where probe measurements are kept."""
    env = os.environ.get("GPT_COCKPIT_CACHE")
    if env:
        return Path(env) / "calibration"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("gpt-cockpit")) / "calibration"


def calibration_key(preset: Preset, gpu_name: str) -> str:
    """Measurements depend on the GPU and on everything but the batch size."""
    shape = asdict(preset.model)
    if not shape["extra"]:
        del shape["extra"]  # keys made before ModelConfig had it stay valid
    if archs.is_own_model(preset.model.arch):  # your own model: its file's content, not its name
        from cockpit.plan.measure import model_file_hash

        shape["arch"] = model_file_hash(preset)
    t = preset.train
    shape.update(
        dtype=t.dtype, compile=t.compile, ckpt=t.activation_checkpointing, optimizer=t.optimizer
    )
    import hashlib

    digest = hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]
    safe_gpu = "".join(c if c.isalnum() else "_" for c in gpu_name)
    return f"{safe_gpu}-{digest}"


@dataclass
class Calibration:
    """Measured peak reserved bytes = fixed + per_sequence * batch, from a probe on one GPU."""

    gpu_name: str
    fixed_bytes: float
    per_sequence_bytes: float
    points: list[tuple[int, int]] = field(
        default_factory=list
    )  # (batch, measured peak reserved bytes)

    def predict(self, batch: int) -> int:
        return int(self.fixed_bytes + self.per_sequence_bytes * batch)


def fit_calibration(gpu_name: str, points: list[tuple[int, int]]) -> Calibration:
    """A line through two or more (batch, peak bytes) measurements."""
    if len(points) < 2 or len({b for b, _ in points}) < 2:
        raise ValueError("a calibration needs measurements at two different batch sizes")
    n = len(points)
    mean_b = sum(b for b, _ in points) / n
    mean_m = sum(m for _, m in points) / n
    var = sum((b - mean_b) ** 2 for b, _ in points)
    slope = sum((b - mean_b) * (m - mean_m) for b, m in points) / var
    slope = max(slope, 0.0)
    return Calibration(gpu_name, mean_m - slope * mean_b, slope, sorted(points))


def save_calibration(preset: Preset, calibration: Calibration) -> Path:
    """Remember a probe's result for this GPU and preset shape (atomic write)."""
    from cockpit.common.fsutil import atomic_write_text

    path = calibration_dir() / f"{calibration_key(preset, calibration.gpu_name)}.json"
    atomic_write_text(path, json.dumps(asdict(calibration), indent=2) + "\n")
    return path


def load_calibration(preset: Preset, gpu_name: str) -> Calibration | None:
    """The stored probe result for this GPU and preset shape, if any."""
    path = calibration_dir() / f"{calibration_key(preset, gpu_name)}.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Calibration(
            raw["gpu_name"],
            float(raw["fixed_bytes"]),
            float(raw["per_sequence_bytes"]),
            [tuple(p) for p in raw.get("points", [])],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------- traced figures (cockpit.train.trace)


def trace_key(preset: Preset, dtype: str) -> str:
    """A trace depends on the model, the step's settings and the dtype; not on any GPU."""
    return calibration_key(preset, f"trace_{dtype}_accum{preset.train.grad_accum}")


def load_traces(preset: Preset, dtype: str) -> dict[int, dict[str, Any]]:
    """Stored trace points of this preset shape, by micro-batch (empty when none or unreadable)."""
    path = calibration_dir() / f"{trace_key(preset, dtype)}.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        # points traced before the allocator model have no reserved figures: traced again
        return {
            int(p["batch"]): p
            for p in raw["points"]
            if int(p["peak_bytes"]) > 0 and RESERVED_KEYS[0] in p and RESERVED_KEYS[1] in p
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def save_traces(preset: Preset, dtype: str, points: list[dict[str, Any]]) -> Path:
    """Add trace points (one dict per micro-batch, with `batch` and `peak_bytes`) to the cache."""
    from cockpit.common.fsutil import atomic_write_text

    merged = load_traces(preset, dtype)
    for p in points:
        merged[int(p["batch"])] = dict(p)
    path = calibration_dir() / f"{trace_key(preset, dtype)}.json"
    body = {"dtype": dtype, "points": [merged[b] for b in sorted(merged)]}
    atomic_write_text(path, json.dumps(body, indent=2) + "\n")
    return path


RESERVED_KEYS = ("reserved_plain_bytes", "reserved_expandable_bytes")  # a trace point's, by mode


def reserved_key() -> str:
    """The trace point's reserved figure for the allocator mode the training child runs with."""
    return RESERVED_KEYS[1] if child_allocator_mode().expandable else RESERVED_KEYS[0]


def traced_line(
    points: dict[int, dict[str, Any]], key: str = "peak_bytes"
) -> tuple[float, float] | None:
    """(fixed, per-sequence) bytes through the smallest and largest traced micro-batch: of the live
    peak, or of another figure of the points (`key`, e.g. reserved_key())."""
    if len(points) < 2:
        return None
    lo, hi = min(points), max(points)
    slope = (points[hi][key] - points[lo][key]) / (hi - lo)
    return points[lo][key] - slope * lo, slope


# --------------------------------------------------------------------------- the estimate


@dataclass
class Estimate:
    """Everything `gpt-cockpit estimate` reports for one preset, batch and GPU."""

    preset_name: str
    batch_size: int
    params: int
    params_non_embedding: int
    flops_per_token: float
    tokens_per_step: int
    run_tokens: int
    chinchilla_tokens: int
    memory: MemoryBreakdown
    gpu: GpuSpec | None
    dtype: str
    measured: bool  # the peak comes from a probe's calibration, not the analytic model
    peak_bytes: int  # predicted peak GPU memory (total, including the CUDA context)
    eta_s: float | None  # at DEFAULT_MFU (or the given mfu) on this GPU
    traced: bool = False  # the live bytes come from a cached trace's line (`estimate --exact`)
    # your own model (model.arch = PATH.py:ClassName): "measured" when its parameters and FLOPs
    # were counted from the module (meta device, FlopCounterMode), "not measured yet" before
    figures: str = ""
    world_size: int = (
        1  # GPUs training together: memory and peak are per GPU, tokens per step global
    )

    @property
    def fits(self) -> bool | None:
        """True/False against the GPU's memory; None without a GPU to compare with."""
        if self.gpu is None:
            return None
        return self.peak_bytes <= self.gpu.usable_bytes

    @property
    def margin_bytes(self) -> int | None:
        """GPU memory left over at the peak (negative: short by that much)."""
        return None if self.gpu is None else self.gpu.usable_bytes - self.peak_bytes

    @property
    def verdict(self) -> str:
        """One line: fits or not, by how much."""
        if self.gpu is None:
            return f"needs about {human_bytes(self.peak_bytes)} on a bf16 GPU (no GPU here to compare with; pick one with --gpu)"
        margin = self.margin_bytes or 0
        pct = 100 * self.peak_bytes / self.gpu.usable_bytes
        source = "measured" if self.measured else ("traced" if self.traced else "estimated")
        if margin >= 0:
            return f"fits on {self.gpu.name}: {human_bytes(self.peak_bytes)} of {human_bytes(self.gpu.usable_bytes)} ({pct:.0f}%, {source}), {human_bytes(margin)} free"
        return f"does not fit on {self.gpu.name}: needs {human_bytes(self.peak_bytes)}, has {human_bytes(self.gpu.usable_bytes)} ({human_bytes(-margin)} short, {source})"


def estimate(
    preset: Preset,
    gpu: GpuSpec | None = None,
    *,
    batch_size: int | None = None,
    mfu_assumed: float = DEFAULT_MFU,
    world_size: int = 1,
) -> Estimate:
    """Parameters, FLOPs, tokens, peak memory and ETA of `preset` at `batch_size` on `gpu`
    (on each of `world_size` GPUs: memory per GPU, tokens per step global, ETA at ideal scaling)."""
    if world_size > 1:
        return _estimate_ranks(preset, gpu, batch_size, mfu_assumed, world_size)
    m, t = preset.model, preset.train
    batch = batch_size or t.batch_size
    params = count_params(m)
    fpt = flops_per_token(m)
    memory = memory_breakdown(preset, gpu, batch_size=batch)
    calibration = load_calibration(preset, gpu.name) if gpu is not None else None
    line = (
        None
        if calibration is not None
        else traced_line(load_traces(preset, planning_dtype(preset, gpu)), reserved_key())
    )
    peak: float  # bytes
    if calibration is not None:
        peak = calibration.predict(batch) + memory.cuda_context
    elif line is not None:  # the traced step's reserved bytes (allocator model), plus the context
        peak = int(line[0] + line[1] * batch) + memory.cuda_context
    else:
        peak = memory.total_bytes
    run_tokens = preset.tokens_per_step * t.max_steps
    return Estimate(
        preset_name=preset.name,
        batch_size=batch,
        params=params,
        params_non_embedding=spec_of(m).non_embedding_params(m),
        flops_per_token=fpt,
        tokens_per_step=preset.tokens_per_step,  # a different micro-batch changes accumulation, not tokens per step
        run_tokens=run_tokens,
        chinchilla_tokens=CHINCHILLA_TOKENS_PER_PARAM * params,
        memory=memory,
        gpu=gpu,
        dtype=planning_dtype(preset, gpu),
        measured=calibration is not None,
        peak_bytes=int(peak),
        eta_s=eta_seconds(preset, gpu, mfu=mfu_assumed),
        traced=line is not None,
        figures=_figures_source(m),
    )


def _figures_source(m: ModelConfig) -> str:
    """ "" for a built-in architecture's formulas; your own model's: measured or not yet."""
    spec = spec_of(m)
    if not spec.measured:
        return ""
    return "not measured yet" if getattr(spec, "pending", False) else "measured"


def _estimate_ranks(
    preset: Preset, gpu: GpuSpec | None, batch_size: int | None, mfu: float, world_size: int
) -> Estimate:
    """estimate() for several GPUs: the 1-GPU estimate with one GPU's memory of the run (DDP adds
    its buckets to a measured or traced peak; FSDP is analytic) and the global tokens per step."""
    one = estimate(preset, gpu, batch_size=batch_size, mfu_assumed=mfu)
    memory = memory_per_gpu(preset, gpu, world_size=world_size, batch_size=one.batch_size)
    if preset.train.parallel == "fsdp" or not (one.measured or one.traced):
        peak, measured, traced = memory.total_bytes, False, False
    else:
        extra = memory.comm_buffers * (1 + COMM_SLACK)
        peak, measured, traced = int(one.peak_bytes + extra), one.measured, one.traced
    eta = one.eta_s / world_size if one.eta_s is not None else None
    return replace(
        one,
        memory=memory,
        peak_bytes=int(peak),
        measured=measured,
        traced=traced,
        tokens_per_step=one.tokens_per_step * world_size,
        run_tokens=one.run_tokens * world_size,
        eta_s=eta,
        world_size=world_size,
    )


def eta_seconds(preset: Preset, gpu: GpuSpec | None, mfu: float = DEFAULT_MFU) -> float | None:
    """Seconds for the whole run at `mfu` (a fraction) of the GPU's peak (None without a known peak)."""
    if gpu is None:
        return None
    peak = gpu.peak_flops(training_dtype(preset, gpu))
    if peak <= 0 or mfu <= 0:
        return None
    total_flops = flops_per_token(preset.model) * preset.tokens_per_step * preset.train.max_steps
    return total_flops / (peak * mfu)


@dataclass
class BatchSuggestion:
    """The largest micro-batch that fits, and the accumulation that keeps tokens per step."""

    micro_batch: int
    grad_accum: int
    tokens_per_step: int
    peak_bytes: int
    headroom: float
    reason: str
    largest_fit: int = 0  # the largest micro-batch that fits, as a power of two (seed 000's table)
    fits_up_to: int = 0  # the largest micro-batch that fits, exactly (0: not even 1 fits)

    def apply(self, preset: Preset) -> Preset:
        """The preset with this micro-batch and accumulation."""
        from cockpit.plan.presets import apply_overrides

        return apply_overrides(
            preset, {"train.batch_size": self.micro_batch, "train.grad_accum": self.grad_accum}
        )


def suggest_batch(
    preset: Preset, gpu: GpuSpec | None, headroom: float = DEFAULT_HEADROOM, world_size: int = 1
) -> BatchSuggestion | None:
    """The largest micro-batch whose peak fits in (1 - headroom) of the GPU, keeping tokens per step.

    Sequences per optimizer step stay as the preset's (batch_size * grad_accum)
    where they divide evenly; otherwise accumulation rounds up so a step never
    sees fewer tokens. None without a GPU to plan for.
    """
    if gpu is None:
        return None
    budget = gpu.usable_bytes * (1.0 - headroom)
    target_seqs = preset.train.batch_size * preset.train.grad_accum

    def peak(b: int) -> int:  # on each GPU of the run: the micro-batch is per GPU
        return estimate(preset, gpu, batch_size=b, world_size=world_size).peak_bytes

    if peak(1) > budget:
        return BatchSuggestion(
            1,
            target_seqs,
            target_seqs * preset.model.block_size,
            peak(1),
            headroom,
            f"even a micro-batch of 1 needs {human_bytes(peak(1))}, over {human_bytes(int(budget))} ({100 * (1 - headroom):.0f}% of {gpu.name}); shrink the model or block_size, or use activation checkpointing",
        )
    lo, hi = 1, 2
    while (
        hi <= 65536 and peak(hi) <= budget
    ):  # memory grows linearly in the batch: double, then bisect
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if peak(mid) <= budget:
            lo = mid
        else:
            hi = mid
    fit = lo
    largest_pow2 = 1 << (fit.bit_length() - 1)
    micro = min(fit, target_seqs)
    # prefer a micro-batch that divides the step's sequences exactly (tokens per step kept to the token)
    for candidate in range(micro, max(1, micro // 2) - 1, -1):
        if target_seqs % candidate == 0:
            micro = candidate
            break
    accum = math.ceil(target_seqs / micro)
    kept = "kept" if micro * accum == target_seqs else f"rounded up from {target_seqs}"
    reason = (
        f"micro-batch {micro} x {accum} accumulation = {micro * accum} sequences per step ({kept}); "
        f"largest that fits is {fit} (power of two: {largest_pow2}) with {headroom:.0%} headroom "
        f"on {gpu.name}'s {human_bytes(gpu.usable_bytes)} usable"
    )
    if world_size > 1:
        reason += (
            f"; per GPU of {world_size}, {micro * accum * world_size} sequences per step in all"
        )
    return BatchSuggestion(
        micro,
        accum,
        micro * accum * preset.model.block_size * world_size,
        peak(micro),
        headroom,
        reason,
        largest_pow2,
        fit,
    )


def batch_tip(preset: Preset, suggestion: BatchSuggestion, gpu_name: str) -> str | None:
    """What to say when the preset's split already is the suggestion (None when it is not).

    A preset whose whole step is one micro-batch far below what fits is capped by its
    tokens per step, not by memory: say how much more fits rather than "already".
    """
    t = preset.train
    if (suggestion.micro_batch, suggestion.grad_accum) != (t.batch_size, t.grad_accum):
        return None
    seqs = t.batch_size * t.grad_accum
    fit = suggestion.fits_up_to
    if t.grad_accum == 1 and fit >= 2 * seqs:
        return (
            f"{t.batch_size} x 1 is the whole step, yet {fit:,} fit on {gpu_name} "
            f"({fit // seqs}x more): tokens per step cap it, not memory; for bigger steps "
            f"raise train.batch_size (e.g. {1 << (fit.bit_length() - 1)}) and retune train.lr"
        )
    return f"{t.batch_size} x {t.grad_accum} is already the suggestion (up to {fit:,} fit)"


# --------------------------------------------------------------------------- formatting


def as_dict(est: Estimate) -> dict[str, Any]:
    """A JSON-safe view of an estimate (for --json)."""
    out = asdict(replace(est, gpu=None))
    out["gpu"] = est.gpu.name if est.gpu else None
    out["fits"] = est.fits
    out["margin_bytes"] = est.margin_bytes
    out["verdict"] = est.verdict
    out["memory"]["total_bytes"] = est.memory.total_bytes
    out["memory"]["reserved_bytes"] = est.memory.reserved_bytes
    return out
