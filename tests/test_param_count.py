"""estimate.count_params equals sum(p.numel()) of the module the engine builds: for every
preset, a grid of small shapes and odd ones; and the published counts and FLOPs."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from cockpit.plan.estimate import count_params, embedding_params, flops_per_token
from cockpit.plan.presets import ModelConfig, Preset, list_presets, validate
from cockpit.train.models import build_model

BUILTINS = list_presets()


def built_params(cfg: ModelConfig) -> int:
    """Distinct parameters of the module build_model makes (meta device: no memory, no init cost)."""
    with torch.device("meta"):
        model = build_model(cfg)
    return sum(p.numel() for p in model.parameters())


def test_every_builtin_preset_is_listed() -> None:
    assert len(BUILTINS) >= 10
    assert all(p.builtin for p in BUILTINS)
    assert {"gpt2_124m", "golf_baseline", "shakespeare_char"} <= {p.name for p in BUILTINS}
    assert {p.model.arch for p in BUILTINS} == {"gpt", "golf", "bdh"}


@pytest.mark.parametrize("preset", BUILTINS, ids=[p.name for p in BUILTINS])
def test_every_builtin_preset_counts_exactly(preset: Preset) -> None:
    assert count_params(preset.model) == built_params(preset.model)


# --------------------------------------------------------------------------- a grid of small shapes

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
def test_small_configs_count_exactly(cfg: ModelConfig) -> None:
    assert count_params(cfg) == built_params(cfg)


# --------------------------------------------------------------------------- odd shapes


def _cfg(**kw: object) -> ModelConfig:
    """A model config that is part of a valid preset (so the odd shape is one a user can make)."""
    cfg = ModelConfig(**kw)  # type: ignore[arg-type]
    validate(
        Preset(
            name="t",
            model=cfg,
            data=dataclasses.replace(Preset(name="t").data, tokenizer="pretokenized"),
        )
    )
    return cfg


ODD = [
    # gpt: bias on/off, untied, odd layers, odd vocab, wider MLP, single head
    dict(arch="gpt", n_layer=1, n_head=1, n_embd=8, block_size=5, vocab_size=11, bias=True),
    dict(arch="gpt", n_layer=3, n_head=2, n_embd=24, block_size=17, vocab_size=97, bias=False),
    dict(
        arch="gpt",
        n_layer=5,
        n_head=3,
        n_embd=36,
        block_size=33,
        vocab_size=257,
        bias=True,
        tie_embeddings=False,
    ),
    dict(
        arch="gpt",
        n_layer=2,
        n_head=4,
        n_embd=32,
        block_size=8,
        vocab_size=50,
        bias=False,
        tie_embeddings=False,
        mlp_ratio=3,
    ),
    dict(
        arch="gpt",
        n_layer=7,
        n_head=5,
        n_embd=40,
        block_size=3,
        vocab_size=7,
        bias=True,
        mlp_ratio=1,
    ),
    # golf: GQA ratios, odd layer counts (U-Net skips), untied head
    dict(arch="golf", n_layer=2, n_head=4, n_kv_head=2, n_embd=32, block_size=16, vocab_size=64),
    dict(arch="golf", n_layer=3, n_head=4, n_kv_head=1, n_embd=32, block_size=16, vocab_size=65),
    dict(
        arch="golf",
        n_layer=9,
        n_head=8,
        n_kv_head=4,
        n_embd=64,
        block_size=16,
        vocab_size=1024,
        tie_embeddings=False,
    ),
    dict(
        arch="golf",
        n_layer=5,
        n_head=6,
        n_kv_head=0,
        n_embd=48,
        block_size=16,
        vocab_size=33,
        mlp_ratio=2,
    ),
    dict(
        arch="golf",
        n_layer=4,
        n_head=2,
        n_kv_head=2,
        n_embd=12,
        block_size=4,
        vocab_size=3,
        tie_embeddings=False,
        mlp_ratio=3,
    ),
    # bdh: head counts and multipliers, including one where N rounds down
    dict(
        arch="bdh",
        n_layer=1,
        n_head=1,
        n_embd=8,
        block_size=8,
        vocab_size=11,
        mlp_internal_dim_multiplier=1,
    ),
    dict(
        arch="bdh",
        n_layer=6,
        n_head=4,
        n_embd=32,
        block_size=8,
        vocab_size=256,
        mlp_internal_dim_multiplier=8,
    ),
    dict(
        arch="bdh",
        n_layer=3,
        n_head=3,
        n_embd=18,
        block_size=8,
        vocab_size=40,
        mlp_internal_dim_multiplier=5,
    ),
]


@pytest.mark.parametrize(
    "kw",
    ODD,
    ids=lambda kw: (
        f"{kw['arch']}-L{kw['n_layer']}-H{kw['n_head']}-C{kw['n_embd']}-V{kw['vocab_size']}"
    ),
)
def test_odd_shapes_count_exactly(kw: dict) -> None:
    cfg = _cfg(**kw)
    assert count_params(cfg) == built_params(cfg)


def test_bias_and_untying_add_what_they_should() -> None:
    base = dict(arch="gpt", n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=30)
    plain = count_params(_cfg(**base))
    # bias: 2 LayerNorm biases + c_attn 3C + attn c_proj C + c_fc 4C + mlp c_proj C per block, + ln_f C
    assert (
        count_params(_cfg(**base, bias=True)) - plain
        == 2 * (2 * 16 + 3 * 16 + 16 + 4 * 16 + 16) + 16
    )
    assert count_params(_cfg(**base, tie_embeddings=False)) - plain == 30 * 16


# --------------------------------------------------------------------------- published numbers


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
