"""Learning-rate schedules: nanoGPT's cosine, parameter-golf's warmdown, constant (cockpit.plan.schedule,
the one definition the trainer and the health rules both use)."""

from __future__ import annotations

import math

import pytest

from cockpit.plan.presets import TrainConfig
from cockpit.plan.schedule import constant_lr, cosine_lr, lr_at, warmdown_lr


def nanogpt_get_lr(it: int, lr: float, min_lr: float, warmup: int, decay_iters: int) -> float:
    """nanoGPT train.py get_lr, copied as the reference."""
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay_iters:
        return min_lr
    decay_ratio = (it - warmup) / (decay_iters - warmup)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return min_lr + coeff * (lr - min_lr)


@pytest.mark.parametrize("step", [0, 1, 50, 99, 100, 101, 500, 1000, 1999, 2000, 2500])
def test_cosine_matches_nanogpt(step):
    assert cosine_lr(step, 1e-3, 1e-4, 100, 2000) == pytest.approx(
        nanogpt_get_lr(step, 1e-3, 1e-4, 100, 2000)
    )


def test_cosine_shape():
    lrs = [cosine_lr(s, 1e-3, 1e-4, 10, 100) for s in range(100)]
    assert lrs[0] < lrs[5] < lrs[9]  # warmup rises
    assert max(lrs) <= 1e-3
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))  # then never rises
    assert lrs[-1] == pytest.approx(1e-4, rel=1e-2)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 1e-3 * 1 / 11),  # warmup
        (9, 1e-3 * 10 / 11),
        (10, 1e-3),  # flat
        (79, 1e-3),
        (80, 1e-3),  # warmdown starts: (100-80)/20 = 1
        (90, 0.5e-3),
        (99, 0.05e-3),
        (100, 0.0),
    ],
)
def test_warmdown(step, expected):
    assert warmdown_lr(step, 1e-3, 10, 20, 100) == pytest.approx(expected)


def test_warmdown_without_decay_stays_flat():
    assert warmdown_lr(99, 1e-3, 0, 0, 100) == pytest.approx(1e-3)


def test_constant():
    assert constant_lr(0, 2e-3, 0) == 2e-3
    assert constant_lr(3, 2e-3, 4) == pytest.approx(2e-3 * 4 / 5)
    assert constant_lr(10_000, 2e-3, 4) == 2e-3


@pytest.mark.parametrize("schedule", ["cosine", "warmdown", "constant"])
def test_lr_at_dispatches_and_scales(schedule):
    cfg = TrainConfig(
        schedule=schedule, max_steps=100, warmup_steps=10, warmdown_steps=20, lr=1e-3, min_lr=1e-4
    )
    for step in (0, 10, 50, 95):
        assert lr_at(step, cfg, 0.5) == pytest.approx(0.5 * lr_at(step, cfg))
    assert lr_at(50, cfg) > 0


def test_lr_at_unknown_schedule():
    """presets.validate rejects an unknown schedule; one that gets past it is a bug, never flat."""
    for step in (-1, 0, 50):
        with pytest.raises(ValueError, match="unknown schedule"):
            lr_at(step, TrainConfig(schedule="linear"))


@pytest.mark.parametrize(
    ("schedule", "step", "expected"),
    [
        ("cosine", 0, 1e-3 / 21),
        ("cosine", 19, 1e-3 * 20 / 21),
        ("cosine", 20, 1e-3),
        ("cosine", 210, 0.55e-3),  # half-way through the decay: the mean of lr and min_lr
        ("cosine", 400, 1e-4),
        ("cosine", 450, 1e-4),
        ("warmdown", 100, 1e-3),
        ("warmdown", 350, 0.5e-3),  # half-way through a 100-step warmdown ending at 400
        ("warmdown", 400, 0.0),
        ("constant", 399, 1e-3),
        ("constant", -1, 0.0),
    ],
)
def test_lr_at_on_a_preset(schedule, step, expected):
    train = TrainConfig(
        schedule=schedule, max_steps=400, warmup_steps=20, warmdown_steps=100, lr=1e-3, min_lr=1e-4
    )
    assert lr_at(step, train) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("schedule", ["cosine", "warmdown", "constant"])
@pytest.mark.parametrize("warmup", [0, 1, 30])
def test_a_step_before_0_has_lr_0(schedule, warmup):
    """The health rules ask for the steps either side of a step event's, so also for -1 and below."""
    train = TrainConfig(
        schedule=schedule, max_steps=300, warmup_steps=warmup, warmdown_steps=70, lr=1e-3
    )
    assert [lr_at(step, train, 0.5) for step in (-1, -2, -100)] == [0.0, 0.0, 0.0]
    assert lr_at(0, train) > 0
