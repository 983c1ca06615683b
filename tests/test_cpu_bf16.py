"""bf16 on CPU: attention kept in float32 under CPU autocast (model.causal_attention), the
linears in bf16, and the engine's one-line `cpu_dtype` tip on an fp32 run where AMX is present."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cockpit.plan.presets import ModelConfig
from cockpit.train import runtime
from cockpit.train.models import build_model, causal_attention
from tests.tiny_runs import events_of, make_run, train_in_process


def _qkv(dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, 3, 16, 8, generator=g).to(dtype).requires_grad_() for _ in range(3)]


def test_without_autocast_it_is_plain_causal_sdpa() -> None:
    q, k, v = _qkv()
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.equal(causal_attention(q, k, v), expected)


def test_under_cpu_bf16_autocast_attention_runs_in_float32() -> None:
    q, k, v = _qkv(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = causal_attention(q, k, v)
    assert y.dtype == torch.bfloat16  # what the bf16 projection after it expects
    exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    assert torch.equal(y, exact.to(torch.bfloat16))  # fp32 math, rounded once at the end
    y.float().sum().backward()
    assert q.grad is not None and q.grad.dtype == torch.bfloat16
    assert torch.isfinite(q.grad.float()).all()


@pytest.mark.parametrize("arch", ["gpt", "golf"])
def test_a_bf16_step_on_cpu_stays_near_the_fp32_loss_and_learns(arch: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=64)
    model = build_model(cfg)
    x = torch.randint(0, 64, (4, 16))
    fp32 = model(x, x)[1].item()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(x, x)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert abs(losses[0] - fp32) < 0.02 * fp32
    assert losses[-1] < 0.8 * losses[0]


def _tiny_run(tmp_path: Path, *overrides: str) -> Path:
    run = make_run(tmp_path, "train.max_steps=2", "train.eval_interval=0", *overrides)
    assert train_in_process(run).returncode == 0
    return run


def _cpu_dtype_tips(run: Path) -> list[dict]:
    return [w for w in events_of(run, "warning") if w["rule"] == "cpu_dtype"]


def test_an_fp32_cpu_run_with_amx_gets_one_info_tip(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(runtime, "cpu_has_amx", lambda: True)
    tips = _cpu_dtype_tips(_tiny_run(tmp_path, "train.dtype=fp32"))
    assert len(tips) == 1
    assert tips[0]["severity"] == "info" and "train.dtype=bf16" in tips[0]["tip"]


@pytest.mark.parametrize(("amx", "dtype"), [(False, "fp32"), (True, "bf16")])
def test_no_tip_without_amx_or_when_already_bf16(
    tmp_path: Path, monkeypatch, amx: bool, dtype: str
) -> None:
    monkeypatch.setattr(runtime, "cpu_has_amx", lambda: amx)
    assert _cpu_dtype_tips(_tiny_run(tmp_path, f"train.dtype={dtype}")) == []
