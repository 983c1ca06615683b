"""The shipped preset files: each loads, says what it is, and holds its seed's numbers."""

from __future__ import annotations

import json
import re

import pytest

from cockpit.plan.estimate import count_params, estimate, suggest_batch
from cockpit.plan.gpu import lookup_gpu
from cockpit.plan.presets import (
    builtin_dir,
    list_presets,
    load_preset,
    load_preset_file,
    preset_from_dict,
    preset_problems,
    validate,
)

FILES = sorted(builtin_dir().glob("*.json"))
NAMES = [p.stem for p in FILES]

EXPECTED_NAMES = {
    "tiny",
    "tiny_char",
    "small",
    "small_char",
    "150M",
    "200M",
    "250M",
    "150M_1024",
    "200M_1024",
    "250M_1024",
    "350M_1024",
    "500M_1024",
    "gpt2_124m",
    "tiny_gpt_50m",
    "golf_baseline",
    "bdh_8gb",
    "bdh_14gb",
    "bdh_24gb",
    "bdh_reference",
    "shakespeare_char",
}

# name: (arch, layers, heads, width, block, batch, tokenizer, vocab) from the seeds
SHAPES = {
    "tiny": ("gpt", 4, 4, 192, 128, 16, "gpt2", 50304),
    "tiny_char": ("gpt", 4, 4, 192, 128, 16, "char", 256),
    "small": ("gpt", 6, 6, 384, 256, 32, "gpt2", 50304),
    "small_char": ("gpt", 6, 6, 384, 256, 32, "char", 256),
    "150M": ("gpt", 16, 12, 768, 256, 32, "gpt2", 50304),
    "200M": ("gpt", 16, 14, 896, 256, 32, "gpt2", 50304),
    "250M": ("gpt", 16, 16, 1024, 256, 32, "gpt2", 50304),
    "150M_1024": ("gpt", 16, 12, 768, 1024, 24, "gpt2", 50304),
    "200M_1024": ("gpt", 16, 14, 896, 1024, 20, "gpt2", 50304),
    "250M_1024": ("gpt", 16, 16, 1024, 1024, 16, "gpt2", 50304),
    "350M_1024": ("gpt", 24, 16, 1024, 1024, 12, "gpt2", 50304),
    "500M_1024": ("gpt", 24, 16, 1280, 1024, 8, "gpt2", 50304),
    "gpt2_124m": ("gpt", 12, 12, 768, 1024, 32, "gpt2", 50304),
    "tiny_gpt_50m": ("gpt", 8, 8, 512, 512, 48, "gpt2", 50304),
    "golf_baseline": ("golf", 9, 8, 512, 1024, 64, "pretokenized", 1024),
    "bdh_8gb": ("bdh", 4, 4, 192, 256, 8, "byte", 256),
    "bdh_14gb": ("bdh", 6, 4, 256, 384, 16, "byte", 256),
    "bdh_24gb": ("bdh", 8, 8, 512, 1024, 32, "byte", 256),
    "bdh_reference": ("bdh", 6, 4, 256, 512, 32, "byte", 256),  # pathwaycom/bdh's defaults
    "shakespeare_char": ("gpt", 4, 4, 128, 64, 12, "char", 256),
}


def test_every_named_preset_ships():
    assert EXPECTED_NAMES <= set(NAMES)
    assert set(SHAPES) == EXPECTED_NAMES


@pytest.mark.parametrize("path", FILES, ids=NAMES)
def test_file_loads_as_a_described_builtin(path):
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw["name"] == path.stem  # the file name and the name inside agree
    preset = load_preset_file(path, builtin=True)
    assert load_preset(path.stem) == preset
    assert len(preset.description) > 40 and preset.description.strip() == preset.description
    assert preset.trainable[0]


def test_every_listed_preset_is_a_valid_builtin_that_round_trips():
    listed = list_presets()
    assert preset_problems() == []
    assert len(listed) >= 15
    for preset in listed:
        assert preset.builtin and preset.description, preset.name
        validate(preset)
        assert preset_from_dict(preset.to_dict()) == preset
        assert load_preset(preset.name) == preset


@pytest.mark.parametrize("path", FILES, ids=NAMES)
def test_description_gives_the_exact_parameter_count(path):
    preset = load_preset_file(path, builtin=True)
    assert f"{count_params(preset.model):,}" in preset.description


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shape_matches_the_seed(name):
    arch, layers, heads, width, block, batch, tokenizer, vocab = SHAPES[name]
    p = load_preset(name)
    m = p.model
    assert (m.arch, m.n_layer, m.n_head, m.n_embd, m.block_size) == (
        arch,
        layers,
        heads,
        width,
        block,
    )
    assert (p.data.tokenizer, m.vocab_size) == (tokenizer, vocab)
    # the seed's batch: the micro-batch, or the sequences per step where the preset splits it to fit
    assert batch in (p.train.batch_size, p.train.batch_size * p.train.grad_accum)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_stated_counts_that_differ_are_explained(name):
    description = load_preset(name).description
    stated = re.search(r"states (~[\d.]+M)", description)
    if stated:  # seed 003's approximate counts sit beside the exact one
        assert "exact count" in description


def test_gpt2_124m_is_seed_000s_recipe():
    p = load_preset("gpt2_124m")
    t, m = p.train, p.model
    assert (t.lr, t.min_lr, t.warmup_steps, t.weight_decay, t.grad_clip) == (
        6e-4,
        6e-5,
        200,
        0.1,
        1.0,
    )
    assert 2000 <= t.max_steps <= 4000 and t.schedule == "cosine"
    assert (m.bias, m.dropout, m.block_size) == (False, 0.0, 1024)
    assert p.tokens_per_step >= 32 * 1024


def test_tiny_gpt_50m_is_seed_002s_plan():
    p = load_preset("tiny_gpt_50m")
    t = p.train
    assert t.batch_size * t.grad_accum == 192
    assert (t.lr, t.min_lr, t.warmup_steps, t.max_steps) == (3e-4, 3e-5, 1000, 60000)
    assert "50M" in p.description  # the plan's own count, explained beside the exact one


def test_golf_baseline_is_seed_001s():
    p = load_preset("golf_baseline")
    m, t = p.model, p.train
    assert (
        m.n_kv_head,
        m.mlp_ratio,
        m.tie_embeddings,
        m.rope_base,
        m.logit_softcap,
        m.qk_gain_init,
    ) == (4, 2, True, 10000.0, 30.0, 1.5)
    assert p.tokens_per_step == 524288
    assert (t.schedule, t.warmdown_steps, t.max_steps, t.max_time_s) == (
        "warmdown",
        1200,
        20000,
        600.0,
    )
    assert (t.beta1, t.beta2, t.grad_clip) == (0.9, 0.95, 0.0)


@pytest.mark.parametrize("name, mult", [("bdh_8gb", 64), ("bdh_14gb", 96), ("bdh_24gb", 128)])
def test_bdh_presets_are_seed_004s(name, mult):
    p = load_preset(name)
    assert p.model.mlp_internal_dim_multiplier == mult
    assert (p.model.dropout, p.train.lr, p.train.weight_decay, p.train.max_steps) == (
        0.1,
        1e-3,
        0.1,
        3000,
    )


def test_shakespeare_char_is_nanogpts_cpu_recipe():
    p = load_preset("shakespeare_char")
    t = p.train
    assert (p.model.dropout, t.lr, t.min_lr, t.warmup_steps, t.max_steps) == (
        0.0,
        1e-3,
        1e-4,
        100,
        2000,
    )
    assert (t.beta2, t.weight_decay, t.grad_clip, t.eval_interval, t.eval_steps, t.dtype) == (
        0.99,
        0.1,
        1.0,
        250,
        20,
        "fp32",
    )


def test_the_big_gpu_presets_fit_where_their_names_say():
    # seed 003: 350M_1024 for 16 GB+, 500M_1024 for 24 GB+ (with a suggested micro-batch)
    for name, gpu in (("350M_1024", "T4"), ("500M_1024", "RTX-4090")):
        suggestion = suggest_batch(load_preset(name), lookup_gpu(gpu))
        assert suggestion.micro_batch >= 1 and "even a micro-batch of 1" not in suggestion.reason
    # and every preset fits an 80 GB GPU at its suggested micro-batch
    a100 = lookup_gpu("A100-80GB")
    for name in SHAPES:
        s = suggest_batch(load_preset(name), a100)
        assert estimate(s.apply(load_preset(name)), a100).fits, name
