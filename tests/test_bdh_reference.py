"""BDH's recipe: bdh_reference is pathwaycom/bdh's train.py and BDHConfig defaults exactly, and
the seed 004 presets take the reference's optimizer (seed 004 names none)."""

from __future__ import annotations

import pytest
import torch

from cockpit.plan.estimate import count_params
from cockpit.plan.presets import ModelConfig, load_preset, validate
from cockpit.train.models import build_model
from cockpit.train.optim import build_optimizer

# bdh.py BDHConfig and train.py at pathwaycom/bdh's main branch
REFERENCE_MODEL = dict(
    arch="bdh",
    n_layer=6,
    n_embd=256,
    dropout=0.1,
    n_head=4,
    mlp_internal_dim_multiplier=128,
    vocab_size=256,
    block_size=512,  # BLOCK_SIZE
    rope_base=2.0**16,  # get_freqs(N, theta=2**16)
    tie_embeddings=False,  # embed and lm_head are separate parameters
)
REFERENCE_PARAMS = 25_296_896  # sum(p.numel()) of bdh.BDH(BDHConfig())

SEED_004 = ("bdh_8gb", "bdh_14gb", "bdh_24gb")


def test_bdh_reference_is_the_reference_defaults():
    p = load_preset("bdh_reference")
    validate(p)
    m, t = p.model, p.train
    assert {k: getattr(m, k) for k in REFERENCE_MODEL} == REFERENCE_MODEL
    # BATCH_SIZE 32, MAX_ITERS 3000, LEARNING_RATE 1e-3 constant, WEIGHT_DECAY 0.1, AdamW defaults
    assert (t.batch_size, t.grad_accum, t.max_steps) == (32, 1, 3000)
    assert (t.lr, t.schedule, t.warmup_steps, t.weight_decay) == (1e-3, "constant", 0, 0.1)
    assert (t.beta1, t.beta2, t.grad_clip) == (0.9, 0.999, 0.0)
    assert (t.compile, t.dtype, t.seed, t.log_interval) == (True, "auto", 1337, 100)
    assert (p.data.tokenizer, p.data.val_fraction) == ("byte", 0.1)  # bytes, a 90/10 split
    assert count_params(m) == REFERENCE_PARAMS
    assert "pathwaycom/bdh" in p.description and "25,296,896" in p.description


@pytest.mark.parametrize("name", SEED_004)
def test_seed_004_presets_take_the_reference_optimizer(name):
    p = load_preset(name)
    t = p.train
    assert (t.beta1, t.beta2, t.grad_clip) == (0.9, 0.999, 0.0)
    assert (t.schedule, t.warmup_steps, t.weight_decay, t.lr) == ("constant", 0, 0.1, 1e-3)
    assert "seed 004" in p.description and "pathwaycom/bdh" in p.description
    assert f"{count_params(p.model):,} parameters" in p.description


def test_every_bdh_parameter_is_decayed_as_the_reference_decays_them():
    """train.py: AdamW(model.parameters(), weight_decay=0.1): one group, all decayed."""
    cfg = ModelConfig(
        arch="bdh", n_layer=2, n_head=2, n_embd=16, block_size=8, mlp_internal_dim_multiplier=4
    )
    model = build_model(cfg)
    t = load_preset("bdh_reference").train
    opt = build_optimizer(model, t, torch.device("cpu"))
    decayed = [p for g in opt.param_groups if g["weight_decay"] == 0.1 for p in g["params"]]
    assert sum(p.numel() for p in decayed) == count_params(cfg)
    assert all(g["betas"] == (0.9, 0.999) for g in opt.param_groups)
    assert all(g["eps"] == 1e-8 for g in opt.param_groups)
