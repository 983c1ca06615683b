"""Models, every architecture on CPU: exact parameter counts, loss at init, learning, causality,
sampling, tying, param groups, activation checkpointing, dropout."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from cockpit.plan.presets import ModelConfig
from cockpit.train.models import BDH, GPT, GolfGPT, build_model

VOCAB = 64
BLOCK = 32

# One small config per architecture: gpt with biases, golf with grouped-query attention, an odd
# number of layers (a U-Net skip left over) and a logit softcap, bdh with a small multiplier.
TINY = {
    "gpt": ModelConfig(
        arch="gpt", n_layer=2, n_head=2, n_embd=32, block_size=BLOCK, vocab_size=VOCAB, bias=True
    ),
    "golf": ModelConfig(
        arch="golf",
        n_layer=3,
        n_head=4,
        n_kv_head=2,
        n_embd=32,
        block_size=BLOCK,
        vocab_size=VOCAB,
        logit_softcap=30.0,
    ),
    "bdh": ModelConfig(
        arch="bdh",
        n_layer=2,
        n_head=2,
        n_embd=32,
        block_size=BLOCK,
        vocab_size=VOCAB,
        mlp_internal_dim_multiplier=4,
    ),
}
ARCHS = sorted(TINY)


def tiny(arch: str, **changes: object) -> ModelConfig:
    return ModelConfig(**{**TINY[arch].__dict__, **changes})


def build(arch: str, seed: int = 0, **changes: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(tiny(arch, **changes))


def batch(seed: int = 1, b: int = 3, t: int = BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    data = torch.randint(0, VOCAB, (b, t + 1), generator=g)
    return data[:, :-1], data[:, 1:]


def n_params(model: torch.nn.Module) -> int:
    """Distinct parameters (a tied weight counts once, as nanoGPT counts it)."""
    return sum(p.numel() for p in model.parameters())


def on_meta(cfg: ModelConfig) -> torch.nn.Module:
    with torch.device("meta"):
        return build_model(cfg)


# --------------------------------------------------------------------------- parameter counts


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


FORMULA_BASE = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=64)


@pytest.mark.parametrize(
    ("arch", "kw"),
    [
        ("gpt", {}),
        ("gpt", {"bias": True, "tie_embeddings": False, "n_layer": 3, "mlp_ratio": 2}),
        ("golf", {}),
        ("golf", {"n_layer": 3, "n_head": 4, "n_kv_head": 2, "tie_embeddings": False}),
        ("golf", {"n_layer": 1}),
        ("bdh", {"mlp_internal_dim_multiplier": 4}),
        ("bdh", {"n_head": 4, "mlp_internal_dim_multiplier": 8, "n_layer": 3}),
    ],
)
def test_counts_follow_the_documented_formulas(arch: str, kw: dict) -> None:
    cfg = ModelConfig(arch=arch, **{**FORMULA_BASE, **kw})
    formula = {"gpt": gpt_formula, "golf": golf_formula, "bdh": bdh_formula}[arch]
    assert n_params(build_model(cfg)) == formula(cfg)


def test_arch_names_map_to_their_classes() -> None:
    assert isinstance(build("gpt"), GPT)
    assert isinstance(build("golf"), GolfGPT)
    assert isinstance(build("bdh"), BDH)
    with pytest.raises(NotImplementedError, match="nope"):
        build_model(ModelConfig(arch="nope"))


# --------------------------------------------------------------------------- forward and backward


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_backward_and_loss_at_init(arch: str) -> None:
    model = build(arch)
    x, y = batch()
    logits, loss = model(x, y)
    assert logits.shape == (3, BLOCK, VOCAB)
    assert loss is not None and loss.ndim == 0
    assert abs(loss.item() - math.log(VOCAB)) < 0.15, loss.item()  # near uniform
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("arch", ARCHS)
def test_last_position_only_without_targets(arch: str) -> None:
    model = build(arch)
    x, _ = batch()
    last, loss = model(x)
    assert loss is None and last.shape == (3, 1, VOCAB)
    model.eval()
    for length in (10, BLOCK):  # shorter than the context, and all of it
        last, _ = model(x[:, :length])
        full, _ = model(x[:, :length], torch.zeros_like(x[:, :length]))
        torch.testing.assert_close(last[:, 0], full[:, -1], rtol=1e-4, atol=1e-5)


def test_ignore_index_minus_one() -> None:
    model = build("gpt").eval()
    x, y = batch(b=1, t=8)
    masked = y.clone()
    masked[0, 4:] = -1
    logits, loss = model(x, masked)
    expected = torch.nn.functional.cross_entropy(logits[0, :4], y[0, :4])
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_few_steps_on_one_batch_lower_the_loss(arch: str) -> None:
    model = build(arch)
    opt = torch.optim.AdamW(model.optimizer_groups(0.0), lr=3e-3)
    x, y = batch()
    first = None
    for _ in range(25):
        _, loss = model(x, y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 0.5, (first, loss.item())


@pytest.mark.parametrize("arch", ARCHS)
def test_changing_a_future_token_leaves_earlier_logits_unchanged(arch: str) -> None:
    model = build(arch).eval()
    # golf zero-inits its output projections; perturb so attention actually carries information
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x, y = batch(b=2)
    cut = 20
    changed = x.clone()
    changed[:, cut] = (changed[:, cut] + 7) % VOCAB
    changed[:, cut + 5 :] = (changed[:, cut + 5 :] + 3) % VOCAB
    with torch.no_grad():
        a, _ = model(x, y)
        b, _ = model(changed, y)
    torch.testing.assert_close(a[:, :cut], b[:, :cut])
    # the change is visible from its position on
    assert not torch.allclose(a[:, cut:], b[:, cut:], atol=1e-5)


def test_gpt_rejects_a_sequence_longer_than_block_size() -> None:
    model = build("gpt")
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros((1, BLOCK + 1), dtype=torch.long))


def test_golf_softcap_bounds_logits() -> None:
    model = build("golf", logit_softcap=2.0)
    with torch.no_grad():
        model.tok_emb.weight.mul_(1000)
    logits, _ = model(torch.randint(0, VOCAB, (1, 8)), torch.zeros(1, 8, dtype=torch.long))
    assert logits.abs().max() <= 2.0 and logits.abs().max() > 1.9


def test_bdh_rotary_is_relative() -> None:
    # scores between rotated copies of one vector depend only on the distance between positions
    model = build("bdh", rope_base=65536.0)
    v = torch.randn(1, 1, 1, model.N).expand(1, 1, 12, model.N).contiguous()
    r = model._rope(v, *model._rope_tables(12, v.device))
    scores = r[0, 0] @ r[0, 0].T
    torch.testing.assert_close(
        torch.diagonal(scores, 3), torch.full((9,), float(scores[0, 3])), rtol=1e-4, atol=1e-4
    )
    torch.testing.assert_close(r[0, 0, 0], v[0, 0, 0])  # position 0 is not rotated


def test_dropout_changes_training_but_not_eval() -> None:
    model = build("gpt", dropout=0.5)
    x, y = batch()
    model.train()
    torch.manual_seed(0)
    a = model(x, y)[1]
    torch.manual_seed(1)
    b = model(x, y)[1]
    assert not torch.allclose(a, b)
    model.eval()
    assert torch.allclose(model(x, y)[1], model(x, y)[1])


# --------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("arch", ARCHS)
def test_generate_shape_and_context_cropped_to_block_size(arch: str) -> None:
    model = build(arch).eval()
    # a short prompt, generated past block_size
    idx = torch.randint(0, VOCAB, (2, 3))
    out = model.generate(idx, BLOCK + 2, temperature=0.8, top_k=5)
    assert out.shape == (2, 3 + BLOCK + 2)
    assert torch.equal(out[:, :3], idx)
    limited = model.generate(idx, 8, vocab_limit=7)
    assert int(limited[:, 3:].max()) < 7
    # a prompt already longer than the context: each step sees only the last block_size tokens
    seen: list[int] = []
    inner = model.logits_for

    def spy(idx: torch.Tensor, last_only: bool) -> torch.Tensor:
        seen.append(idx.size(1))
        return inner(idx, last_only)

    model.logits_for = spy  # type: ignore[method-assign]
    start = torch.randint(0, VOCAB, (2, BLOCK + 5))
    out = model.generate(start, max_new_tokens=6, temperature=0.8, top_k=5)
    assert out.shape == (2, BLOCK + 11)
    assert torch.equal(out[:, : BLOCK + 5], start)
    assert seen == [BLOCK] * 6
    assert int(out.max()) < VOCAB and int(out.min()) >= 0


def test_top_k_one_is_greedy() -> None:
    model = build("gpt").eval()
    start = torch.zeros((1, 4), dtype=torch.long)
    torch.manual_seed(1)
    a = model.generate(start, max_new_tokens=8, top_k=1)
    torch.manual_seed(2)
    b = model.generate(start, max_new_tokens=8, top_k=1)
    assert torch.equal(a, b)  # greedy: the seed does not matter


# --------------------------------------------------------------------------- weights and training set-up


def test_tied_weights_share_storage_and_count_once() -> None:
    tied = build("gpt")
    assert tied.lm_head.weight is tied.transformer.wte.weight
    assert tied.lm_head.weight.data_ptr() == tied.transformer.wte.weight.data_ptr()
    untied = build("gpt", tie_embeddings=False)
    assert untied.lm_head.weight.data_ptr() != untied.transformer.wte.weight.data_ptr()
    assert untied.lm_head.bias is None
    assert n_params(untied) - n_params(tied) == VOCAB * 32
    # a step through the tied head moves the embedding too
    x, y = batch()
    _, loss = tied(x, y)
    loss.backward()
    assert tied.transformer.wte.weight.grad is tied.lm_head.weight.grad
    golf = build("golf")
    assert golf.lm_head is None  # tied: the head reads tok_emb's weight
    golf_untied = build("golf", tie_embeddings=False)
    assert golf_untied.lm_head.weight.shape == (VOCAB, 32)
    assert golf_untied.lm_head.weight.data_ptr() != golf_untied.tok_emb.weight.data_ptr()


def test_gpt_layernorm_without_bias_and_init() -> None:
    torch.manual_seed(0)
    cfg = tiny("gpt", bias=False, n_layer=8, n_embd=64, vocab_size=512)
    model = build_model(cfg)
    ln = model.transformer.h[0].ln_1
    assert ln.bias is None and ln.weight.shape == (64,)
    assert model.transformer.h[0].attn.c_attn.bias is None
    std_proj = model.transformer.h[0].mlp.c_proj.weight.std().item()
    std_fc = model.transformer.h[0].mlp.c_fc.weight.std().item()
    assert abs(std_fc - 0.02) < 0.002
    assert abs(std_proj - 0.02 / math.sqrt(2 * 8)) < 0.001
    biased = build("gpt", bias=True)
    assert torch.count_nonzero(biased.transformer.h[0].attn.c_attn.bias) == 0


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("tie", [True, False])
def test_optimizer_groups_cover_every_parameter_once(arch: str, tie: bool) -> None:
    model = build(arch, bias=True, tie_embeddings=tie)
    groups = model.optimizer_groups(0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert set(ids) == {id(p) for p in model.parameters()}
    for g in groups:
        if g["weight_decay"] == 0.0:  # biases, norms and gains are not decayed
            assert all(p.dim() < 2 for p in g["params"])
        else:
            assert g["weight_decay"] == 0.1 and all(p.dim() >= 2 for p in g["params"])
    torch.optim.AdamW(groups, lr=1e-3)  # AdamW refuses a parameter listed twice


@pytest.mark.parametrize("arch", ARCHS)
def test_activation_checkpointing_gives_the_same_loss_and_gradients(arch: str) -> None:
    x, y = batch()
    results = []
    for enabled in (False, True):
        model = build(arch, seed=3).train()
        model.set_activation_checkpointing(enabled)
        _, loss = model(x, y)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], msg=name)
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-6, rtol=1e-4), name


def _bdh_reference_logits(model: BDH, idx: torch.Tensor) -> torch.Tensor:
    """The BDH forward as written before: `x @ encoder` broadcast over the batch, RoPE rebuilt per layer."""
    import torch.nn.functional as F

    def rope(v):
        T, N = v.size(-2), v.size(-1)
        j = torch.arange(N, dtype=torch.float32)
        freqs = 1.0 / (model.rope_base ** ((j / 2).floor() * 2 / N)) / (2 * math.pi)
        phases = ((torch.arange(T, dtype=torch.float32)[:, None] * freqs) % 1) * (2 * math.pi)
        v_rot = torch.stack((-v[..., 1::2], v[..., ::2]), dim=-1).view(*v.size())
        return v * phases.cos() + v_rot * phases.sin()

    x = F.layer_norm(model.embed(idx).unsqueeze(1), (model.embed.embedding_dim,))
    for _ in range(model.n_layer):
        B, _, T, D = x.shape
        x_sparse = F.relu(x @ model.encoder)
        qr = rope(x_sparse)
        yKV = F.layer_norm((qr @ qr.transpose(-1, -2)).tril(diagonal=-1) @ x, (D,))
        xy = x_sparse * F.relu(yKV @ model.encoder_v)
        yMLP = xy.transpose(1, 2).reshape(B, 1, T, model.N * model.n_head) @ model.decoder
        x = F.layer_norm(x + F.layer_norm(yMLP, (D,)), (D,))
    return x.squeeze(1) @ model.lm_head


def test_bdh_without_the_batch_expanded_weights_computes_what_it_computed_before() -> None:
    torch.manual_seed(0)
    cfg = replace(TINY["bdh"], dropout=0.0)
    model = BDH(cfg).eval()
    idx = torch.randint(0, cfg.vocab_size, (3, 16))
    logits, _ = model(idx, idx)
    reference = _bdh_reference_logits(model, idx)
    assert torch.allclose(logits, reference, rtol=1e-4, atol=1e-5)
    # and the gradients of every weight agree
    grads = torch.autograd.grad(logits.square().sum(), list(model.parameters()))
    ref_grads = torch.autograd.grad(reference.square().sum(), list(model.parameters()))
    for g, r in zip(grads, ref_grads, strict=True):
        assert torch.allclose(g, r, rtol=1e-3, atol=1e-5)
