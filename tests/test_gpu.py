"""GPU facts: catalog lookups, and NVML that reads 'no GPU' instead of raising."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest

from cockpit import gpu as gpu_mod
from cockpit.gpu import (
    CATALOG,
    GIB,
    catalog_names,
    local_gpu_spec,
    lookup_gpu,
    peak_flops,
    query_gpus,
    resolve_gpu,
)


@pytest.fixture(autouse=True)
def fresh_nvml():
    gpu_mod._reset_nvml_for_tests()
    yield
    gpu_mod._reset_nvml_for_tests()


# --------------------------------------------------------------------------- catalog


@pytest.mark.parametrize(
    "name, expected",
    [
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H100 PCIe", "H100-PCIe"),
        ("NVIDIA H100 NVL", "H100-NVL"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA GH200 480GB", "GH200"),
        ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA A100-SXM4-80GB", "A100-80GB"),
        ("NVIDIA A100 80GB PCIe", "A100-80GB"),
        ("A100-80GB", "A100-80GB"),
        ("a100", "A100-40GB"),
        ("h100", "H100"),
        ("Tesla T4", "T4"),
        ("t4", "T4"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA A10", "A10"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA L40", "L40"),
        ("NVIDIA GeForce RTX 4090", "RTX-4090"),
        ("NVIDIA GeForce RTX 3090", "RTX-3090"),
        ("NVIDIA RTX A6000", "RTX-A6000"),
        ("NVIDIA RTX 6000 Ada Generation", "RTX-6000-Ada"),
        ("Tesla V100-SXM2-16GB", "V100"),
        ("Tesla V100-SXM2-32GB", "V100-32GB"),
    ],
)
def test_lookup_most_specific_first(name, expected):
    spec = lookup_gpu(name)
    assert spec is not None and spec.name == expected


@pytest.mark.parametrize("name", ["", "   ", "Radeon RX 7900", "Apple M2", "nvidia"])
def test_unknown_names(name):
    assert lookup_gpu(name) is None
    assert peak_flops(name) is None


def test_every_catalog_name_finds_itself():
    for spec in CATALOG:
        assert lookup_gpu(spec.name) is spec
        for alias in spec.aliases:
            assert lookup_gpu(alias) is spec


def test_peak_flops_by_dtype():
    assert peak_flops("A100-80GB") == 312e12
    assert peak_flops("A100-80GB", "fp32") == 19.5e12
    assert peak_flops("Tesla T4", "bf16") == 65e12  # no bf16 on Turing: the fp16 rate
    assert peak_flops("H100", "fp16") == 989e12


def test_bf16_support_follows_the_architecture():
    assert lookup_gpu("A100").bf16 and lookup_gpu("L4").bf16
    assert not lookup_gpu("T4").bf16 and not lookup_gpu("V100").bf16
    for spec in CATALOG:
        assert spec.bf16 == (spec.compute_capability >= (8, 0))
        assert spec.memory_bytes >= 10 * GIB and spec.fp16_tflops > spec.fp32_tflops


def test_resolve_gpu_names_the_catalog_for_an_unknown_name():
    assert resolve_gpu("a100-80gb").name == "A100-80GB"
    with pytest.raises(ValueError) as info:
        resolve_gpu("TPUv4")
    assert "TPUv4" in str(info.value)
    for name in catalog_names():
        assert name in str(info.value)


# --------------------------------------------------------------------------- NVML


def test_no_nvidia_ml_py_is_no_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    assert query_gpus() == []
    assert "not installed" in gpu_mod.nvml_problem()
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


def test_nvml_raising_at_init_is_no_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _raising_init_module())
    assert query_gpus() == []
    assert "Driver Not Loaded" in gpu_mod.nvml_problem()
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
            value = gpus[handle][key]
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
    ):
        setattr(mod, fn, getter(key))
    return mod


TWO_GPUS = [
    {
        "name": b"NVIDIA A100-SXM4-80GB",
        "mem": _Mem(80 * GIB, 10 * GIB, 70 * GIB),
        "util": _Util(97, 40),
        "temp": 61,
        "power": 312_000,
        "limit": 400_000,
        "cc": (8, 0),
    },
    {
        "name": "Tesla T4",
        "mem": _Mem(15 * GIB, 0, 15 * GIB),
        "util": _Util(0, 0),
        "temp": 35,
        "power": 9_500,
        "limit": 70_000,
        "cc": (7, 5),
    },
]


def test_fake_nvml_with_two_gpus(monkeypatch):
    fake = fake_nvml(TWO_GPUS)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpus = query_gpus()
    assert [g.index for g in gpus] == [0, 1]
    a, t = gpus
    assert a.name == "NVIDIA A100-SXM4-80GB"  # bytes from old pynvml versions are decoded
    assert (a.memory_total, a.memory_used, a.memory_free) == (80 * GIB, 10 * GIB, 70 * GIB)
    assert (a.utilization, a.temperature_c, a.power_w, a.power_limit_w) == (
        97.0,
        61.0,
        312.0,
        400.0,
    )
    assert a.compute_capability == (8, 0) and a.bf16
    assert t.name == "Tesla T4" and not t.bf16
    query_gpus()
    assert fake.init_calls == 1  # initialised once, then reused by a 1 Hz poller
    assert gpu_mod.nvml_problem() == ""


def test_local_gpu_spec_keeps_the_catalog_peaks_and_the_real_memory(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(TWO_GPUS))
    spec = local_gpu_spec()
    assert spec.name == "NVIDIA A100-SXM4-80GB" and spec.memory_bytes == 80 * GIB
    assert spec.bf16_tflops == 312
    t4 = local_gpu_spec(1)
    assert t4.memory_bytes == 15 * GIB and t4.bf16 is False and t4.fp16_tflops == 65
    assert local_gpu_spec(5) is None
    assert resolve_gpu(None).name == "NVIDIA A100-SXM4-80GB"


def test_an_unknown_gpu_still_plans_with_its_real_memory(monkeypatch):
    monkeypatch.setitem(
        sys.modules,
        "pynvml",
        fake_nvml([{**TWO_GPUS[0], "name": "NVIDIA Future X9", "cc": (12, 0)}]),
    )
    spec = local_gpu_spec()
    assert spec.name == "NVIDIA Future X9" and spec.memory_bytes == 80 * GIB and spec.bf16
    assert spec.compute_capability == (12, 0)


def test_failing_sensors_read_as_unknown_not_as_errors(monkeypatch):
    broken = {
        **TWO_GPUS[0],
        "util": RuntimeError("Not Supported"),
        "temp": RuntimeError("x"),
        "power": RuntimeError("x"),
        "limit": RuntimeError("x"),
        "cc": RuntimeError("x"),
    }
    lost = {**TWO_GPUS[1], "handle": RuntimeError("GPU is lost")}
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([broken, lost]))
    gpus = query_gpus()
    assert len(gpus) == 1  # the lost device is left out; the other is still listed
    g = gpus[0]
    assert (g.utilization, g.temperature_c, g.power_w, g.power_limit_w, g.compute_capability) == (
        None,
    ) * 5
    assert g.bf16 is False


def test_device_count_raising_is_no_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(TWO_GPUS, count_raises=True))
    assert query_gpus() == []


def test_memory_info_raising_drops_that_device(monkeypatch):
    monkeypatch.setitem(
        sys.modules, "pynvml", fake_nvml([{**TWO_GPUS[0], "mem": RuntimeError("x")}, TWO_GPUS[1]])
    )
    assert [g.name for g in query_gpus()] == ["Tesla T4"]
