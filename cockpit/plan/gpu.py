"""GPU facts: what NVML sees on this machine, and a catalog of common GPUs for planning.

Nothing here raises for a missing GPU: no nvidia-ml-py, no driver, or NVML failing
are all normal states that read as "no GPU". NVML calls are cheap (memory ~12 us,
utilization ~3 us) except process lists (~4.5 ms), which we never call; pollers
call `query_gpus()` at about 1 Hz from a worker thread.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

GIB = 1024**3

# bf16 tensor cores arrived with Ampere (sm_80). torch.cuda.is_bf16_supported() also says
# True on 7.x (T4, V100), where it is emulated without tensor cores or flash attention:
# the engine and the planner both decide by this capability, so they agree on fp16 there.
BF16_MIN_CAPABILITY = (8, 0)


def has_bf16(capability: tuple[int, int] | None) -> bool:
    """True if a GPU of this compute capability multiplies bf16 on tensor cores."""
    return capability is not None and tuple(capability) >= BF16_MIN_CAPABILITY


@dataclass(frozen=True)
class GpuSpec:
    """Planning facts about a GPU model (dense tensor-core peaks, no sparsity)."""

    name: str  # display name, e.g. "A100-80GB"
    match: tuple[str, ...]  # every one of these must appear in the normalised device name
    memory_bytes: int
    bf16_tflops: float | None  # None: no bf16 tensor cores (T4, V100) -> fp16 with a GradScaler
    fp16_tflops: float
    fp32_tflops: float
    compute_capability: tuple[int, int]
    aliases: tuple[str, ...] = ()
    usable_gib: float | None = (
        None  # what the device reports (torch total_memory), below the nominal size
    )

    @property
    def usable_bytes(self) -> int:
        """Memory the device reports (ECC and the driver's reserve taken): what a plan must fit in."""
        if self.usable_gib is not None:
            return int(self.usable_gib * GIB)
        return int(self.memory_bytes * 0.97)  # typical shortfall where no report is recorded

    @property
    def bf16(self) -> bool:
        """True if the GPU has bf16 tensor cores (compute capability 8.0 or newer)."""
        return self.bf16_tflops is not None

    @property
    def tf32_tflops(self) -> float | None:
        """Dense TF32 tensor-core peak; None before Ampere (T4, V100), which have no TF32.

        Half the 16-bit tensor rate on every Ampere, Ada, Hopper and Blackwell part the
        datasheets list (H100 SXM 989 -> 494.7, A100 312 -> 156, L4 121 -> 60).
        """
        return self.fp16_tflops / 2 if has_bf16(self.compute_capability) else None

    def peak_flops(self, dtype: str = "bf16", *, tf32: bool = True) -> float:
        """Peak FLOP/s for the training dtype (bf16 falls back to fp16 where bf16 is missing).

        fp32 is the TF32 peak where the GPU has one: the engine turns TF32 on for every
        CUDA run (train/runtime.py enable_tf32), so its fp32 matmuls run on tensor cores
        (an H100's 495 TFLOP/s, not the 67 of plain fp32). `tf32=False`: plain fp32.
        """
        if dtype == "fp32":
            tf32_peak = self.tf32_tflops if tf32 else None
            return (tf32_peak or self.fp32_tflops) * 1e12
        if dtype == "bf16" and self.bf16_tflops is not None:
            return self.bf16_tflops * 1e12
        return self.fp16_tflops * 1e12


# Most specific first: the first entry whose every `match` part occurs in the
# normalised name wins ("A100 80GB" before "A100", "L40S" before "L40" before "L4").
# Dense peaks from the vendors' datasheets; GeForce fp16/bf16 with fp32 accumulate.
CATALOG: tuple[GpuSpec, ...] = (
    GpuSpec("B200", ("B200",), 180 * GIB, 2250, 2250, 80, (10, 0), usable_gib=178.4),
    GpuSpec(
        "GH200", ("GH200",), 96 * GIB, 989, 989, 67, (9, 0), usable_gib=94.5
    ),  # before H200, whose name it contains
    # H200 NVL (PCIe, 600 W) before H200 SXM: the same 141 GB, a lower clock (datasheet: 1,671 sparse)
    GpuSpec("H200-NVL", ("H200", "NVL"), 141 * GIB, 835, 835, 60, (9, 0), usable_gib=139.8),
    GpuSpec("H200", ("H200",), 141 * GIB, 989, 989, 67, (9, 0), ("H200-141GB",), usable_gib=139.8),
    GpuSpec("H100-NVL", ("H100", "NVL"), 94 * GIB, 835, 835, 60, (9, 0), usable_gib=93.0),
    GpuSpec("H100-PCIe", ("H100", "PCIE"), 80 * GIB, 756, 756, 51, (9, 0), usable_gib=79.1),
    GpuSpec(
        "H100",
        ("H100",),
        80 * GIB,
        989,
        989,
        67,
        (9, 0),
        ("H100-SXM", "H100-80GB"),
        usable_gib=79.11,
    ),
    GpuSpec("A100-80GB", ("A100", "80G"), 80 * GIB, 312, 312, 19.5, (8, 0), usable_gib=79.15),
    GpuSpec("A100-40GB", ("A100",), 40 * GIB, 312, 312, 19.5, (8, 0), ("A100",), usable_gib=39.39),
    GpuSpec("L40S", ("L40S",), 48 * GIB, 362, 362, 91.6, (8, 9), usable_gib=44.4),
    GpuSpec("L40", ("L40",), 48 * GIB, 181, 181, 90.5, (8, 9), usable_gib=44.4),
    GpuSpec("L4", ("L4",), 24 * GIB, 121, 121, 30.3, (8, 9), usable_gib=22.17),
    GpuSpec("A10G", ("A10G",), 24 * GIB, 70, 70, 31.2, (8, 6), usable_gib=22.2),
    GpuSpec("A10", ("A10",), 24 * GIB, 125, 125, 31.2, (8, 6), usable_gib=22.2),
    GpuSpec(
        "RTX-6000-Ada", ("RTX", "6000", "ADA"), 48 * GIB, 182, 182, 91.1, (8, 9), usable_gib=47.5
    ),
    GpuSpec("RTX-A6000", ("A6000",), 48 * GIB, 155, 155, 38.7, (8, 6), usable_gib=47.54),
    GpuSpec("RTX-4090", ("4090",), 24 * GIB, 165, 165, 82.6, (8, 9), usable_gib=23.65),
    GpuSpec("RTX-4080", ("4080",), 16 * GIB, 97, 97, 48.7, (8, 9), usable_gib=15.7),
    GpuSpec("RTX-3090", ("3090",), 24 * GIB, 71, 71, 35.6, (8, 6), usable_gib=23.69),
    GpuSpec("RTX-3080", ("3080",), 10 * GIB, 59.5, 59.5, 29.8, (8, 6), usable_gib=9.77),
    GpuSpec("V100-32GB", ("V100", "32G"), 32 * GIB, None, 125, 15.7, (7, 0), usable_gib=31.75),
    GpuSpec("V100", ("V100",), 16 * GIB, None, 125, 15.7, (7, 0), ("V100-16GB",), usable_gib=15.78),
    GpuSpec("T4", ("T4",), 16 * GIB, None, 65, 8.1, (7, 5), usable_gib=14.75),
)


def normalize_name(name: str) -> str:
    """Upper case, without vendor words, spaces, dashes or underscores ("NVIDIA A100-SXM4-80GB" -> "A100SXM480GB")."""
    text = name.upper()
    for word in ("NVIDIA", "TESLA", "GEFORCE", "QUADRO"):
        text = text.replace(word, "")
    return re.sub(r"[\s_\-]+", "", text)


def lookup_gpu(name: str) -> GpuSpec | None:
    """The catalog entry for a device or user-typed name, most specific first; None if unknown."""
    norm = normalize_name(name)
    if not norm:
        return None
    for spec in CATALOG:
        if norm in (normalize_name(spec.name), *(normalize_name(a) for a in spec.aliases)):
            return spec
    for spec in CATALOG:
        if all(part in norm for part in spec.match):
            return spec
    return None


def peak_flops(name: str, dtype: str = "bf16", *, tf32: bool = True) -> float | None:
    """Peak dense FLOP/s of a GPU by name for the training dtype (fp32 as TF32 where the GPU
    has it); None when the GPU is unknown."""
    spec = lookup_gpu(name)
    return spec.peak_flops(dtype, tf32=tf32) if spec else None


def catalog_names() -> list[str]:
    """Names a user can pass to --gpu."""
    return [spec.name for spec in CATALOG]


# --------------------------------------------------------------------------- NVML


@dataclass(frozen=True)
class GpuStatus:
    """One GPU as NVML sees it now."""

    index: int
    name: str
    memory_total: int  # bytes
    memory_used: int
    memory_free: int
    utilization: float | None  # percent of time a kernel ran, last sample period
    temperature_c: float | None
    power_w: float | None
    power_limit_w: float | None
    compute_capability: tuple[int, int] | None
    # Who this GPU is, for matching it to CUDA's device (train/setup.py records the run's):
    uuid: str | None = field(default=None, compare=False)  # "GPU-8f2c...", as NVML writes it
    pci_bus_id: str | None = field(default=None, compare=False)  # "00000000:3B:00.0"
    cuda_index: int | None = field(default=None, compare=False)  # cuda:N under this env's mask

    @property
    def bf16(self) -> bool:
        return has_bf16(self.compute_capability)


_nvml_lock = threading.Lock()
_nvml_ready: bool | None = None
_nvml_error = ""


NVML_NOT_INSTALLED = "nvidia-ml-py is not installed"  # nvml_problem() when it cannot tell


def _nvml() -> Any | None:
    """The initialised pynvml module, or None (remembering why) when there is no usable NVML."""
    global _nvml_ready, _nvml_error
    with _nvml_lock:
        try:
            import pynvml
        except ImportError:
            _nvml_ready, _nvml_error = False, NVML_NOT_INSTALLED
            return None
        if _nvml_ready:
            return pynvml
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: no GPU here
            _nvml_ready, _nvml_error = False, f"NVML unavailable: {exc}"
            return None
        _nvml_ready, _nvml_error = True, ""
        return pynvml


def nvml_problem() -> str:
    """Why query_gpus() found nothing ("" when NVML works)."""
    return _nvml_error


def _reset_nvml_for_tests() -> None:
    global _nvml_ready, _nvml_error
    _nvml_ready, _nvml_error = None, ""


def _safe(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except Exception:
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _memory_info(nvml: Any, handle: Any) -> Any:
    """Memory as nvidia-smi shows it: NVML's v2 query, whose `used` leaves out the driver's
    reserve (v1's used = total - free counts it, some 0.5-1 GiB on an idle H100), else v1."""
    v2 = getattr(nvml, "nvmlMemory_v2", None)
    if v2 is not None:
        try:
            return nvml.nvmlDeviceGetMemoryInfo(handle, version=v2)
        except Exception:  # an older driver or binding without nvmlDeviceGetMemoryInfo_v2
            pass
    return nvml.nvmlDeviceGetMemoryInfo(handle)


def query_gpus(env: Mapping[str, str] | None = None, *, every: bool = False) -> list[GpuStatus]:
    """The GPUs CUDA will see, in CUDA's order, with memory, utilization, temperature and
    power; [] when none.

    NVML lists every GPU of the machine in PCI order and ignores CUDA_VISIBLE_DEVICES;
    a run sees only the masked ones, renumbered from cuda:0 (see cuda_view). `env` is
    the environment the run starts in (this process's by default); `every` lists all
    of NVML's GPUs, each with its cuda_index or None where the mask hides it.
    """
    gpus = _nvml_gpus()
    visible = cuda_view(gpus, os.environ if env is None else env)
    if not every:
        return visible
    cuda_of = {g.index: g.cuda_index for g in visible}
    return [replace(g, cuda_index=cuda_of.get(g.index)) for g in gpus]


def _nvml_gpus() -> list[GpuStatus]:
    """Every GPU NVML sees, in NVML's order, `index` being NVML's (nvidia-smi's) number."""
    nvml = _nvml()
    if nvml is None:
        return []
    try:
        count = nvml.nvmlDeviceGetCount()
    except Exception:
        return []
    gpus = []
    for index in range(count):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = _text(nvml.nvmlDeviceGetName(handle))
            mem = _memory_info(nvml, handle)
        except Exception:
            continue
        util = _safe(nvml.nvmlDeviceGetUtilizationRates, handle)
        temp = _safe(
            nvml.nvmlDeviceGetTemperature, handle, getattr(nvml, "NVML_TEMPERATURE_GPU", 0)
        )
        power_mw = _safe(nvml.nvmlDeviceGetPowerUsage, handle)
        limit_mw = _safe(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        cc = _safe(nvml.nvmlDeviceGetCudaComputeCapability, handle)
        uuid = _safe(nvml.nvmlDeviceGetUUID, handle)
        pci = _safe(nvml.nvmlDeviceGetPciInfo, handle)
        bus_id = getattr(pci, "busId", None) if pci is not None else None
        gpus.append(
            GpuStatus(
                index=index,
                name=name,
                memory_total=int(mem.total),
                memory_used=int(mem.used),
                memory_free=int(mem.free),
                utilization=float(util.gpu) if util is not None else None,
                temperature_c=float(temp) if temp is not None else None,
                power_w=power_mw / 1000.0 if power_mw is not None else None,
                power_limit_w=limit_mw / 1000.0 if limit_mw is not None else None,
                compute_capability=tuple(cc) if cc is not None else None,
                uuid=_text(uuid) if uuid is not None else None,
                pci_bus_id=_text(bus_id) if bus_id is not None else None,
            )
        )
    return gpus


# --------------------------------------------------------------------------- NVML <-> CUDA


def _cuda_rank(gpu: GpuStatus) -> tuple[float, tuple[int, int]]:
    """How fast CUDA's FASTEST_FIRST order ranks a GPU: its 16-bit peak, then its capability.

    CUDA does not publish the heuristic; on a box of one GPU model (the usual case)
    every rank ties and the order is PCI order, which is exact.
    """
    spec = lookup_gpu(gpu.name)
    return (spec.fp16_tflops if spec else 0.0, gpu.compute_capability or (0, 0))


def cuda_order(gpus: list[GpuStatus], device_order: str | None = None) -> list[GpuStatus]:
    """NVML's GPUs in the order CUDA numbers them before any mask (CUDA_DEVICE_ORDER).

    PCI_BUS_ID is PCI order; FASTEST_FIRST (CUDA's default) puts faster GPUs first and
    keeps PCI order among equals.
    """
    by_pci = sorted(gpus, key=lambda g: (g.pci_bus_id or "", g.index))
    if (device_order or "FASTEST_FIRST").strip().upper() == "PCI_BUS_ID":
        return by_pci
    return sorted(by_pci, key=_cuda_rank, reverse=True)  # stable: PCI order among equals


def cuda_view(gpus: list[GpuStatus], env: Mapping[str, str]) -> list[GpuStatus]:
    """The GPUs a CUDA process started with `env` sees, as cuda:0, cuda:1, ... (cuda_index set).

    CUDA_VISIBLE_DEVICES lists indices into CUDA's order or GPU UUIDs (a unique prefix
    is enough), in the order they become cuda:0, cuda:1, ...; CUDA stops at the first
    entry it cannot use (out of range, unknown, repeated), so an empty value hides them all.
    MIG instances ("MIG-...") are not matched: the list stops there.
    """
    ranked = cuda_order(gpus, env.get("CUDA_DEVICE_ORDER"))
    mask = env.get("CUDA_VISIBLE_DEVICES")
    chosen = ranked if mask is None else _apply_mask(ranked, mask)
    return [replace(g, cuda_index=i) for i, g in enumerate(chosen)]


def _apply_mask(ranked: list[GpuStatus], mask: str) -> list[GpuStatus]:
    chosen: list[GpuStatus] = []
    for raw in mask.split(","):
        entry = raw.strip()
        if re.fullmatch(r"\d+", entry):
            found = ranked[int(entry)] if int(entry) < len(ranked) else None
        elif entry.upper().startswith("GPU-"):
            matches = [g for g in ranked if (g.uuid or "").lower().startswith(entry.lower())]
            found = matches[0] if len(matches) == 1 else None
        else:
            found = None
        if found is None or any(g.index == found.index for g in chosen):
            break
        chosen.append(found)
    return chosen


def cuda_to_nvml(cuda_index: int, env: Mapping[str, str] | None = None) -> GpuStatus | None:
    """The NVML GPU that a process started with `env` (this one's by default) calls cuda:N."""
    for gpu in query_gpus(env):
        if gpu.cuda_index == cuda_index:
            return gpu
    return None


def nvml_to_cuda(nvml_index: int, env: Mapping[str, str] | None = None) -> int | None:
    """The cuda:N a process started with `env` calls NVML's GPU `nvml_index`; None if masked."""
    for gpu in query_gpus(env):
        if gpu.index == nvml_index:
            return gpu.cuda_index
    return None


def gpu_by_uuid(uuid: str, gpus: list[GpuStatus] | None = None) -> GpuStatus | None:
    """The GPU with this UUID ("GPU-..." or torch's bare form), from `gpus` or every NVML GPU."""
    want = uuid.lower().removeprefix("gpu-")
    for gpu in _nvml_gpus() if gpus is None else gpus:
        if gpu.uuid and gpu.uuid.lower().removeprefix("gpu-") == want:
            return gpu
    return None


def visible_devices(gpus: list[GpuStatus]) -> str:
    """A CUDA_VISIBLE_DEVICES value that pins a process to these GPUs, in this order.

    By UUID, so it means the same GPUs whatever CUDA_DEVICE_ORDER the process has; by
    NVML index (PCI order) for a GPU whose UUID NVML did not give.
    """
    return ",".join(g.uuid or str(g.index) for g in gpus)


def spec_for_status(status: GpuStatus) -> GpuSpec:
    """A planning spec for a detected GPU: the catalog's peaks with the real memory size."""
    spec = lookup_gpu(status.name)
    if spec is None:
        bf16 = status.bf16
        spec = GpuSpec(
            status.name,
            (),
            status.memory_total,
            None if not bf16 else 0.0,
            0.0,
            0.0,
            status.compute_capability or (0, 0),
        )
    return replace(spec, name=status.name, memory_bytes=status.memory_total)


def local_gpu_spec(index: int = 0) -> GpuSpec | None:
    """The spec of the GPU a run here calls cuda:`index` (real memory, catalog peaks), or None."""
    status = cuda_to_nvml(index)
    return spec_for_status(status) if status is not None else None


def run_gpus(view: list[GpuStatus], device: str = "auto", nproc: int = 1) -> list[GpuStatus]:
    """The GPUs of `view` (CUDA's numbering under the run's CUDA_VISIBLE_DEVICES, as query_gpus
    gives it) that a run uses: cuda:N for one process on cuda:N, else cuda:0 up to cuda:nproc-1
    (each torchrun rank binds cuda:LOCAL_RANK); fewer when the view has fewer."""
    index = device.partition(":")[2]
    if nproc <= 1 and index.isdigit():
        return view[int(index) : int(index) + 1]
    return view[: max(1, nproc)]  # the view is in CUDA's order: its position is the cuda index


def smallest_spec(gpus: list[GpuStatus]) -> GpuSpec | None:
    """The planning spec of the GPU with the least usable memory among `gpus` (the slower on a
    tie): a run over several puts the same load on each, so the smallest decides; None for none."""
    specs = [spec_for_status(g) for g in gpus]
    return min(specs, key=lambda s: (s.usable_bytes, s.fp16_tflops)) if specs else None


def mixed_note(gpus: list[GpuStatus]) -> str:
    """' (the smallest of the run's N GPUs)' when `gpus` differ in model or memory, else ''."""
    if len({(g.name, g.memory_total) for g in gpus}) <= 1:
        return ""
    return f" (the smallest of the run's {len(gpus)} GPUs)"


def run_gpu_spec(
    device: str = "auto", nproc: int = 1, env: Mapping[str, str] | None = None
) -> GpuSpec | None:
    """The spec a run on `device` with `nproc` processes, started with `env` (this process's by
    default), is planned against: the smallest of the GPUs it uses; None when NVML sees none."""
    return smallest_spec(run_gpus(query_gpus(env), device, nproc))


def resolve_gpu(name: str | None, *, device: str = "auto", nproc: int = 1) -> GpuSpec | None:
    """--gpu NAME from the catalog, else the smallest GPU of this machine a run on `device` with
    `nproc` processes uses (cuda:0 for one), else None; ValueError for an unknown name."""
    if name:
        spec = lookup_gpu(name)
        if spec is None:
            raise ValueError(f"unknown GPU {name!r}; known: {', '.join(catalog_names())}")
        return spec
    return run_gpu_spec(device, nproc)
