"""The engine's dtype and peak on a GPU, decided as the planner decides them.

No GPU here: torch.cuda's capability, name and memory queries are faked per card.
dtype auto is bf16 from compute capability 8.0 (torch.cuda.is_bf16_supported() also
says True on a T4, where bf16 is emulated); fp32 runs as TF32 on Ampere and newer,
so its MFU and ETA divide by the TF32 peak.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from cockpit.plan.estimate import eta_seconds, training_dtype
from cockpit.plan.gpu import CATALOG, GIB, lookup_gpu
from cockpit.plan.presets import apply_overrides, load_preset
from cockpit.train import setup
from cockpit.train.runtime import EngineError, resolve_dtype

CUDA = torch.device("cuda", 0)


def fake_card(monkeypatch: pytest.MonkeyPatch, name: str, capability: tuple[int, int]) -> None:
    """torch.cuda answering as one `name` card of `capability`, bf16 'supported' as torch says."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    # torch counts emulation: True on every 7.x card too (torch/cuda/__init__.py)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda device=None: SimpleNamespace(total_memory=16 * GIB, name=name),
    )


@pytest.mark.parametrize(
    ("name", "capability", "expected"),
    [
        ("Tesla T4", (7, 5), "fp16"),
        ("Tesla V100-SXM2-16GB", (7, 0), "fp16"),
        ("NVIDIA A100-SXM4-80GB", (8, 0), "bf16"),
        ("NVIDIA A10G", (8, 6), "bf16"),
        ("NVIDIA H100 80GB HBM3", (9, 0), "bf16"),
    ],
)
def test_auto_dtype_by_compute_capability(monkeypatch, name, capability, expected) -> None:
    fake_card(monkeypatch, name, capability)
    assert resolve_dtype("auto", CUDA) == expected


def test_bf16_asked_for_on_a_t4_is_refused_in_one_line(monkeypatch) -> None:
    fake_card(monkeypatch, "Tesla T4", (7, 5))
    with pytest.raises(EngineError) as info:
        resolve_dtype("bf16", CUDA)
    message = str(info.value)
    assert "\n" not in message and info.value.kind == "dtype"
    assert "Tesla T4 (compute capability 7.5)" in message and "fp16" in message
    assert resolve_dtype("fp16", CUDA) == "fp16"


@pytest.mark.parametrize("spec", CATALOG, ids=lambda s: s.name)
def test_the_engine_and_the_planner_pick_the_same_dtype(monkeypatch, spec) -> None:
    fake_card(monkeypatch, spec.name, spec.compute_capability)
    auto = apply_overrides(load_preset("small"), {"train.dtype": "auto"})
    assert resolve_dtype("auto", CUDA) == training_dtype(auto, spec)


@pytest.mark.parametrize(
    ("name", "tf32_tflops"),
    [("H100", 494.5), ("A100-80GB", 156), ("L4", 60.5), ("RTX-4090", 82.5), ("B200", 1125)],
)
def test_fp32_peak_is_the_tf32_peak_on_ampere_and_newer(name: str, tf32_tflops: float) -> None:
    spec = lookup_gpu(name)
    assert spec.peak_flops("fp32") == pytest.approx(tf32_tflops * 1e12)
    assert spec.peak_flops("fp32", tf32=False) == spec.fp32_tflops * 1e12


def test_cards_without_tf32_keep_the_plain_fp32_peak() -> None:
    for name in ("T4", "V100"):
        spec = lookup_gpu(name)
        assert spec.tf32_tflops is None
        assert spec.peak_flops("fp32") == spec.fp32_tflops * 1e12


def test_the_engine_divides_fp32_mfu_by_the_tf32_peak(monkeypatch) -> None:
    fake_card(monkeypatch, "NVIDIA H100 80GB HBM3", (9, 0))
    name, memory, peak = setup.gpu_facts(CUDA, "fp32")
    assert name == "NVIDIA H100 80GB HBM3" and memory == 16 * GIB
    # 67 TFLOP/s would make a 100 TFLOP/s fp32 run read 150% MFU
    assert peak == pytest.approx(494.5e12)


def test_an_fp32_eta_on_an_h100_uses_the_tf32_peak() -> None:
    h100 = lookup_gpu("H100")
    fp32 = apply_overrides(load_preset("small"), {"train.dtype": "fp32"})
    bf16 = apply_overrides(load_preset("small"), {"train.dtype": "bf16"})
    # TF32 runs at half the bf16 rate: the fp32 ETA is twice the bf16 one, not 989/67 = 15x
    assert eta_seconds(fp32, h100) == pytest.approx(2 * eta_seconds(bf16, h100))


def test_the_run_records_its_gpus_uuid_as_nvml_writes_it(monkeypatch) -> None:
    import uuid

    card = uuid.UUID("2aaaa111-1222-2333-3444-455556666222")
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda device=None: SimpleNamespace(uuid=card)
    )
    assert setup.gpu_uuid(CUDA) == "GPU-2aaaa111-1222-2333-3444-455556666222"
    assert setup.gpu_uuid(torch.device("cpu")) is None
