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

from cockpit.plan.estimate import training_dtype
from cockpit.plan.gpu import CATALOG, GIB
from cockpit.plan.presets import apply_overrides, load_preset
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
