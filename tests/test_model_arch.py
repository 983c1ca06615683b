"""Every architecture on CPU: loss at init, causality, sampling, tying, param groups, checkpointing."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from cockpit.presets import ModelConfig  # noqa: E402
from cockpit.train.model import BDH, GPT, GolfGPT, build_model  # noqa: E402

VOCAB = 64
BLOCK = 32

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


def _model(arch: str, seed: int = 0, **changes: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = TINY[arch] if not changes else ModelConfig(**{**TINY[arch].__dict__, **changes})
    return build_model(cfg)


def _batch(seed: int = 1, b: int = 3, t: int = BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    data = torch.randint(0, VOCAB, (b, t + 1), generator=g)
    return data[:, :-1], data[:, 1:]


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_backward_shapes_and_finite_grads(arch: str) -> None:
    model = _model(arch)
    x, y = _batch()
    logits, loss = model(x, y)
    assert logits.shape == (3, BLOCK, VOCAB)
    assert loss is not None and loss.ndim == 0
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
    # without targets: only the last position's logits
    last, none = model(x)
    assert none is None and last.shape == (3, 1, VOCAB)
    model.eval()
    full, _ = model(x, y)
    last_eval, _ = model(x)
    assert torch.allclose(last_eval[:, 0], full[:, -1], atol=1e-5)


def test_arch_names_map_to_their_classes() -> None:
    assert isinstance(_model("gpt"), GPT)
    assert isinstance(_model("golf"), GolfGPT)
    assert isinstance(_model("bdh"), BDH)
    with pytest.raises(NotImplementedError, match="nope"):
        build_model(ModelConfig(arch="nope"))


@pytest.mark.parametrize("arch", ARCHS)
def test_loss_at_init_is_near_uniform(arch: str) -> None:
    model = _model(arch)
    _, loss = model(*_batch())
    assert abs(loss.item() - math.log(VOCAB)) < 0.15, loss.item()


@pytest.mark.parametrize("arch", ARCHS)
def test_a_few_steps_on_one_batch_lower_the_loss(arch: str) -> None:
    model = _model(arch)
    opt = torch.optim.AdamW(model.optimizer_groups(0.0), lr=3e-3)
    x, y = _batch()
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
    model = _model(arch).eval()
    x, y = _batch(b=2)
    cut = 20
    changed = x.clone()
    changed[:, cut] = (changed[:, cut] + 7) % VOCAB
    changed[:, cut + 5 :] = (changed[:, cut + 5 :] + 3) % VOCAB
    with torch.no_grad():
        a, _ = model(x, y)
        b, _ = model(changed, y)
    assert torch.allclose(a[:, :cut], b[:, :cut], atol=1e-5)
    assert not torch.allclose(
        a[:, cut:], b[:, cut:], atol=1e-5
    )  # the change is visible from its position on


@pytest.mark.parametrize("arch", ARCHS)
def test_generate_shape_and_context_cropped_to_block_size(arch: str) -> None:
    model = _model(arch).eval()
    seen: list[int] = []
    inner = model.logits_for

    def spy(idx: torch.Tensor, last_only: bool) -> torch.Tensor:
        seen.append(idx.size(1))
        return inner(idx, last_only)

    model.logits_for = spy  # type: ignore[method-assign]
    start = torch.randint(0, VOCAB, (2, BLOCK + 5))  # already longer than the context
    out = model.generate(start, max_new_tokens=6, temperature=0.8, top_k=5)
    assert out.shape == (2, BLOCK + 11)
    assert torch.equal(out[:, : BLOCK + 5], start)
    assert seen == [BLOCK] * 6
    assert int(out.max()) < VOCAB and int(out.min()) >= 0


def test_generate_respects_vocab_limit_and_top_k_one_is_greedy() -> None:
    model = _model("gpt").eval()
    start = torch.zeros((1, 4), dtype=torch.long)
    out = model.generate(start, max_new_tokens=20, vocab_limit=5)
    assert int(out[:, 4:].max()) < 5
    torch.manual_seed(1)
    a = model.generate(start, max_new_tokens=8, top_k=1)
    torch.manual_seed(2)
    b = model.generate(start, max_new_tokens=8, top_k=1)
    assert torch.equal(a, b)  # greedy: the seed does not matter


def test_gpt_rejects_a_sequence_longer_than_block_size() -> None:
    model = _model("gpt")
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros((1, BLOCK + 1), dtype=torch.long))


def test_tied_weights_share_storage_and_count_once() -> None:
    tied = _model("gpt")
    assert tied.lm_head.weight is tied.transformer.wte.weight
    assert tied.lm_head.weight.data_ptr() == tied.transformer.wte.weight.data_ptr()
    untied = _model("gpt", tie_embeddings=False)
    assert untied.lm_head.weight.data_ptr() != untied.transformer.wte.weight.data_ptr()
    n_tied = sum(p.numel() for p in tied.parameters())
    n_untied = sum(p.numel() for p in untied.parameters())
    assert n_untied - n_tied == VOCAB * 32
    # a step through the tied head moves the embedding too
    x, y = _batch()
    _, loss = tied(x, y)
    loss.backward()
    assert tied.transformer.wte.weight.grad is tied.lm_head.weight.grad
    golf = _model("golf")
    assert golf.lm_head is None  # tied: the head reads tok_emb's weight
    golf_untied = _model("golf", tie_embeddings=False)
    assert golf_untied.lm_head.weight.data_ptr() != golf_untied.tok_emb.weight.data_ptr()


def test_gpt2_124m_has_the_published_parameter_count() -> None:
    cfg = ModelConfig(
        arch="gpt", n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257, bias=True
    )
    with torch.device("meta"):
        model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) == 124_439_808
    # nanoGPT reports 123.65M: the count without position embeddings
    assert sum(p.numel() for p in model.parameters()) - 1024 * 768 == 123_653_376


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("tie", [True, False])
def test_optimizer_groups_cover_every_parameter_once(arch: str, tie: bool) -> None:
    model = _model(arch, tie_embeddings=tie)
    groups = model.optimizer_groups(0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in model.named_parameters():
        if arch != "bdh" and p.dim() < 2:
            assert id(p) not in decayed, f"{name} (a bias, norm or gain) is decayed"
    torch.optim.AdamW(groups, lr=1e-3)  # AdamW refuses a parameter listed twice


@pytest.mark.parametrize("arch", ARCHS)
def test_activation_checkpointing_gives_the_same_loss_and_gradients(arch: str) -> None:
    x, y = _batch()
    results = []
    for enabled in (False, True):
        model = _model(arch, seed=3).train()
        model.set_activation_checkpointing(enabled)
        _, loss = model(x, y)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.allclose(loss_a, loss_b, atol=1e-6)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-6, rtol=1e-4), name


def test_dropout_changes_training_but_not_eval() -> None:
    model = _model("gpt", dropout=0.5)
    x, y = _batch()
    model.train()
    torch.manual_seed(0)
    a = model(x, y)[1]
    torch.manual_seed(1)
    b = model(x, y)[1]
    assert not torch.allclose(a, b)
    model.eval()
    assert torch.allclose(model(x, y)[1], model(x, y)[1])
