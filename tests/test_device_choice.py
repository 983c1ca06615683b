"""The child's device choice: auto falls back to the CPU, and says so when it was given GPUs."""

from __future__ import annotations

import pytest
import torch

from cockpit.train.runtime import Dist, gpus_granted, resolve_device

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")


@pytest.mark.parametrize(
    ("visible", "granted"),
    [(None, False), ("", False), ("-1", False), ("NoDevFiles", False), ("0", True), ("1,3", True)],
)
def test_only_a_named_gpu_counts_as_granted(monkeypatch, visible, granted):
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert gpus_granted() is granted


def test_auto_with_granted_gpus_but_no_cuda_trains_on_the_cpu_and_says_so(monkeypatch, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert resolve_device("auto", Dist()).type == "cpu"
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("gpt-cockpit: CUDA_VISIBLE_DEVICES=0 gives this run GPUs but torch")
    assert line.endswith("sees no CUDA device: training on the CPU")


def test_no_word_when_no_gpu_was_granted_or_the_cpu_was_asked_for(monkeypatch, capsys):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert resolve_device("auto", Dist()).type == "cpu"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert resolve_device("cpu", Dist()).type == "cpu"
    assert capsys.readouterr().err == ""
