"""The estimator's exact parameter count equals sum(p.numel()) of the model the engine builds."""

from __future__ import annotations

import itertools

import pytest

from cockpit.estimate import count_params, embedding_params, flops_per_token
from cockpit.presets import ModelConfig, list_presets, load_preset

torch = pytest.importorskip("torch")
model_module = pytest.importorskip("cockpit.train.model")


def built_params(cfg: ModelConfig) -> int:
    """Parameters of the real module, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = model_module.build_model(cfg)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(p.name for p in list_presets() if p.builtin))
def test_every_builtin_preset_counts_exactly(name):
    cfg = load_preset(name).model
    assert count_params(cfg) == built_params(cfg)


SMALL = (
    [
        ModelConfig(
            arch="gpt",
            n_layer=n_layer,
            n_head=2,
            n_embd=32,
            block_size=16,
            vocab_size=vocab,
            bias=bias,
            tie_embeddings=tie,
            mlp_ratio=ratio,
        )
        for n_layer, vocab, bias, tie, ratio in itertools.product(
            (1, 3), (256, 300), (False, True), (False, True), (2, 4)
        )
    ]
    + [
        ModelConfig(
            arch="golf",
            n_layer=n_layer,
            n_head=4,
            n_kv_head=kv,
            n_embd=32,
            block_size=16,
            vocab_size=64,
            tie_embeddings=tie,
            mlp_ratio=ratio,
        )
        for n_layer, kv, tie, ratio in itertools.product(
            (2, 3, 5), (0, 1, 2, 4), (False, True), (2, 3)
        )
    ]
    + [
        ModelConfig(
            arch="bdh",
            n_layer=n_layer,
            n_head=heads,
            n_embd=32,
            block_size=16,
            vocab_size=vocab,
            mlp_internal_dim_multiplier=mult,
        )
        for n_layer, heads, vocab, mult in itertools.product((1, 4), (1, 2, 4), (256, 100), (4, 16))
    ]
)


@pytest.mark.parametrize(
    "cfg",
    SMALL,
    ids=lambda c: (
        f"{c.arch}-L{c.n_layer}-h{c.n_head}-kv{c.n_kv_head}-b{int(c.bias)}-t{int(c.tie_embeddings)}-r{c.mlp_ratio}-m{c.mlp_internal_dim_multiplier}"
    ),
)
def test_small_configs_count_exactly(cfg):
    assert count_params(cfg) == built_params(cfg)


def test_gpt2_small_is_the_known_124m():
    # GPT-2 small as published: biases, 50257 rows, tied head; nanoGPT prints 123.65M, leaving out
    # the 786,432 position embeddings
    cfg = ModelConfig(
        n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257, bias=True
    )
    assert count_params(cfg) == 124_439_808
    assert embedding_params(cfg) == 1024 * 768


def test_flops_per_token_follows_6n_plus_attention():
    cfg = ModelConfig(
        n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257, bias=True
    )
    n = 124_439_808 - 1024 * 768
    assert flops_per_token(cfg) == 6 * n + 12 * 12 * 12 * 64 * 1024
    # doubling the context adds exactly the attention term again
    longer = ModelConfig(**{**cfg.__dict__, "block_size": 2048})
    extra_pos = 1024 * 768  # position embeddings are not counted in FLOPs either way
    assert flops_per_token(longer) - flops_per_token(cfg) == 12 * 12 * 12 * 64 * 1024
    assert count_params(longer) - count_params(cfg) == extra_pos


def test_unknown_arch_is_a_value_error():
    with pytest.raises(ValueError, match="unknown architecture"):
        count_params(ModelConfig(arch="rnn"))
