"""The memory tracer: the trainer's own step on fake CUDA tensors, counting live bytes, no GPU needed.

`python -m cockpit.train.trace --preset-json JSON --batches 4,8` prints one JSON line:
{"dtype": ..., "points": [{"batch", "peak_bytes", "reserved_bytes", "allocated_bytes",
"reserved_plain_bytes", "reserved_expandable_bytes", "expandable_segments", "peak_op",
"by_category"}], "fixed_bytes": ..., "per_sequence_bytes": ..., "seconds": ...}.

How: the model is built on the meta device and each distinct parameter (tied weights
stay tied) is materialised once as a fake CUDA tensor under torch's FakeTensorMode,
which runs every kernel's shape logic and allocates nothing. The optimizer, GradScaler
and autocast are built as the trainer builds them for CUDA (optim.py), and
`StepRunner.run` (step.py, the trainer's step) is driven for a few optimizer steps
(AdamW's state is created lazily in the first). A TorchDispatchMode adds every new
storage, rounded to 512 bytes as the CUDA caching allocator rounds, and subtracts it
when its last reference dies: the peak of that sum is the peak of live tensor bytes.
scaled_dot_product_attention is routed to the kernel a GPU picks after autocast's cast
(flash for bf16/fp16, memory-efficient for fp32), never the math path with its T x T matrix.
Every device storage's allocation and free is also recorded in order, and replayed through
the caching allocator model (cockpit/plan/allocator.py): `reserved_bytes` is what
torch.cuda.max_memory_reserved() would read in the allocator mode the training child uses
(`expandable_segments:True` unless PYTORCH_CUDA_ALLOC_CONF says otherwise), with both modes'
figures beside it.

A CPU-only build of torch lacks the CUDA device guard and CUDA hooks autograd needs
for CUDA tensors: a small C++ extension (built once into the cache
folder) registers a fake guard and hooks that report CUDA as built. It must load
before anything asks torch for its CUDA hooks, so the tracer runs in its own process.

Not visible to a trace, and not in its figures: the CUDA context, cuBLAS workspaces
(allocated by cuBLAS outside the caching allocator), kernels' internal scratch memory,
torch.compile's buffers and DDP buckets.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from cockpit.common.fsutil import atomic_write_text
from cockpit.plan import allocator
from cockpit.plan.presets import Preset, preset_from_dict

CATEGORIES = ("weights", "gradients", "optimizer", "activations", "logits/loss", "temporaries")
ROUND = 512
MiB = 1 << 20

# Only the two c10/ATen headers it needs and a C entry point called through ctypes: with
# <torch/extension.h> and pybind11 bindings the one-off build took 20 s of CPU instead of 1 s.
_EXTENSION = r"""
#include <c10/core/impl/FakeGuardImpl.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <new>
namespace {
struct TraceCUDAHooks final : at::CUDAHooksInterface {
  explicit TraceCUDAHooks(at::CUDAHooksArgs) {}
  bool isBuilt() const override { return true; }
  bool isAvailable() const override { return true; }
  bool hasCUDA() const override { return true; }
  bool hasPrimaryContext(c10::DeviceIndex) const override { return true; }
  c10::DeviceIndex deviceCount() const override { return 1; }
  c10::DeviceIndex getCurrentDevice() const override { return 0; }
};
}
C10_REGISTER_GUARD_IMPL(CUDA, c10::impl::FakeGuardImpl<c10::DeviceType::CUDA>);
// torch created its CUDA hooks at import (the stub without CUDA); give that object our behaviour
extern "C" int cockpit_fake_cuda_ready() {
  auto* hooks = const_cast<at::CUDAHooksInterface*>(&at::detail::getCUDAHooks());
  if (!hooks->hasCUDA()) new (hooks) TraceCUDAHooks(at::CUDAHooksArgs{});
  return at::detail::getCUDAHooks().hasCUDA() ? 1 : 0;
}
"""


class TraceUnavailable(RuntimeError):
    """The tracer cannot run here (no compiler, a torch it cannot drive); the message says why."""


def extension_dir(cache: Path | None = None) -> Path:
    """Where the fake-CUDA extension is built, one folder per torch version ($GPT_COCKPIT_EXT_DIR overrides)."""
    override = os.environ.get("GPT_COCKPIT_EXT_DIR")
    if override and cache is None:
        return Path(override)
    if cache is None:
        env = os.environ.get("GPT_COCKPIT_CACHE")
        if env:
            cache = Path(env)
        else:
            from platformdirs import user_cache_dir

            cache = Path(user_cache_dir("gpt-cockpit"))
    safe = "".join(c if c.isalnum() else "_" for c in torch.__version__)
    return cache / "fake_cuda" / safe


def enable_fake_cuda(cache: Path | None = None) -> None:
    """Make fake CUDA tensors trainable on this torch; TraceUnavailable when it cannot be done."""
    if torch.backends.cuda.is_built():  # a CUDA build has the guard and hooks already
        _allow_amp()
        return
    import shutil

    if shutil.which(os.environ.get("CXX", "c++")) is None and shutil.which("g++") is None:
        raise TraceUnavailable(
            "no C++ compiler to build the fake-CUDA extension a CPU-only torch needs"
        )
    build = extension_dir(cache)
    build.mkdir(parents=True, exist_ok=True)
    import ctypes

    from torch.utils.cpp_extension import load

    source = build / "fake_cuda.cpp"
    if not source.is_file() or source.read_text() != _EXTENSION:
        atomic_write_text(source, _EXTENSION)  # a tracer beside this one reads old or new, whole
    try:
        library = load(
            "cockpit_fake_cuda",
            sources=[str(source)],
            build_directory=str(build),
            extra_cflags=["-O0"],
            is_python_module=False,  # a plain library, loaded into the process
        )
        ready = ctypes.CDLL(library).cockpit_fake_cuda_ready
    except (RuntimeError, OSError, ImportError, AttributeError) as exc:
        last = (str(exc).strip().splitlines() or ["no message"])[-1]
        raise TraceUnavailable(f"building the fake-CUDA extension failed: {last[:200]}") from None
    if ready() != 1:
        raise TraceUnavailable(
            "this torch build ignores the fake-CUDA hooks; the tracer cannot run"
        )
    _allow_amp()


def _allow_amp() -> None:
    """Autocast and GradScaler on 'cuda' switch themselves off when CUDA is unavailable: not here."""
    torch.cuda.amp.common.amp_definitely_not_available = lambda: False
    torch.cuda.is_bf16_supported = lambda *_a, **_k: True  # planning for a GPU that has bf16


# --------------------------------------------------------------------------- counting live bytes


def _storages(out: Any) -> Iterator[tuple[torch.UntypedStorage, bool]]:
    """Each tensor's storage, and whether the tensor is on CUDA (a fake storage itself is meta)."""
    stack = [out]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            yield item.untyped_storage(), item.device.type == "cuda"
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def _rounded(n: int) -> int:
    return -(-n // ROUND) * ROUND


class LiveBytes(TorchDispatchMode):
    """Live storage bytes (each rounded to 512), their peak and the op at the peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.peak_op = ""
        self.category = "activations"
        self.tags: dict[int, tuple[int, str]] = {}  # storage key -> (bytes, category at creation)
        self._refs: dict[int, weakref.ref] = {}
        self.snapshot: dict[str, int] | None = None  # bytes by category at the peak
        # (storage key, bytes asked for) in the order the device would see them; 0 bytes: freed.
        # The caching allocator model (cockpit.plan.allocator) replays them into a reserved peak.
        self.events: list[tuple[int, int]] = []
        self._on_device: set[int] = set()
        self.classify: Callable[[dict[int, tuple[int, str]]], dict[str, int]] = lambda _t: {}

    def track(self, st: torch.UntypedStorage, category: str, on_device: bool = True) -> None:
        key = id(st)
        if key in self._refs and self._refs[key]() is st:
            return
        n = _rounded(st.nbytes())
        self.live += n
        self.tags[key] = (n, category)
        self._refs[key] = weakref.ref(st, functools.partial(self._drop, key))
        if on_device and st.nbytes() > 0:  # the meta tensors of the build take no block
            self.events.append((key, st.nbytes()))
            self._on_device.add(key)

    def _drop(self, key: int, _ref: weakref.ref) -> None:
        if key in self._on_device:
            self._on_device.discard(key)
            self.events.append((key, 0))
        n, _ = self.tags.pop(key, (0, ""))
        self._refs.pop(key, None)
        self.live -= n

    def reset_peak(self) -> None:
        self.peak, self.peak_op = 0, ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        category = self.category
        if torch._C._current_graph_task_id() != -1:
            category = "temporaries"  # made during backward: gradients are found by identity later
        for st, on_device in _storages(out):
            self.track(st, category, on_device)
        if self.live > self.peak:
            self.peak, self.peak_op = self.live, str(func)
            self.snapshot = self.classify(self.tags)
        return out


@contextlib.contextmanager
def _category(counter: LiveBytes, name: str) -> Iterator[None]:
    before, counter.category = counter.category, name
    try:
        yield
    finally:
        counter.category = before


# --------------------------------------------------------------------------- the model on fake CUDA


def _route_sdpa(dtype: str) -> Any:
    """scaled_dot_product_attention as a GPU runs it: autocast's cast first, then flash
    (bf16/fp16) or memory-efficient (fp32) attention.

    On CUDA, autocast lists scaled_dot_product_attention among the ops it runs in the
    autocast dtype, so q, k and v are all cast before the kernel is chosen: golf's q and k are
    fp32 after rms_norm while v is bf16, and a GPU runs the three in bf16 with flash. The aten
    kernels called here are not on autocast's list, so the cast is done here, as autocast does it
    (a tensor already in that dtype is used as it is)."""
    plain = F.scaled_dot_product_attention

    def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):  # noqa: ANN001, ANN202
        if attn_mask is not None or kw.get("enable_gqa"):
            return plain(q, k, v, attn_mask, dropout_p, is_causal, scale=scale, **kw)
        if q.is_cuda and torch.is_autocast_enabled("cuda"):
            cast = torch.get_autocast_dtype("cuda")
            q, k, v = (t.to(cast) if t.is_floating_point() else t for t in (q, k, v))
        if q.dtype in (torch.bfloat16, torch.float16):
            return torch.ops.aten._scaled_dot_product_flash_attention(
                q, k, v, dropout_p, is_causal, False, scale=scale
            )[0]
        return torch.ops.aten._scaled_dot_product_efficient_attention(
            q, k, v, None, True, dropout_p, is_causal, scale=scale
        )[0]

    return sdpa


def _materialise(model: torch.nn.Module) -> None:
    """Each distinct meta parameter and buffer once as a fake CUDA tensor (tied weights stay tied)."""
    made: dict[int, torch.Tensor] = {}
    device = torch.device("cuda", 0)
    for module in model.modules():
        tables: tuple[dict[str, Any], ...] = (module._parameters, module._buffers)
        for table in tables:  # parameters, then buffers: both are name -> tensor (or None)
            for name, t in table.items():
                if t is None:
                    continue
                if id(t) not in made:
                    fake = torch.empty(t.shape, dtype=t.dtype, device=device)
                    if isinstance(t, torch.nn.Parameter):
                        fake = torch.nn.Parameter(fake, requires_grad=t.requires_grad)
                    made[id(t)] = fake
                table[name] = made[id(t)]


def _build(preset: Preset, dtype: str, counter: LiveBytes) -> Any:
    """The trainer's model, optimizer, GradScaler and autocast, on fake CUDA."""
    from cockpit.train import optim
    from cockpit.train.models import build_model

    device = torch.device("cuda", 0)
    with torch.device("meta"):
        raw_model = build_model(preset.model)
    with _category(counter, "weights"):
        _materialise(raw_model)
    if preset.train.activation_checkpointing and hasattr(raw_model, "set_activation_checkpointing"):
        raw_model.set_activation_checkpointing(True)
    raw_model.train()
    return optim.build_runner(raw_model, raw_model, preset.train, device, dtype)


def _logits_region(model: torch.nn.Module, counter: LiveBytes) -> None:
    """Tensors made from the output head on (logits, softcap, loss) are counted as logits/loss.

    GolfGPT's tied head and BDH's head are no modules: their logits count as activations."""

    def enter(*_: Any) -> None:
        counter.category = "logits/loss"

    def forward_done(*_: Any) -> None:
        counter.category = "temporaries"  # loss scaling, grad clipping, the optimizer step

    def forward_starts(*_: Any) -> None:
        counter.category = "activations"

    export_module = getattr(model, "export_module", None)
    owner = export_module() if callable(export_module) else model
    head = getattr(owner, "lm_head", None)  # your own model's: its module's
    if isinstance(head, torch.nn.Module):
        head.register_forward_pre_hook(enter)
    model.register_forward_pre_hook(forward_starts)
    model.register_forward_hook(forward_done)


def _step(
    runner: Any, counter: LiveBytes, xy: tuple[torch.Tensor, torch.Tensor], micro_batch: int
) -> None:
    counter.category = "activations"
    runner.run(*xy, micro_batch)
    counter.category = "activations"


def _categorise(runner: Any, tags: dict[int, tuple[int, str]]) -> dict[str, int]:
    """Bytes by category of the storages live at the peak; grads and optimizer state found by identity."""
    grads = {
        id(p.grad.untyped_storage()) for p in runner.raw_model.parameters() if p.grad is not None
    }
    state: set[int] = set()
    for s in runner.optimizer.state.values():
        state.update(id(v.untyped_storage()) for v in s.values() if isinstance(v, torch.Tensor))
    out = dict.fromkeys(CATEGORIES, 0)
    for key, (n, category) in tags.items():
        if key in grads:
            category = "gradients"
        elif key in state:
            category = "optimizer"
        out[category] += n
    return out


def trace_batch(
    runner: Any, counter: LiveBytes, preset: Preset, batch: int, steps: int
) -> dict[str, Any]:
    """Peak live bytes over `steps` optimizer steps at `batch`, and those bytes by category."""
    m, t = preset.model, preset.train
    n_seq = batch * t.grad_accum
    with _category(
        counter, "activations"
    ):  # the batch: inputs and targets, as the trainer holds them
        shape = (n_seq, m.block_size)
        xy = (
            torch.zeros(shape, dtype=torch.long, device="cuda"),
            torch.zeros(shape, dtype=torch.long, device="cuda"),
        )
    counter.reset_peak()
    # the live storages sorted into categories each time the peak rises (grads and optimizer
    # state are known by identity only while they live): the last sort is the peak's
    counter.snapshot, counter.classify = None, lambda tags: _categorise(runner, tags)
    for _ in range(steps):
        _step(runner, counter, xy, batch)
    peak, peak_op = counter.peak, counter.peak_op
    by_category = counter.snapshot or _categorise(runner, {})
    return {
        "batch": batch,
        "peak_bytes": peak,
        "peak_op": peak_op.removeprefix("aten."),
        "by_category": by_category,
    }


def reserved_figures(events: list[tuple[int, int]]) -> dict[str, int]:
    """The allocation sequence replayed through the caching allocator model, in both modes, and
    the one the training child uses (cockpit.plan.allocator.child_allocator_mode)."""
    plain = allocator.replay(events)
    grown = allocator.replay(events, expandable_segments=True)
    mode = allocator.child_allocator_mode()
    chosen = (
        allocator.replay(
            events, expandable_segments=mode.expandable, max_split_size=mode.max_split_size
        )
        if mode.max_split_size
        else (grown if mode.expandable else plain)
    )
    return {
        "reserved_bytes": chosen.reserved_peak,
        "allocated_bytes": chosen.allocated_peak,
        "reserved_plain_bytes": plain.reserved_peak,
        "reserved_expandable_bytes": grown.reserved_peak,
        "reserved_small_bytes": chosen.reserved_small,  # of reserved_bytes, the small pool's
        "expandable_segments": mode.expandable,
    }


def trace(preset: Preset, batches: list[int], dtype: str, steps: int = 2) -> dict[str, Any]:
    """Trace the preset's step at each micro-batch; a line fixed + per_sequence * batch from them.

    Each micro-batch is traced from a fresh build, as a training process starts: the allocator
    model replays that process's allocations from its first (the weights) to the last step's."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    start = time.perf_counter()
    sdpa = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _route_sdpa(dtype)
    points = []
    try:
        for batch in batches:
            counter = LiveBytes()
            with FakeTensorMode(allow_non_fake_inputs=True), counter:
                runner = _build(preset, dtype, counter)
                _logits_region(runner.raw_model, counter)
                point = trace_batch(runner, counter, preset, batch, steps)
            del runner
            point.update(reserved_figures(counter.events))
            points.append(point)
    finally:
        F.scaled_dot_product_attention = sdpa
    result: dict[str, Any] = {"dtype": dtype, "points": points}
    if len(points) >= 2:
        (b0, p0), (b1, p1) = [(p["batch"], p["peak_bytes"]) for p in (points[0], points[-1])]
        slope = (p1 - p0) / (b1 - b0)
        result.update(fixed_bytes=int(p0 - slope * b0), per_sequence_bytes=int(slope))
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


def main(argv: list[str] | None = None) -> int:
    """Trace; exit 3 when the tracer cannot run here (one line on stderr says why)."""
    parser = argparse.ArgumentParser(prog="python -m cockpit.train.trace")
    parser.add_argument("--preset-json", required=True)
    parser.add_argument("--batches", required=True, help="comma-separated micro-batch sizes")
    parser.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp32"))
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args(argv)
    preset = preset_from_dict(json.loads(args.preset_json))
    batches = [int(b) for b in args.batches.split(",")]
    try:
        enable_fake_cuda()  # before any backward: autograd sizes its device queues once
    except TraceUnavailable as exc:
        print(f"trace: {exc}", file=sys.stderr)
        return 3
    figures = None
    from cockpit.arch import is_own_model

    if is_own_model(preset.model.arch):  # your own model: its figures too, and its checks first
        from cockpit.train.measure import measure
        from cockpit.train.models.own import OwnModelError

        try:
            figures = measure(preset)
        except OwnModelError as exc:
            print(f"trace: {exc}", file=sys.stderr)
            return 2
    result = trace(preset, batches, args.dtype, args.steps)
    if figures is not None:
        result["figures"] = figures
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
