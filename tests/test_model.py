"""Models: exact parameter counts, loss at init, causality, sampling, tying and param groups."""

from __future__ import annotations

import math

import pytest
import torch

from cockpit.presets import ModelConfig
from cockpit.train.model import build_model


def n_params(model: torch.nn.Module) -> int:
    """Distinct parameters (a tied weight counts once, as nanoGPT counts it)."""
    return sum(p.numel() for p in model.parameters())


def on_meta(cfg: ModelConfig) -> torch.nn.Module:
    with torch.device("meta"):
        return build_model(cfg)


def tiny(arch: str, **kw) -> ModelConfig:
    base = dict(arch=arch, n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=64)
    if arch == "bdh":
        base["mlp_internal_dim_multiplier"] = 4
    base.update(kw)
    return ModelConfig(**base)


def gpt_formula(cfg: ModelConfig) -> int:
    C, L, V, T, r, b = (
        cfg.n_embd,
        cfg.n_layer,
        cfg.vocab_size,
        cfg.block_size,
        cfg.mlp_ratio,
        int(cfg.bias),
    )
    per_layer = (
        2 * C * (1 + b)
        + C * 3 * C
        + 3 * C * b
        + C * C
        + C * b
        + C * r * C
        + r * C * b
        + r * C * C
        + C * b
    )
    return V * C + T * C + L * per_layer + C * (1 + b) + (0 if cfg.tie_embeddings else V * C)


def golf_formula(cfg: ModelConfig) -> int:
    C, L, V, H, r = cfg.n_embd, cfg.n_layer, cfg.vocab_size, cfg.n_head, cfg.mlp_ratio
    K = (cfg.n_kv_head or H) * (C // H)
    per_layer = C * C + 2 * C * K + C * C + H + 2 * C * r * C + C + C + 2 * C
    return (
        V * C + min(L // 2, L - L // 2) * C + L * per_layer + (0 if cfg.tie_embeddings else V * C)
    )


def bdh_formula(cfg: ModelConfig) -> int:
    C, H, V = cfg.n_embd, cfg.n_head, cfg.vocab_size
    N = cfg.mlp_internal_dim_multiplier * C // H
    return 3 * H * C * N + 2 * V * C


def test_gpt2_124m_matches_nanogpt() -> None:
    cfg = ModelConfig(
        arch="gpt", n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257, bias=True
    )
    model = on_meta(cfg)
    assert n_params(model) == 124_439_808
    # nanoGPT reports parameters without wpe: "123.65M"
    assert n_params(model) - 1024 * 768 == 123_653_376
    assert gpt_formula(cfg) == 124_439_808


def test_shakespeare_char_matches_nanogpt() -> None:
    cfg = ModelConfig(
        arch="gpt", n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=65, bias=False
    )
    model = on_meta(cfg)
    assert round((n_params(model) - 256 * 384) / 1e6, 2) == 10.65  # nanoGPT prints 10.65M


def test_golf_baseline_count() -> None:
    # parameter-golf baseline: 9 layers, width 512, 8 heads, 4 kv heads, relu^2 MLP x2, vocab 1024, tied
    cfg = ModelConfig(
        arch="golf",
        n_layer=9,
        n_head=8,
        n_kv_head=4,
        n_embd=512,
        block_size=1024,
        vocab_size=1024,
        mlp_ratio=2,
    )
    assert n_params(on_meta(cfg)) == 17_059_912 == golf_formula(cfg)


def test_bdh_count() -> None:
    cfg = ModelConfig(
        arch="bdh",
        n_layer=6,
        n_head=4,
        n_embd=256,
        block_size=512,
        vocab_size=256,
        mlp_internal_dim_multiplier=128,
    )
    assert n_params(on_meta(cfg)) == 25_296_896 == bdh_formula(cfg)


@pytest.mark.parametrize(
    ("arch", "kw"),
    [
        ("gpt", {}),
        ("gpt", {"bias": True, "tie_embeddings": False, "n_layer": 3, "mlp_ratio": 2}),
        ("golf", {}),
        ("golf", {"n_layer": 3, "n_head": 4, "n_kv_head": 2, "tie_embeddings": False}),
        ("golf", {"n_layer": 1}),
        ("bdh", {}),
        ("bdh", {"n_head": 4, "mlp_internal_dim_multiplier": 8, "n_layer": 3}),
    ],
)
def test_counts_follow_the_documented_formulas(arch: str, kw: dict) -> None:
    cfg = tiny(arch, **kw)
    formula = {"gpt": gpt_formula, "golf": golf_formula, "bdh": bdh_formula}[arch]
    assert n_params(build_model(cfg)) == formula(cfg)


@pytest.mark.parametrize("arch", ["gpt", "golf", "bdh"])
def test_forward_backward_and_loss_at_init(arch: str) -> None:
    torch.manual_seed(0)
    cfg = tiny(arch)
    model = build_model(cfg)
    x = torch.randint(0, cfg.vocab_size, (4, cfg.block_size))
    y = torch.randint(0, cfg.vocab_size, (4, cfg.block_size))
    logits, loss = model(x, y)
    assert logits.shape == (4, cfg.block_size, cfg.vocab_size)
    assert abs(loss.item() - math.log(cfg.vocab_size)) < 0.15
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("arch", ["gpt", "golf", "bdh"])
def test_last_position_only_without_targets(arch: str) -> None:
    torch.manual_seed(0)
    cfg = tiny(arch)
    model = build_model(cfg).eval()
    x = torch.randint(0, cfg.vocab_size, (2, 10))
    last, loss = model(x)
    full, _ = model(x, torch.zeros_like(x))
    assert loss is None and last.shape == (2, 1, cfg.vocab_size)
    torch.testing.assert_close(last[:, 0], full[:, -1], rtol=1e-4, atol=1e-5)


def test_ignore_index_minus_one() -> None:
    torch.manual_seed(0)
    cfg = tiny("gpt")
    model = build_model(cfg).eval()
    x = torch.randint(0, cfg.vocab_size, (1, 8))
    y = torch.randint(0, cfg.vocab_size, (1, 8))
    masked = y.clone()
    masked[0, 4:] = -1
    logits, loss = model(x, masked)
    expected = torch.nn.functional.cross_entropy(logits[0, :4], y[0, :4])
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("arch", ["gpt", "golf", "bdh"])
def test_causal(arch: str) -> None:
    torch.manual_seed(0)
    cfg = tiny(arch)
    model = build_model(cfg).eval()
    # golf zero-inits its output projections; perturb so attention actually carries information
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x = torch.randint(0, cfg.vocab_size, (1, cfg.block_size))
    x2 = x.clone()
    x2[0, 10] = (x[0, 10] + 1) % cfg.vocab_size
    a, _ = model(x, torch.zeros_like(x))
    b, _ = model(x2, torch.zeros_like(x2))
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])  # the change is seen from its position on


@pytest.mark.parametrize("arch", ["gpt", "golf", "bdh"])
def test_generate_shape_and_crop(arch: str) -> None:
    torch.manual_seed(0)
    cfg = tiny(arch)
    model = build_model(cfg).eval()
    idx = torch.randint(0, cfg.vocab_size, (2, 3))
    out = model.generate(idx, cfg.block_size + 2, temperature=0.8, top_k=5)  # runs past block_size
    assert out.shape == (2, 3 + cfg.block_size + 2)
    assert torch.equal(out[:, :3], idx)
    limited = model.generate(idx, 8, vocab_limit=7)
    assert int(limited[:, 3:].max()) < 7


def test_tied_weights_share_storage() -> None:
    gpt = build_model(tiny("gpt"))
    assert gpt.lm_head.weight is gpt.transformer.wte.weight
    assert gpt.lm_head.weight.data_ptr() == gpt.transformer.wte.weight.data_ptr()
    untied = build_model(tiny("gpt", tie_embeddings=False))
    assert untied.lm_head.weight.data_ptr() != untied.transformer.wte.weight.data_ptr()
    assert untied.lm_head.bias is None
    golf = build_model(tiny("golf"))
    assert golf.lm_head is None  # the head reads tok_emb's weight
    assert build_model(tiny("golf", tie_embeddings=False)).lm_head.weight.shape == (64, 32)


def test_gpt_layernorm_without_bias_and_init() -> None:
    torch.manual_seed(0)
    cfg = tiny("gpt", n_layer=8, n_embd=64, vocab_size=512)
    model = build_model(cfg)
    ln = model.transformer.h[0].ln_1
    assert ln.bias is None and ln.weight.shape == (64,)
    assert model.transformer.h[0].attn.c_attn.bias is None
    std_proj = model.transformer.h[0].mlp.c_proj.weight.std().item()
    std_fc = model.transformer.h[0].mlp.c_fc.weight.std().item()
    assert abs(std_fc - 0.02) < 0.002
    assert abs(std_proj - 0.02 / math.sqrt(2 * 8)) < 0.001
    biased = build_model(tiny("gpt", bias=True))
    assert torch.count_nonzero(biased.transformer.h[0].attn.c_attn.bias) == 0


@pytest.mark.parametrize("arch", ["gpt", "golf", "bdh"])
def test_optimizer_groups_cover_every_parameter_once(arch: str) -> None:
    model = build_model(tiny(arch, bias=True))
    groups = model.optimizer_groups(0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    for g in groups:
        if g["weight_decay"] == 0.0:
            assert all(p.dim() < 2 for p in g["params"])
        else:
            assert g["weight_decay"] == 0.1 and all(p.dim() >= 2 for p in g["params"])
    torch.optim.AdamW(groups, lr=1e-3)  # accepted as AdamW param groups


@pytest.mark.parametrize("arch", ["gpt", "golf", "bdh"])
def test_activation_checkpointing_same_gradients(arch: str) -> None:
    torch.manual_seed(0)
    cfg = tiny(arch)
    model = build_model(cfg)
    x = torch.randint(0, cfg.vocab_size, (2, cfg.block_size))
    grads = []
    for enabled in (False, True):
        model.zero_grad()
        model.set_activation_checkpointing(enabled)
        _, loss = model(x, x)
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_golf_softcap_bounds_logits() -> None:
    torch.manual_seed(0)
    model = build_model(tiny("golf", logit_softcap=2.0))
    with torch.no_grad():
        model.tok_emb.weight.mul_(1000)
    logits, _ = model(torch.randint(0, 64, (1, 8)), torch.zeros(1, 8, dtype=torch.long))
    assert logits.abs().max() <= 2.0 and logits.abs().max() > 1.9


def test_too_long_sequence_and_unknown_arch() -> None:
    model = build_model(tiny("gpt"))
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(NotImplementedError, match="nope"):
        build_model(ModelConfig(arch="nope"))


def test_bdh_rotary_is_relative() -> None:
    # scores between rotated copies of one vector depend only on the distance between positions
    model = build_model(tiny("bdh", rope_base=65536.0))
    v = torch.randn(1, 1, 1, model.N).expand(1, 1, 12, model.N).contiguous()
    r = model._rope(v)
    scores = r[0, 0] @ r[0, 0].T
    torch.testing.assert_close(
        torch.diagonal(scores, 3), torch.full((9,), float(scores[0, 3])), rtol=1e-4, atol=1e-4
    )
    torch.testing.assert_close(r[0, 0, 0], v[0, 0, 0])  # position 0 is not rotated
