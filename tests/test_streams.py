"""Seed 000's residual-stream variant (model.num_streams, mixing_iters, mixing_temperature):
off by default and exactly the plain GPT then; the exact parameter count and memory terms;
loss falls and resume is exact on CPU; the variant_instability health rule."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from tiny_runs import copy_run, events_of, make_run, step_losses, train_in_process

from cockpit.health import HealthConfig, HealthMonitor
from cockpit.plan.estimate import count_params, estimate, flops_per_token
from cockpit.plan.presets import ModelConfig, Preset, PresetError, TrainConfig, preset_from_dict
from cockpit.train.models import build_model
from cockpit.train.streams import StreamMix, sinkhorn

SMALL = dict(arch="gpt", n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=40)


def _built(cfg: ModelConfig, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(cfg)


def test_one_stream_is_exactly_the_plain_model():
    plain = ModelConfig(**SMALL)
    one = dataclasses.replace(plain, num_streams=1, mixing_iters=3, mixing_temperature=0.25)
    a, b = _built(plain), _built(one)
    assert list(a.state_dict()) == list(b.state_dict())
    idx = torch.randint(0, 40, (3, 8), generator=torch.Generator().manual_seed(1))
    (la, lossa), (lb, lossb) = a(idx, idx), b(idx, idx)
    assert torch.equal(la, lb) and torch.equal(lossa, lossb)


def test_streams_start_as_the_plain_model_and_add_only_mixing_weights():
    """Every stream starts as the embedding, post is 1 and the mix symmetric: same logits at init."""
    plain = ModelConfig(**SMALL)
    streams = dataclasses.replace(plain, num_streams=3, mixing_iters=4)
    a, b = _built(plain), _built(streams)
    extra = {k for k in b.state_dict()} - set(a.state_dict())
    assert extra and all(".mix_attn." in k or ".mix_mlp." in k for k in extra)
    idx = torch.randint(0, 40, (2, 8), generator=torch.Generator().manual_seed(2))
    assert torch.allclose(a(idx, idx)[0], b(idx, idx)[0], atol=1e-5)


def test_mixing_weights_are_normalised_and_sharpen_at_low_temperature():
    log_w = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    res = sinkhorn(log_w, 30)
    assert torch.allclose(res.sum(0), torch.ones(4), atol=1e-6)
    assert torch.allclose(res.sum(1), torch.ones(4), atol=1e-4)
    soft, sharp = StreamMix(4, 10, 4.0, 1), StreamMix(4, 10, 0.25, 1)
    for mix in (soft, sharp):
        pre, res, post = mix.weights()
        assert pre.sum().item() == pytest.approx(1.0)
        assert torch.allclose(res.sum(0), torch.ones(4), atol=1e-5)
        assert torch.equal(post, torch.ones(4))
        assert int(pre.argmax()) == 1  # each sublayer starts leaning to its own stream
    assert sharp.weights()[1].diagonal().min() > 0.99 > soft.weights()[1].diagonal().max()


def test_mixing_weights_take_no_weight_decay():
    model = _built(ModelConfig(**SMALL, num_streams=2))
    decay, no_decay = model.optimizer_groups(0.1)
    mixing = {id(p) for n, p in model.named_parameters() if "mix_" in n}
    assert len(mixing) == 2 * 3 * SMALL["n_layer"]
    assert mixing <= {id(p) for p in no_decay["params"]}
    assert not mixing & {id(p) for p in decay["params"]}


@pytest.mark.parametrize(
    "kw",
    [
        dict(num_streams=2),
        dict(num_streams=3, bias=True),
        dict(num_streams=4, tie_embeddings=False, n_layer=3),
        dict(num_streams=5, mlp_ratio=2, mixing_iters=1),
    ],
    ids=lambda kw: "-".join(f"{k}{v}" for k, v in kw.items()),
)
def test_count_params_equals_the_built_module(kw):
    cfg = ModelConfig(**{**SMALL, **kw})
    with torch.device("meta"):
        model = build_model(cfg)
    assert count_params(cfg) == sum(p.numel() for p in model.parameters())
    n = cfg.num_streams
    plain = count_params(dataclasses.replace(cfg, num_streams=1))
    assert count_params(cfg) - plain == cfg.n_layer * 2 * (n * n + 2 * n)


def test_estimate_grows_with_the_streams():
    base = preset_from_dict({"name": "s", "model": {"n_layer": 2, "block_size": 64}})
    more = preset_from_dict(
        {"name": "s", "model": {"n_layer": 2, "block_size": 64, "num_streams": 4}}
    )
    a, b = estimate(base).memory, estimate(more).memory
    sbh = base.train.batch_size * 64 * base.model.n_embd
    # each of the two mixes keeps the four fp32 streams and the 16-bit sublayer output it scales
    assert b.activations_per_layer - a.activations_per_layer == 2 * sbh * (4 * 4 + 2)
    assert b.live_bytes > a.live_bytes
    assert flops_per_token(more.model) > flops_per_token(base.model)


@pytest.mark.parametrize(
    ("model", "field", "needle"),
    [
        ({"num_streams": 0}, "model.num_streams", "at least 1"),
        ({"mixing_iters": 0}, "model.mixing_iters", "at least 1"),
        ({"mixing_temperature": 0}, "model.mixing_temperature", "positive"),
        ({"mixing_temperature": -1.5}, "model.mixing_temperature", "positive"),
        ({"arch": "golf", "num_streams": 2}, "model.num_streams", "arch gpt only"),
        ({"arch": "bdh", "num_streams": 3}, "model.num_streams", "arch gpt only"),
    ],
)
def test_bad_stream_settings_name_the_field(model, field, needle):
    with pytest.raises(PresetError) as err:
        preset_from_dict({"name": "s", "model": model})
    assert err.value.path == field and needle in err.value.message


def test_plain_presets_keep_the_defaults():
    m = ModelConfig()
    assert (m.num_streams, m.mixing_iters, m.mixing_temperature) == (1, 10, 1.0)


# --------------------------------------------------------------------------- training on CPU

STREAMS = (
    "model.num_streams=2",
    "model.mixing_iters=3",
    "train.max_steps=16",
    "train.eval_interval=8",
    "train.sample_tokens=0",
)


@pytest.fixture(scope="module")
def stream_runs(tmp_path_factory):
    """A 2-stream tiny run trained straight through, and the same stopped at step 8."""
    root = tmp_path_factory.mktemp("streams")
    straight = make_run(root, *STREAMS, name="straight")
    assert train_in_process(straight).returncode == 0
    stopped = make_run(root, *STREAMS, name="stopped")
    assert train_in_process(stopped, fault="stop_at_step=8").returncode == 0
    return straight, stopped


@pytest.mark.slow
def test_loss_falls_with_streams(stream_runs):
    straight, _ = stream_runs
    losses = step_losses(straight)
    assert sorted(losses) == list(range(1, 17))
    first, last = sum(losses[s] for s in (1, 2, 3)) / 3, sum(losses[s] for s in (14, 15, 16)) / 3
    assert last < first - 0.4, (first, last)  # from ln(64) = 4.16, the uniform guess
    assert events_of(straight, "end")[-1]["reason"] == "finished"


@pytest.mark.slow
def test_resume_with_streams_is_exact(tmp_path, stream_runs):
    straight, stopped = stream_runs
    parted = copy_run(stopped, tmp_path / "parted")
    assert events_of(parted, "end")[-1]["reason"] == "stopped"
    second = train_in_process(parted, resume=True)
    assert second.returncode == 0, second.stderr
    assert [s["resumed_from"] for s in events_of(parted, "start")] == [None, 8]
    assert step_losses(parted) == step_losses(straight)  # exactly, step for step
    val = [(e["step"], e["val_loss"]) for e in events_of(straight, "eval")]
    assert [(e["step"], e["val_loss"]) for e in events_of(parted, "eval")] == val


# --------------------------------------------------------------------------- variant_instability


def _preset(streams: int) -> Preset:
    return Preset(
        name="s",
        model=ModelConfig(num_streams=streams, mixing_temperature=2.0),
        train=TrainConfig(max_steps=400, warmup_steps=20, lr=1e-3, min_lr=1e-4),
    )


def _series(n: int = 120, spike_at: tuple[int, ...] = ()) -> list[tuple[int, float, float]]:
    out = []
    for s in range(n):
        loss = 1.5 + 2.5 * math.exp(-s / 120) + 0.03 * math.sin(s * 1.7)
        grad = 0.5 + 0.05 * math.cos(s * 1.3)
        if s in spike_at:
            loss, grad = loss * 2.2, grad * 8
        out.append((s, loss, grad))
    return out


def _feed(monitor: HealthMonitor, series, **kw) -> list:
    warnings = []
    for step, loss, grad in series:
        warnings += monitor.observe_step(step, loss, grad, 1e-3, **kw)
    return [w for w in warnings if w.rule == "variant_instability"]


def test_variant_instability_fires_with_streams_and_gives_seed_000s_tip():
    warnings = _feed(HealthMonitor(_preset(4)), _series(spike_at=(60, 61, 62)))
    assert len(warnings) == 1  # one episode, one warning
    w = warnings[0]
    assert (w.step, w.evidence["detected_at_step"]) == (60, 61)
    assert w.evidence["num_streams"] == 4 and w.evidence["mixing_temperature"] == 2.0
    assert "mixing_temperature" in w.tip and "num_streams" in w.tip
    assert "4-stream" in w.message and "grad norm" in w.message
    assert w.evidence["loss"] > 1.9 * w.evidence["loss_median"]
    assert not w.is_anomaly


def test_variant_instability_is_quiet_for_the_plain_residual_and_healthy_streams():
    assert _feed(HealthMonitor(_preset(1)), _series(spike_at=(60, 61, 62))) == []
    assert _feed(HealthMonitor(_preset(4)), _series()) == []
    assert _feed(HealthMonitor(_preset(4)), _series(spike_at=(60,))) == []  # one noisy point
    assert _feed(HealthMonitor(None), _series(spike_at=(60, 61))) == []


def test_a_non_finite_loss_fires_at_once_but_a_scaler_skip_does_not():
    series = _series(80)
    broken = [*series[:50], (50, math.nan, 0.5), *series[51:]]
    assert [w.step for w in _feed(HealthMonitor(_preset(2)), broken)] == [50]
    skipped = [*series[:50], (50, 2.0, math.inf), *series[51:]]
    monitor = HealthMonitor(_preset(2))
    quiet = _feed(monitor, skipped[:50]) + _feed(monitor, skipped[50:51], scaler_skipped=True)
    assert quiet + _feed(monitor, skipped[51:]) == []


def test_variant_state_round_trips_and_a_plain_state_has_none():
    series = _series(spike_at=(100, 101))
    whole = _feed(HealthMonitor(_preset(3)), series)
    first = HealthMonitor(_preset(3))
    _feed(first, series[:100])
    state = json.loads(json.dumps(first.state_dict()))
    assert {"variant_loss", "variant_grad", "variant_streak", "variant_episode"} <= set(state)
    resumed = HealthMonitor(_preset(3))
    resumed.load_state_dict(state)
    assert [(w.step, w.message) for w in _feed(resumed, series[100:])] == [
        (w.step, w.message) for w in whole
    ]
    plain = HealthMonitor(_preset(1))
    _feed(plain, series[:100])
    assert not any(k.startswith("variant") for k in plain.state_dict())


def test_variant_thresholds_override_by_name():
    config = HealthConfig(variant_patience=1)
    warnings = _feed(HealthMonitor(_preset(2), config=config), _series(spike_at=(60,)))
    assert [w.step for w in warnings] == [60]
