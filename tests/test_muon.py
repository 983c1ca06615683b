"""The muon optimizer (seed 001's recipe): the Muon update, the per-role groups, the schedule, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_runs import events_of, make_run, step_losses, train_in_process

from cockpit.plan import estimate
from cockpit.plan.presets import Preset, PresetError, apply_overrides
from cockpit.train import optim
from cockpit.train.models import build_model
from cockpit.train.muon import MuonAdam, momentum_at, newton_schulz

GOLF = [
    "model.arch=golf",
    "model.n_layer=2",
    "model.n_head=2",
    "model.n_kv_head=1",
    "model.n_embd=16",
    "model.block_size=16",
    "model.vocab_size=64",
    "model.mlp_ratio=2",
    "model.logit_softcap=30",
    "train.optimizer=muon",
    "train.weight_decay=0",
    "train.beta2=0.95",
]


def golf_preset(*more: str) -> Preset:
    return apply_overrides(Preset(name="golf_test"), [*GOLF, *more])


def hand_newton_schulz(g: np.ndarray, steps: int) -> np.ndarray:
    """The reference's zeropower_via_newtonschulz5, in float64 numpy."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g / (np.linalg.norm(g) + 1e-7)
    tall = g.shape[0] > g.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        A = x @ x.T
        x = a * x + (b * A + c * A @ A) @ x
    return x.T if tall else x


def test_muon_update_of_a_random_matrix_is_near_orthogonal():
    torch.manual_seed(0)
    for shape in ((64, 32), (32, 64), (48, 48)):
        w = torch.randn(shape)
        p = torch.nn.Parameter(w.clone())
        opt = MuonAdam([{"params": [p], "kind": "muon", "lr": 1.0, "momentum": 0.0}])
        g = torch.randn(shape)
        p.grad = g
        opt.step()
        update = (w - p.detach()) / max(1.0, shape[0] / shape[1]) ** 0.5
        s = torch.linalg.svdvals(update)
        assert len(s) == min(shape)
        # the quintic's band around 1 after 5 steps (the reference's, not exact orthogonality)
        assert 0.6 < s.min() and s.max() < 1.2, s
        # and it points where the exact orthogonal factor U V^T of the gradient points
        u, _, vh = torch.linalg.svd(g, full_matrices=False)
        polar = u @ vh
        cosine = (update * polar).sum() / (update.norm() * polar.norm())
        assert cosine > 0.97, cosine


def test_muon_step_equals_a_hand_computed_reference_step():
    w = np.array([[0.5, -1.0], [2.0, 0.25], [-0.75, 1.5]])  # tall: the iteration runs transposed
    g1 = np.array([[0.1, 0.2], [-0.3, 0.4], [0.5, -0.6]])
    g2 = np.array([[-0.2, 0.1], [0.3, 0.3], [0.1, -0.4]])
    lr, mom = 0.1, 0.9
    p = torch.nn.Parameter(torch.tensor(w, dtype=torch.float32))
    opt = MuonAdam([{"params": [p], "kind": "muon", "lr": lr, "momentum": mom}])
    expected, buf = w.copy(), np.zeros_like(w)
    for g in (g1, g2):
        p.grad = torch.tensor(g, dtype=torch.float32)
        opt.step()
        buf = mom * buf + g  # the reference's summed buffer
        nesterov = g + mom * buf
        expected = expected - lr * np.sqrt(3 / 2) * hand_newton_schulz(nesterov, 5)
        np.testing.assert_allclose(p.detach().numpy(), expected, rtol=0, atol=2e-6)
    np.testing.assert_allclose(opt.state[p]["momentum_buffer"].numpy(), mom * g1 + g2, atol=1e-7)


def test_matrices_of_one_shape_orthogonalised_together_as_each_alone():
    """The step batches Newton-Schulz by shape: each matrix still gets its own update."""
    torch.manual_seed(4)
    shapes = [(6, 4), (6, 4), (4, 6), (6, 4), (5, 5)]
    weights = [torch.randn(s) for s in shapes]
    together = [torch.nn.Parameter(w.clone()) for w in weights]
    alone = [torch.nn.Parameter(w.clone()) for w in weights]
    group = {"kind": "muon", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.01}
    one = MuonAdam([{"params": together, **group}])
    each = [MuonAdam([{"params": [p], **group}]) for p in alone]
    for _ in range(3):
        for a, b in zip(together, alone, strict=True):
            g = torch.randn_like(a)
            a.grad, b.grad = g.clone(), g.clone()
        one.step()
        for opt in each:
            opt.step()
    for a, b, opt in zip(together, alone, each, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=1e-6)
        torch.testing.assert_close(one.state[a]["momentum_buffer"], opt.state[b]["momentum_buffer"])


def test_newton_schulz_bf16_is_close_to_fp32():
    torch.manual_seed(1)
    g = torch.randn(32, 16)
    full = newton_schulz(g, 5, torch.float32)
    half = newton_schulz(g, 5, torch.bfloat16)
    assert half.dtype == torch.bfloat16
    assert (full - half.float()).abs().max() < 0.05


def test_adam_groups_equal_torch_adam():
    torch.manual_seed(2)
    w = torch.randn(5, 3)
    ours = torch.nn.Parameter(w.clone())
    ref = torch.nn.Parameter(w.clone())
    opt = MuonAdam([{"params": [ours], "kind": "adam", "lr": 0.05, "betas": (0.9, 0.95)}])
    torch_opt = torch.optim.Adam([ref], lr=0.05, betas=(0.9, 0.95), eps=1e-8)
    for _ in range(4):
        g = torch.randn(5, 3)
        ours.grad, ref.grad = g.clone(), g.clone()
        opt.step()
        torch_opt.step()
    torch.testing.assert_close(ours.detach(), ref.detach(), rtol=1e-6, atol=1e-7)


def test_torch_muon_is_not_the_reference_update_under_momentum_warmup():
    """Why the engine keeps its own Muon: torch's EMA buffer departs from the reference's sum."""
    if not hasattr(torch.optim, "Muon"):
        pytest.skip("this torch has no torch.optim.Muon")
    torch.manual_seed(3)
    w = torch.randn(16, 8)
    ours, theirs = torch.nn.Parameter(w.clone()), torch.nn.Parameter(w.clone())
    a = MuonAdam([{"params": [ours], "kind": "muon", "lr": 0.02, "momentum": 0.85}])
    b = torch.optim.Muon([theirs], lr=0.02, weight_decay=0.0, momentum=0.85, nesterov=True)
    for k in range(3):
        for group in a.param_groups + b.param_groups:
            group["momentum"] = momentum_at(k, 0.85, 0.95, 2)
        g = torch.randn(16, 8)
        ours.grad, theirs.grad = g.clone(), g.clone()
        a.step()
        b.step()
    assert (ours - theirs).abs().max() > 1e-3


def test_param_roles_cover_every_parameter_once_and_match_the_estimator():
    for overrides in (
        [],
        ["model.tie_embeddings=false"],
        ["model.arch=gpt", "model.n_kv_head=0", "model.logit_softcap=0"],
        ["model.arch=gpt", "model.n_kv_head=0", "model.tie_embeddings=false", "model.bias=true"],
        ["model.arch=bdh", "model.n_kv_head=0", "model.mlp_internal_dim_multiplier=4"],
    ):
        cfg = golf_preset(*overrides).model
        model = build_model(cfg)
        roles = optim.param_roles(model)
        ids = [id(p) for ps in roles.values() for p in ps]
        assert len(ids) == len(set(ids)) == len(list(model.parameters())), overrides
        assert sum(p.numel() for p in roles["matrix"]) == estimate.matrix_params(cfg), overrides
        assert bool(roles["head"]) == (not cfg.tie_embeddings or cfg.arch == "bdh"), overrides
    golf = build_model(golf_preset().model)
    scalar_names = {n for n, p in golf.named_parameters() if p.dim() < 2}
    assert scalar_names  # gains and scales
    names = {id(p): n for n, p in golf.named_parameters()}
    roles = optim.param_roles(golf)
    assert {names[id(p)] for p in roles["embed"]} == {"tok_emb.weight"}
    # resid_mix and skip_weights are 2-D but the reference trains them with Adam at SCALAR_LR
    scalars = {names[id(p)] for p in roles["scalar"]}
    assert "skip_weights" in scalars and "blocks.0.resid_mix" in scalars


def test_groups_take_the_seed_rates_and_follow_one_schedule():
    preset = golf_preset("train.lr=0.04", "model.tie_embeddings=false")
    t = preset.train
    model = build_model(preset.model)
    opt = optim.build_optimizer(model, t, torch.device("cpu"))
    rates = {g["role"]: g["base_lr"] for g in opt.param_groups}
    assert rates == {"matrix": 0.04, "embed": 0.6, "head": 0.008, "scalar": 0.04}
    kinds = {g["role"]: g["kind"] for g in opt.param_groups}
    assert kinds == {"matrix": "muon", "embed": "adam", "head": "adam", "scalar": "adam"}
    assert all(g["betas"] == (0.9, 0.95) and g["eps"] == 1e-8 for g in opt.param_groups[1:])
    optim.apply_schedule(opt, 250, 0.01, t)  # a quarter of train.lr: every group at a quarter
    assert {g["role"]: g["lr"] for g in opt.param_groups} == pytest.approx(
        {"matrix": 0.01, "embed": 0.15, "head": 0.002, "scalar": 0.01}
    )
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.90)
    optim.apply_schedule(opt, 0, 0.04, t)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.85)
    optim.apply_schedule(opt, 5000, 0.04, t)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.95)
    tied = optim.build_optimizer(build_model(golf_preset().model), t, torch.device("cpu"))
    assert {g["role"]: g["base_lr"] for g in tied.param_groups}["embed"] == 0.05


def test_momentum_warmup_edges():
    assert momentum_at(0, 0.85, 0.95, 500) == 0.85
    assert momentum_at(500, 0.85, 0.95, 500) == pytest.approx(0.95)
    assert momentum_at(10_000, 0.85, 0.95, 500) == pytest.approx(0.95)
    assert momentum_at(0, 0.85, 0.95, 0) == 0.95


def test_muon_fields_are_validated():
    for bad, field in (
        ("train.matrix_lr=0", "train.matrix_lr"),
        ("train.muon_momentum=1.0", "train.muon_momentum"),
        ("train.muon_backend_steps=0", "train.muon_backend_steps"),
        ("train.adam_eps=-1e-8", "train.adam_eps"),
        ("train.optimizer=sgd", "train.optimizer"),
    ):
        with pytest.raises(PresetError) as err:
            golf_preset(bad)
        assert err.value.path == field


def test_estimator_counts_one_buffer_per_muon_parameter():
    preset = golf_preset()
    m = preset.model
    p, mat = estimate.count_params(m), estimate.matrix_params(m)
    assert 0 < mat < p
    assert estimate.optimizer_state_bytes(m, "muon") == 4 * mat + 8 * (p - mat)
    assert estimate.optimizer_state_bytes(m, "adamw") == 8 * p
    muon = estimate.memory_breakdown(preset)
    adamw = estimate.memory_breakdown(apply_overrides(preset, ["train.optimizer=adamw"]))
    assert adamw.optimizer - muon.optimizer == 4 * mat


@pytest.mark.slow
def test_muon_run_resumes_exactly(tmp_path):
    common = [*GOLF, "data.tokenizer=byte", "model.vocab_size=256", "train.max_steps=12"]
    common += ["train.eval_interval=6", "train.log_interval=3", "train.warmup_steps=0"]
    common += ["train.muon_momentum_warmup_steps=8", "train.lr=0.04", "train.sample_tokens=0"]
    straight = make_run(tmp_path, *common, name="straight")
    assert train_in_process(straight).returncode == 0
    parted = make_run(tmp_path, *common, name="parted")
    assert train_in_process(parted, fault="stop_at_step=6").returncode == 0
    resumed = train_in_process(parted, resume=True)
    assert resumed.returncode == 0, resumed.stderr
    assert [s["resumed_from"] for s in events_of(parted, "start")] == [None, 6]
    expected = step_losses(straight)
    assert sorted(expected) == list(range(1, 13))
    assert step_losses(parted) == expected
    first, last = expected[1], expected[12]
    assert last < first  # it learns
