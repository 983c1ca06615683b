"""GPU facts: catalog lookups by NVML and user names, and NVML queries that read 'no GPU'
instead of raising."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cockpit.plan import gpu as gpu_mod
from cockpit.plan.gpu import (
    CATALOG,
    GIB,
    GpuStatus,
    catalog_names,
    local_gpu_spec,
    lookup_gpu,
    nvml_problem,
    peak_flops,
    query_gpus,
    resolve_gpu,
    spec_for_status,
)


@pytest.fixture(autouse=True)
def fresh_nvml() -> Iterator[None]:
    gpu_mod._reset_nvml_for_tests()
    yield
    gpu_mod._reset_nvml_for_tests()


# --------------------------------------------------------------------------- catalog


@pytest.mark.parametrize(
    ("name", "catalog_name", "memory_gib"),
    [
        # as NVML names them
        ("NVIDIA H100 80GB HBM3", "H100", 80),
        ("NVIDIA H100 PCIe", "H100-PCIe", 80),
        ("NVIDIA H100 NVL", "H100-NVL", 94),
        ("NVIDIA H200", "H200", 141),
        ("NVIDIA GH200 480GB", "GH200", 96),
        ("NVIDIA A100-SXM4-40GB", "A100-40GB", 40),
        ("NVIDIA A100-SXM4-80GB", "A100-80GB", 80),
        ("NVIDIA A100 80GB PCIe", "A100-80GB", 80),
        ("Tesla T4", "T4", 16),
        ("NVIDIA A10G", "A10G", 24),
        ("NVIDIA A10", "A10", 24),
        ("NVIDIA L4", "L4", 24),
        ("NVIDIA L40S", "L40S", 48),
        ("NVIDIA L40", "L40", 48),
        ("NVIDIA GeForce RTX 4090", "RTX-4090", 24),
        ("NVIDIA GeForce RTX 3090", "RTX-3090", 24),
        ("NVIDIA RTX A6000", "RTX-A6000", 48),
        ("NVIDIA RTX 6000 Ada Generation", "RTX-6000-Ada", 48),
        ("Tesla V100-SXM2-16GB", "V100", 16),
        ("Tesla V100-SXM2-32GB", "V100-32GB", 32),
        # as users type them
        ("A100-80GB", "A100-80GB", 80),
        ("a100", "A100-40GB", 40),
        ("h100", "H100", 80),
        ("a10g", "A10G", 24),
        ("t4", "T4", 16),
        ("rtx 4090", "RTX-4090", 24),
        ("  H100_PCIe ", "H100-PCIe", 80),
    ],
)
def test_lookup_most_specific_first(name: str, catalog_name: str, memory_gib: int) -> None:
    spec = lookup_gpu(name)
    assert spec is not None, name
    assert spec.name == catalog_name
    assert spec.memory_bytes == memory_gib * GIB


@pytest.mark.parametrize(
    "name", ["", "   ", "nvidia", "NVIDIA", "Radeon RX 7900", "Apple M2", "banana", "A", "100"]
)
def test_unknown_names_are_none(name: str) -> None:
    assert lookup_gpu(name) is None
    assert peak_flops(name) is None


def test_every_catalog_name_finds_itself() -> None:
    for spec in CATALOG:
        assert lookup_gpu(spec.name) is spec
        for alias in spec.aliases:
            assert lookup_gpu(alias) is spec


def test_peak_flops_by_dtype() -> None:
    assert peak_flops("A100-80GB") == 312e12
    assert peak_flops("A100-80GB", "fp32", tf32=False) == 19.5e12
    assert peak_flops("Tesla T4", "bf16") == 65e12  # no bf16 on Turing: the fp16 rate
    assert peak_flops("H100", "fp16") == 989e12
    assert lookup_gpu("A100").peak_flops("bf16") == 312e12
    assert lookup_gpu("A100").peak_flops("fp32", tf32=False) == 19.5e12
    assert lookup_gpu("H100 SXM").peak_flops("bf16") == 989e12
    assert lookup_gpu("H100 PCIe").peak_flops("bf16") == 756e12
    assert lookup_gpu("H200").peak_flops("bf16") == 989e12
    t4 = lookup_gpu("T4")
    assert t4.peak_flops("bf16") == t4.peak_flops("fp16") == 65e12


def test_bf16_support_follows_the_architecture() -> None:
    assert lookup_gpu("A100").bf16 and lookup_gpu("L4").bf16
    assert not lookup_gpu("T4").bf16 and not lookup_gpu("V100").bf16
    for spec in CATALOG:
        assert spec.bf16 == (spec.compute_capability >= (8, 0))
        assert spec.memory_bytes >= 10 * GIB and spec.fp16_tflops > spec.fp32_tflops


def test_resolve_gpu_names_the_catalog_for_an_unknown_name() -> None:
    assert resolve_gpu("a100-80gb").name == "A100-80GB"
    assert resolve_gpu("a10g").name == "A10G"
    with pytest.raises(ValueError, match="unknown GPU 'TPUv4'; known: .*A100-80GB") as info:
        resolve_gpu("TPUv4")
    for name in catalog_names():
        assert name in str(info.value)


# --------------------------------------------------------------------------- NVML


def test_no_nvidia_ml_py_is_no_gpu(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    assert query_gpus() == []
    assert "not installed" in nvml_problem()
    assert local_gpu_spec() is None
    assert resolve_gpu(None) is None


def _raising_init_module() -> types.ModuleType:
    mod = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def init() -> None:
        raise NVMLError("Driver Not Loaded")

    mod.NVMLError = NVMLError
    mod.nvmlInit = init
    return mod


def test_nvml_raising_at_init_is_no_gpu(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _raising_init_module())
    assert query_gpus() == []
    assert "Driver Not Loaded" in nvml_problem()
    assert local_gpu_spec() is None


@dataclass
class _Mem:
    total: int
    used: int
    free: int


@dataclass
class _Util:
    gpu: int
    memory: int


def fake_nvml(gpus: list[dict], *, count_raises: bool = False) -> types.ModuleType:
    """A stand-in for pynvml serving the given devices; a key set to an Exception makes that call raise."""
    mod = types.ModuleType("pynvml")
    mod.NVML_TEMPERATURE_GPU = 0
    mod.init_calls = 0

    def init() -> None:
        mod.init_calls += 1

    def count() -> int:
        if count_raises:
            raise RuntimeError("GPU is lost")
        return len(gpus)

    def getter(key: str):  # noqa: ANN202
        def call(handle: int, *args: object) -> object:
            value = gpus[handle][key]  # KeyError for a query this device does not answer
            if isinstance(value, Exception):
                raise value
            return value

        return call

    def handle(index: int) -> int:
        if isinstance(gpus[index].get("handle"), Exception):
            raise gpus[index]["handle"]
        return index

    mod.nvmlInit = init
    mod.nvmlDeviceGetCount = count
    mod.nvmlDeviceGetHandleByIndex = handle
    for fn, key in (
        ("nvmlDeviceGetName", "name"),
        ("nvmlDeviceGetMemoryInfo", "mem"),
        ("nvmlDeviceGetUtilizationRates", "util"),
        ("nvmlDeviceGetTemperature", "temp"),
        ("nvmlDeviceGetPowerUsage", "power"),
        ("nvmlDeviceGetEnforcedPowerLimit", "limit"),
        ("nvmlDeviceGetCudaComputeCapability", "cc"),
        ("nvmlDeviceGetUUID", "uuid"),
        ("nvmlDeviceGetPciInfo", "pci"),
    ):
        setattr(mod, fn, getter(key))
    return mod


TWO_GPUS = [
    {
        "name": b"NVIDIA A100-SXM4-80GB",  # bytes, as older pynvml versions return it
        "mem": _Mem(80 * GIB, 10 * GIB, 70 * GIB),
        "util": _Util(97, 40),
        "temp": 61,
        "power": 312_500,
        "limit": 400_000,
        "cc": (8, 0),
    },
    {
        "name": "Tesla T4",
        "mem": _Mem(15 * GIB, 0, 15 * GIB),
        "util": _Util(0, 0),
        "temp": 35,
        "power": 9_000,
        "limit": 70_000,
        "cc": (7, 5),
    },
]
SENSORS = ("util", "temp", "power", "limit", "cc")


def test_fake_nvml_with_two_gpus(monkeypatch) -> None:
    fake = fake_nvml(TWO_GPUS)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    a100, t4 = query_gpus()
    assert a100 == GpuStatus(
        0, "NVIDIA A100-SXM4-80GB", 80 * GIB, 10 * GIB, 70 * GIB, 97.0, 61.0, 312.5, 400.0, (8, 0)
    )
    assert t4 == GpuStatus(1, "Tesla T4", 15 * GIB, 0, 15 * GIB, 0.0, 35.0, 9.0, 70.0, (7, 5))
    assert a100.bf16 and not t4.bf16
    query_gpus()
    assert fake.init_calls == 1  # initialised once, then reused by a 1 Hz poller
    assert nvml_problem() == ""


def test_local_gpu_spec_keeps_the_catalog_peaks_and_the_real_memory(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(TWO_GPUS))
    spec = local_gpu_spec()
    assert spec.name == "NVIDIA A100-SXM4-80GB" and spec.memory_bytes == 80 * GIB
    assert spec.bf16_tflops == 312
    t4 = local_gpu_spec(1)
    assert t4.name == "Tesla T4"
    assert t4.memory_bytes == 15 * GIB and t4.bf16 is False and t4.fp16_tflops == 65
    assert local_gpu_spec(5) is None
    assert resolve_gpu(None).name == "NVIDIA A100-SXM4-80GB"


def test_an_unknown_gpu_still_plans_with_its_real_memory(monkeypatch) -> None:
    monkeypatch.setitem(
        sys.modules,
        "pynvml",
        fake_nvml([{**TWO_GPUS[0], "name": "NVIDIA Future X9", "cc": (12, 0)}]),
    )
    spec = local_gpu_spec()
    assert spec.name == "NVIDIA Future X9" and spec.memory_bytes == 80 * GIB and spec.bf16
    assert spec.compute_capability == (12, 0)
    status = GpuStatus(
        0, "NVIDIA Future X9000", 200 * GIB, 0, 200 * GIB, None, None, None, None, (12, 0)
    )
    spec = spec_for_status(status)
    assert spec.memory_bytes == 200 * GIB and spec.bf16 and spec.peak_flops() == 0


def test_failing_sensors_read_as_unknown_not_as_errors(monkeypatch) -> None:
    broken = {**TWO_GPUS[0], **{key: RuntimeError("Not Supported") for key in SENSORS}}
    lost = {**TWO_GPUS[1], "handle": RuntimeError("GPU is lost")}
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([broken, lost]))
    gpus = query_gpus()
    assert len(gpus) == 1  # the lost device is left out; the other is still listed
    g = gpus[0]
    assert (g.utilization, g.temperature_c, g.power_w, g.power_limit_w, g.compute_capability) == (
        None,
    ) * 5
    assert g.memory_total == 80 * GIB
    assert g.bf16 is False


def test_device_count_raising_is_no_gpu(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(TWO_GPUS, count_raises=True))
    assert query_gpus() == []


def test_memory_info_raising_drops_that_device(monkeypatch) -> None:
    monkeypatch.setitem(
        sys.modules, "pynvml", fake_nvml([{**TWO_GPUS[0], "mem": RuntimeError("x")}, TWO_GPUS[1]])
    )
    assert [g.name for g in query_gpus()] == ["Tesla T4"]


def test_every_catalog_gpu_reports_less_than_its_nominal_memory():
    from cockpit.plan.gpu import CATALOG

    for spec in CATALOG:
        assert 0.85 * spec.memory_bytes < spec.usable_bytes < spec.memory_bytes, spec.name


# --------------------------------------------------------------------------- Hopper, as NVML names it


@pytest.mark.parametrize(
    ("nvml_name", "catalog_name", "bf16_tflops"),
    [
        ("NVIDIA H100 80GB HBM3", "H100", 989),  # SXM5
        ("NVIDIA H100 PCIe", "H100-PCIe", 756),
        ("NVIDIA H100 NVL", "H100-NVL", 835),
        ("NVIDIA H200", "H200", 989),  # SXM
        ("NVIDIA H200 NVL", "H200-NVL", 835),
        ("NVIDIA GH200 480GB", "GH200", 989),
    ],
)
def test_hopper_nvml_names_give_the_datasheet_peak_for_mfu(
    monkeypatch, nvml_name: str, catalog_name: str, bf16_tflops: int
) -> None:
    """The MFU the trainer reports divides by this peak: a wrong entry is a wrong MFU."""
    assert lookup_gpu(nvml_name).name == catalog_name
    assert peak_flops(nvml_name, "bf16") == bf16_tflops * 1e12
    monkeypatch.setitem(
        sys.modules, "pynvml", fake_nvml([{**TWO_GPUS[0], "name": nvml_name, "cc": (9, 0)}])
    )
    spec = local_gpu_spec()
    assert spec.name == nvml_name and spec.peak_flops("bf16") == bf16_tflops * 1e12
    # 124M-class arithmetic: 0.75 GFLOP/token at 400k tokens/s
    mfu = 0.75e9 * 400_000 / spec.peak_flops("bf16")
    assert mfu == pytest.approx(300 / bf16_tflops)


class _MemV2:
    def __init__(self, total: int, reserved: int, used: int) -> None:
        self.total, self.reserved, self.used = total, reserved, used
        self.free = total - reserved - used


def test_memory_used_leaves_out_the_drivers_reserve_as_nvidia_smi_does(monkeypatch) -> None:
    """NVML v1's used (total - free) counts the driver's reserve; v2's, like nvidia-smi's, does not."""
    fake = fake_nvml([{**TWO_GPUS[0], "name": "NVIDIA H100 80GB HBM3"}])
    v1 = _Mem(81559 * 2**20, 573 * 2**20, (81559 - 573) * 2**20)
    v2 = _MemV2(81559 * 2**20, 573 * 2**20, 2 * 2**20)
    fake.nvmlMemory_v2 = 0x2000028

    def memory_info(handle: int, version: int | None = None) -> object:
        return v2 if version == fake.nvmlMemory_v2 else v1

    fake.nvmlDeviceGetMemoryInfo = memory_info
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    (g,) = query_gpus()
    assert g.memory_used == 2 * 2**20 and g.memory_total == 81559 * 2**20
    assert g.memory_free == (81559 - 575) * 2**20

    def v1_only(handle: int, version: int | None = None) -> object:
        if version is not None:
            raise RuntimeError("Function Not Found")  # an older driver
        return v1

    fake.nvmlDeviceGetMemoryInfo = v1_only
    (g,) = query_gpus()
    assert g.memory_used == 573 * 2**20  # falls back to v1, still a reading


# --------------------------------------------------------------------------- NVML <-> CUDA


@dataclass
class _Pci:
    busId: str  # noqa: N815 - NVML's field name


def box(*names_and_buses: tuple[str, str, tuple[int, int]]) -> list[dict]:
    """NVML devices (in NVML's order) with a UUID 'GPU-<n>aaaa-...' and a PCI bus id each."""
    return [
        {
            "name": name,
            "mem": _Mem(80 * GIB, i * GIB, (80 - i) * GIB),
            "cc": cc,
            "uuid": f"GPU-{i}aaaa-1111-2222-3333-44445555666{i}",
            "pci": _Pci(bus),
        }
        for i, (name, bus, cc) in enumerate(names_and_buses)
    ]


H100 = ("NVIDIA H100 80GB HBM3", (9, 0))
FOUR_H100 = box(*((H100[0], f"00000000:{bus}:00.0", H100[1]) for bus in ("18", "2A", "3A", "5D")))


def nvml_of(gpus: list[GpuStatus]) -> list[int]:
    return [g.index for g in gpus]


@pytest.mark.parametrize(
    ("mask", "nvml_indices"),
    [
        (None, [0, 1, 2, 3]),  # unset: every GPU
        ("2", [2]),
        ("2,0", [2, 0]),  # in the mask's order: NVML's 2 is cuda:0
        (" 3 , 1 ", [3, 1]),
        ("", []),  # empty: CUDA sees none
        ("1,7,2", [1]),  # CUDA stops at the first index it has no GPU for
        ("1,1,2", [1]),  # and at a repeat
        ("0,foo,1", [0]),
        ("GPU-2aaaa", [2]),  # a unique UUID prefix
        ("GPU-3aaaa-1111-2222-3333-444455556663,0", [3, 0]),
        ("GPU-", []),  # a prefix of every UUID names none
        ("MIG-1234", []),
    ],
)
def test_cuda_visible_devices_is_applied_as_cuda_applies_it(
    monkeypatch, mask, nvml_indices
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(FOUR_H100))
    env = {} if mask is None else {"CUDA_VISIBLE_DEVICES": mask}
    seen = query_gpus(env)
    assert nvml_of(seen) == nvml_indices
    assert [g.cuda_index for g in seen] == list(range(len(nvml_indices)))


def test_the_mask_of_this_process_is_what_nproc_auto_counts(monkeypatch) -> None:
    from cockpit import runs

    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(FOUR_H100))
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert runs.resolve_nproc("auto") == 2  # NVML sees 4, torchrun's ranks get 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert runs.resolve_nproc("auto") == 1
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert runs.resolve_nproc("auto") == 4


def test_the_plan_describes_the_gpu_a_run_calls_cuda0(monkeypatch) -> None:
    # NVML's 0 is a T4, but the run is pinned to the A100 (NVML's 1): plan for the A100
    two = box(
        ("Tesla T4", "00000000:18:00.0", (7, 5)),
        ("NVIDIA A100-SXM4-80GB", "00000000:3B:00.0", (8, 0)),
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(two))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1aaaa")
    assert local_gpu_spec().name == "NVIDIA A100-SXM4-80GB" and local_gpu_spec().bf16
    assert local_gpu_spec(1) is None


def test_fastest_first_is_cudas_default_order_on_a_mixed_box(monkeypatch) -> None:
    mixed = box(("Tesla T4", "00000000:18:00.0", (7, 5)), (H100[0], "00000000:3B:00.0", H100[1]))
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(mixed))
    assert [g.name for g in query_gpus({})] == [H100[0], "Tesla T4"]  # H100 is cuda:0
    assert nvml_of(query_gpus({"CUDA_VISIBLE_DEVICES": "1"})) == [0]  # cuda index 1 = the T4
    pci = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert [g.name for g in query_gpus(pci)] == ["Tesla T4", H100[0]]
    assert nvml_of(query_gpus({**pci, "CUDA_VISIBLE_DEVICES": "1"})) == [1]


def test_pci_order_is_read_from_the_bus_ids_not_nvmls_numbering(monkeypatch) -> None:
    shuffled = box(*((H100[0], f"00000000:{bus}:00.0", H100[1]) for bus in ("5D", "18", "3A")))
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(shuffled))
    assert nvml_of(query_gpus({"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})) == [1, 2, 0]


def test_cuda_and_nvml_indices_map_both_ways_under_a_mask(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(FOUR_H100))
    env = {"CUDA_VISIBLE_DEVICES": "3,1"}
    assert gpu_mod.cuda_to_nvml(0, env).index == 3
    assert gpu_mod.cuda_to_nvml(1, env).index == 1
    assert gpu_mod.cuda_to_nvml(2, env) is None
    assert gpu_mod.nvml_to_cuda(3, env) == 0 and gpu_mod.nvml_to_cuda(1, env) == 1
    assert gpu_mod.nvml_to_cuda(0, env) is None  # hidden by the mask
    for cuda_index in (0, 1):
        nvml_index = gpu_mod.cuda_to_nvml(cuda_index, env).index
        assert gpu_mod.nvml_to_cuda(nvml_index, env) == cuda_index


def test_a_pin_by_uuid_selects_the_same_gpus_in_any_device_order(monkeypatch) -> None:
    mixed = box(
        ("Tesla T4", "00000000:18:00.0", (7, 5)),
        (H100[0], "00000000:3B:00.0", H100[1]),
        ("NVIDIA L4", "00000000:5D:00.0", (8, 9)),
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(mixed))
    every = query_gpus({}, every=True)
    wanted = [g for g in every if g.index in (2, 0)]  # the scheduler's choice, by NVML index
    pin = gpu_mod.visible_devices(wanted)
    assert pin == "GPU-0aaaa-1111-2222-3333-444455556660,GPU-2aaaa-1111-2222-3333-444455556662"
    for order in ("FASTEST_FIRST", "PCI_BUS_ID"):
        env = {"CUDA_VISIBLE_DEVICES": pin, "CUDA_DEVICE_ORDER": order}
        assert nvml_of(query_gpus(env)) == [0, 2]


def test_every_lists_hidden_gpus_without_a_cuda_index(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(FOUR_H100))
    every = query_gpus({"CUDA_VISIBLE_DEVICES": "2"}, every=True)
    assert [g.cuda_index for g in every] == [None, None, 0, None]


def test_a_torch_uuid_finds_its_nvml_gpu(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(FOUR_H100))
    # torch.cuda.get_device_properties(i).uuid prints without NVML's "GPU-" prefix
    assert gpu_mod.gpu_by_uuid("2aaaa-1111-2222-3333-444455556662").index == 2
    assert gpu_mod.gpu_by_uuid("GPU-1AAAA-1111-2222-3333-444455556661").index == 1
    assert gpu_mod.gpu_by_uuid("ffff") is None


def test_a_run_is_planned_on_the_smallest_of_the_gpus_it_uses(monkeypatch) -> None:
    """Mixed GPUs: cuda:0 for one process, the smallest of cuda:0..N-1 for N ranks, the masked
    GPUs under CUDA_VISIBLE_DEVICES; never simply NVML's GPU 0."""
    from cockpit.plan.gpu import mixed_note, run_gpu_spec, run_gpus

    mixed = box(
        ("Tesla T4", "00000000:18:00.0", (7, 5)),
        (H100[0], "00000000:3B:00.0", H100[1]),
        ("NVIDIA A100-SXM4-40GB", "00000000:5D:00.0", (8, 0)),
    )
    mixed[0]["mem"] = _Mem(15 * GIB, 0, 15 * GIB)
    mixed[2]["mem"] = _Mem(40 * GIB, 0, 40 * GIB)
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(mixed))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    # fastest first: H100 (cuda:0), A100 (cuda:1), T4 (cuda:2)
    assert run_gpu_spec().name == H100[0] and resolve_gpu(None).name == H100[0]
    assert run_gpu_spec(nproc=2).name == "NVIDIA A100-SXM4-40GB"
    assert resolve_gpu(None, nproc=3).name == "Tesla T4"
    assert run_gpu_spec("cuda:2").name == "Tesla T4" and run_gpu_spec("cuda:5") is None
    assert resolve_gpu("H100", nproc=3).name == "H100"  # --gpu names the plan's GPU itself
    view = query_gpus()
    assert mixed_note(run_gpus(view, nproc=3)) == " (the smallest of the run's 3 GPUs)"
    assert mixed_note(run_gpus(view)) == ""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-2aaaa,GPU-1aaaa")  # the A100, then the H100
    assert run_gpu_spec().name == "NVIDIA A100-SXM4-40GB"
    assert run_gpu_spec(nproc=8).name == "NVIDIA A100-SXM4-40GB"  # only 2 are visible
    assert run_gpu_spec(env={"CUDA_VISIBLE_DEVICES": ""}) is None  # the env the run starts in
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")  # cuda index 2 in CUDA's order: the T4
    assert run_gpu_spec().name == "Tesla T4"
