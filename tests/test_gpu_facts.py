"""GPU facts: catalog lookups by NVML and user names, and NVML queries that never raise."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest

import cockpit.gpu as gpu
from cockpit.gpu import (
    GIB,
    GpuStatus,
    local_gpu_spec,
    lookup_gpu,
    nvml_problem,
    query_gpus,
    resolve_gpu,
    spec_for_status,
)


@pytest.mark.parametrize(
    ("device_name", "catalog_name", "memory_gib"),
    [
        ("NVIDIA H100 80GB HBM3", "H100", 80),
        ("NVIDIA A100-SXM4-40GB", "A100-40GB", 40),
        ("NVIDIA A100-SXM4-80GB", "A100-80GB", 80),
        ("NVIDIA A100 80GB PCIe", "A100-80GB", 80),
        ("Tesla T4", "T4", 16),
        ("NVIDIA GeForce RTX 4090", "RTX-4090", 24),
        ("NVIDIA A10G", "A10G", 24),
        ("NVIDIA A10", "A10", 24),
        ("NVIDIA L4", "L4", 24),
        ("NVIDIA L40S", "L40S", 48),
        ("NVIDIA L40", "L40", 48),
        ("NVIDIA H100 PCIe", "H100-PCIe", 80),
        ("NVIDIA H100 NVL", "H100-NVL", 94),
        ("NVIDIA H200", "H200", 141),
        ("NVIDIA GH200 480GB", "GH200", 96),
        ("Tesla V100-SXM2-32GB", "V100-32GB", 32),
        # user forms
        ("A100-80GB", "A100-80GB", 80),
        ("a100", "A100-40GB", 40),
        ("h100", "H100", 80),
        ("a10g", "A10G", 24),
        ("t4", "T4", 16),
        ("rtx 4090", "RTX-4090", 24),
        ("  H100_PCIe ", "H100-PCIe", 80),
    ],
)
def test_lookup_by_device_and_user_names(
    device_name: str, catalog_name: str, memory_gib: int
) -> None:
    spec = lookup_gpu(device_name)
    assert spec is not None, device_name
    assert spec.name == catalog_name
    assert spec.memory_bytes == memory_gib * GIB


@pytest.mark.parametrize(
    "name", ["", "   ", "NVIDIA", "Radeon RX 7900", "Apple M2", "banana", "A", "100"]
)
def test_unknown_names_are_none(name: str) -> None:
    assert lookup_gpu(name) is None
    assert gpu.peak_flops(name) is None


def test_unknown_user_name_is_a_value_error_that_lists_the_catalog() -> None:
    with pytest.raises(ValueError, match="unknown GPU 'banana'; known: .*A100-80GB"):
        resolve_gpu("banana")
    assert resolve_gpu("a10g").name == "A10G"


def test_peaks_and_bf16_support() -> None:
    assert lookup_gpu("A100").peak_flops("bf16") == 312e12
    assert lookup_gpu("H100 SXM").peak_flops("bf16") == 989e12
    assert lookup_gpu("H100 PCIe").peak_flops("bf16") == 756e12
    assert lookup_gpu("H200").peak_flops("bf16") == 989e12
    t4 = lookup_gpu("T4")
    assert (
        not t4.bf16 and t4.peak_flops("bf16") == t4.peak_flops("fp16") == 65e12
    )  # no bf16: fp16 rate
    assert lookup_gpu("A100").peak_flops("fp32") == 19.5e12


# --------------------------------------------------------------------------- NVML


@pytest.fixture(autouse=True)
def fresh_nvml() -> Iterator[None]:
    gpu._reset_nvml_for_tests()
    yield
    gpu._reset_nvml_for_tests()


def test_pynvml_missing_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    assert query_gpus() == []
    assert "not installed" in nvml_problem()
    assert local_gpu_spec() is None and resolve_gpu(None) is None


class NVMLError(Exception):
    pass


def test_nvml_init_raising_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("pynvml")

    def init() -> None:
        raise NVMLError("Driver Not Loaded")

    fake.nvmlInit = init  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert query_gpus() == []
    assert "Driver Not Loaded" in nvml_problem()


def fake_pynvml(devices: list[dict], *, broken: set[str] = frozenset()) -> types.ModuleType:
    """A pynvml stand-in exposing `devices`; calls named in `broken` raise."""
    mod = types.ModuleType("pynvml")
    mod.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]
    mod.inits = 0  # type: ignore[attr-defined]

    def call(name: str, fn):  # noqa: ANN001, ANN202
        def wrapped(*args):  # noqa: ANN002, ANN202
            if name in broken:
                raise NVMLError(f"{name} not supported")
            return fn(*args)

        setattr(mod, name, wrapped)

    def init() -> None:
        mod.inits += 1  # type: ignore[attr-defined]

    mod.nvmlInit = init  # type: ignore[attr-defined]
    call("nvmlDeviceGetCount", lambda: len(devices))
    call("nvmlDeviceGetHandleByIndex", lambda i: devices[i])
    call("nvmlDeviceGetName", lambda h: h["name"])
    call(
        "nvmlDeviceGetMemoryInfo",
        lambda h: types.SimpleNamespace(
            total=h["total"], used=h["used"], free=h["total"] - h["used"]
        ),
    )
    call("nvmlDeviceGetUtilizationRates", lambda h: types.SimpleNamespace(gpu=h["util"], memory=0))
    call("nvmlDeviceGetTemperature", lambda h, sensor: h["temp"])
    call("nvmlDeviceGetPowerUsage", lambda h: h["power_mw"])
    call("nvmlDeviceGetEnforcedPowerLimit", lambda h: h["limit_mw"])
    call("nvmlDeviceGetCudaComputeCapability", lambda h: h["cc"])
    return mod


TWO = [
    {
        "name": b"NVIDIA A100-SXM4-80GB",
        "total": 80 * GIB,
        "used": 3 * GIB,
        "util": 97,
        "temp": 61,
        "power_mw": 312_500,
        "limit_mw": 400_000,
        "cc": (8, 0),
    },
    {
        "name": "Tesla T4",
        "total": 15 * GIB,
        "used": 0,
        "util": 0,
        "temp": 38,
        "power_mw": 9_000,
        "limit_mw": 70_000,
        "cc": (7, 5),
    },
]


def test_fake_nvml_with_two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_pynvml(TWO)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    a100, t4 = query_gpus()
    assert a100 == GpuStatus(
        0, "NVIDIA A100-SXM4-80GB", 80 * GIB, 3 * GIB, 77 * GIB, 97.0, 61.0, 312.5, 400.0, (8, 0)
    )
    assert t4 == GpuStatus(1, "Tesla T4", 15 * GIB, 0, 15 * GIB, 0.0, 38.0, 9.0, 70.0, (7, 5))
    assert a100.bf16 and not t4.bf16
    assert nvml_problem() == ""
    query_gpus()
    assert fake.inits == 1  # initialised once, then reused
    # planning uses the catalog's peaks with the real memory
    spec = local_gpu_spec(1)
    assert spec.name == "Tesla T4" and spec.memory_bytes == 15 * GIB and spec.fp16_tflops == 65
    assert resolve_gpu(None).name == "NVIDIA A100-SXM4-80GB"
    assert local_gpu_spec(5) is None


def test_failing_sensors_read_as_unknown_and_a_failing_device_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = {
        "nvmlDeviceGetUtilizationRates",
        "nvmlDeviceGetTemperature",
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetEnforcedPowerLimit",
        "nvmlDeviceGetCudaComputeCapability",
    }
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(TWO, broken=broken))
    a100, t4 = query_gpus()
    assert (
        a100.utilization,
        a100.temperature_c,
        a100.power_w,
        a100.power_limit_w,
        a100.compute_capability,
    ) == (None,) * 5
    assert a100.memory_total == 80 * GIB
    gpu._reset_nvml_for_tests()
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(TWO, broken={"nvmlDeviceGetMemoryInfo"}))
    assert query_gpus() == []  # no memory, no usable device
    gpu._reset_nvml_for_tests()
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(TWO, broken={"nvmlDeviceGetCount"}))
    assert query_gpus() == []


def test_unknown_detected_gpu_still_plans_with_its_memory() -> None:
    status = GpuStatus(
        0, "NVIDIA Future X9000", 200 * GIB, 0, 200 * GIB, None, None, None, None, (12, 0)
    )
    spec = spec_for_status(status)
    assert spec.memory_bytes == 200 * GIB and spec.bf16 and spec.peak_flops() == 0
