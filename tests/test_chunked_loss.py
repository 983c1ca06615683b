"""model.loss_chunk: the chunked head + cross-entropy gives the plain path's loss and gradients."""

from __future__ import annotations

import pytest
import torch

from cockpit.plan.presets import PresetError, apply_overrides, load_preset
from cockpit.train.models import build_model

TINY = {
    "model.n_layer": 2,
    "model.n_head": 2,
    "model.n_kv_head": 0,
    "model.n_embd": 32,
    "model.block_size": 16,
    "model.dropout": 0.0,
    "data.tokenizer": "byte",
}


def _pair(name: str, **overrides):
    """The same weights twice: the plain loss and the chunked one (5 tokens a chunk: 32 = 6*5 + 2)."""
    preset = apply_overrides(load_preset(name), {**TINY, "model.vocab_size": 256, **overrides})
    torch.manual_seed(0)
    plain = build_model(preset.model)
    chunked = build_model(apply_overrides(preset, {"model.loss_chunk": 5}).model)
    chunked.load_state_dict(plain.state_dict())
    if name == "golf_baseline":  # its head starts at zero: give it weights that matter
        for model in (plain, chunked):
            torch.manual_seed(1)
            for p in model.parameters():
                torch.nn.init.normal_(p, std=0.3)
    return preset, plain, chunked


def _loss_and_grads(model, x, y):
    model.zero_grad()
    logits, loss = model(x, y)
    loss.backward()
    return logits, loss, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("tiny", {}),
        ("tiny", {"model.tie_embeddings": False}),
        ("golf_baseline", {"model.logit_softcap": 5.0}),
        ("golf_baseline", {"model.logit_softcap": 5.0, "model.tie_embeddings": False}),
    ],
    ids=["gpt tied", "gpt untied", "golf softcap tied", "golf softcap untied"],
)
def test_chunked_loss_and_gradients_equal_the_plain_path(name, overrides):
    preset, plain, chunked = _pair(name, **overrides)
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, 256, (2, 16), generator=g)
    y = torch.randint(0, 256, (2, 16), generator=g)
    y[0, :3] = -1  # ignored targets count in neither
    logits, loss, grads = _loss_and_grads(plain, x, y)
    no_logits, loss_c, grads_c = _loss_and_grads(chunked, x, y)
    assert logits is not None and no_logits is None  # the chunked path never makes them whole
    assert torch.allclose(loss, loss_c, rtol=1e-6, atol=1e-6), (loss.item(), loss_c.item())
    assert grads.keys() == grads_c.keys()
    for n in grads:
        assert torch.allclose(grads[n], grads_c[n], rtol=1e-5, atol=1e-7), n
    if overrides.get("model.logit_softcap"):
        assert logits.abs().max() <= 5.0  # the softcap is on


def test_sampling_and_generation_are_unchanged_by_the_option():
    _, plain, chunked = _pair("tiny")
    x = torch.randint(0, 256, (1, 8))
    assert torch.equal(plain(x)[0], chunked(x)[0])  # no targets: the last position's logits


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model.loss_chunk": -1}, r"must be 0 \(off\)"),
        ({"model.arch": "bdh", "model.loss_chunk": 64}, "for gpt and golf"),
    ],
)
def test_a_bad_loss_chunk_names_the_field(overrides, message):
    with pytest.raises(PresetError, match=message) as err:
        apply_overrides(load_preset("bdh_8gb" if "model.arch" in overrides else "tiny"), overrides)
    assert err.value.path == "model.loss_chunk"
