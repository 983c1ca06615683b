"""Learning-rate schedules: nanoGPT's cosine, parameter-golf's warmdown, constant."""

from __future__ import annotations

import math

import pytest

from cockpit.presets import TrainConfig
from cockpit.train.schedule import constant_lr, cosine_lr, lr_at, warmdown_lr


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
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_at(0, TrainConfig(schedule="linear"))
