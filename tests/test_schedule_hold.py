"""The cosine schedule's min-lr hold (train.min_lr_hold_steps): seed 002's plan decays from
3e-4 to 3e-5 over steps 1000-54000 and holds 3e-5 for the last 6000 of 60000 steps."""

from __future__ import annotations

import math

import pytest
from test_schedule import nanogpt_get_lr
from tiny_runs import events_of, make_run, train_in_process

from cockpit import rundir
from cockpit.headless import with_max_steps
from cockpit.health import HealthMonitor
from cockpit.plan.presets import (
    Preset,
    PresetError,
    TrainConfig,
    apply_overrides,
    load_preset,
    preset_from_dict,
)
from cockpit.plan.schedule import cosine_lr, lr_at


@pytest.mark.parametrize("step", [0, 99, 100, 101, 500, 899, 900, 901, 950, 999, 1000, 1500])
def test_hold_is_nanogpts_decay_ending_early(step):
    """max_steps 1000, hold 100: nanoGPT's get_lr with lr_decay_iters=900."""
    assert cosine_lr(step, 1e-3, 1e-4, 100, 1000, 100) == pytest.approx(
        nanogpt_get_lr(step, 1e-3, 1e-4, 100, 900), rel=1e-12
    )


def test_seed_002s_plan_at_its_edges():
    t = load_preset("tiny_gpt_50m").train
    assert (t.schedule, t.min_lr_hold_steps, t.max_steps) == ("cosine", 6000, 60000)
    assert lr_at(0, t) == pytest.approx(3e-4 / 1001)
    assert lr_at(999, t) == pytest.approx(3e-4 * 1000 / 1001)  # the last warmup step
    assert lr_at(1000, t) == pytest.approx(3e-4)  # warmup ends at the peak
    assert lr_at(27500, t) == pytest.approx(1.65e-4)  # half-way through the decay
    assert 3e-5 < lr_at(53999, t) < 3e-5 * 1.0001  # the last decay step, just above the floor
    assert [lr_at(s, t) for s in (54000, 54001, 57000, 59999, 60000)] == [3e-5] * 5  # the hold
    lrs = [lr_at(s, t) for s in range(1000, 60000, 50)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))  # never rises after warmup


def test_no_hold_is_the_plain_cosine():
    plain = TrainConfig(max_steps=400, warmup_steps=20, lr=1e-3, min_lr=1e-4)
    for step in (0, 19, 20, 100, 399, 400):
        assert lr_at(step, plain) == cosine_lr(step, 1e-3, 1e-4, 20, 400)


def test_hold_may_fill_everything_after_warmup():
    assert [cosine_lr(s, 1e-3, 1e-4, 10, 100, 90) for s in (10, 50, 99)] == [1e-4] * 3


@pytest.mark.parametrize(
    ("train", "needle"),
    [
        ({"min_lr_hold_steps": -1}, "must not be negative"),
        ({"schedule": "warmdown", "min_lr_hold_steps": 10}, "only the cosine schedule"),
        ({"schedule": "constant", "min_lr_hold_steps": 10}, "only the cosine schedule"),
        ({"max_steps": 100, "warmup_steps": 20, "min_lr_hold_steps": 81}, "exceed"),
    ],
)
def test_bad_holds_name_the_field(train, needle):
    raw = {"name": "t", "train": {"max_steps": 100, "warmup_steps": 10, **train}}
    with pytest.raises(PresetError) as err:
        preset_from_dict(raw)
    assert err.value.path == "train.min_lr_hold_steps"
    assert needle in err.value.message


def test_shorter_run_shrinks_the_hold():
    preset = load_preset("tiny_gpt_50m")
    short = with_max_steps(preset, 3000)
    assert (short.train.warmup_steps, short.train.min_lr_hold_steps) == (1000, 2000)
    tiny = with_max_steps(preset, 50)
    assert tiny.train.warmup_steps + tiny.train.min_lr_hold_steps <= 50


def _lr_warnings(preset: Preset, lrs: list[float]) -> list[str]:
    monitor = HealthMonitor(preset)
    rules = []
    for step, lr in enumerate(lrs, start=1):  # step events count completed steps from 1
        loss = 1.5 + 2.5 * math.exp(-step / 120)
        for w in monitor.observe_step(step, loss, 0.5, lr, 1000.0):
            rules.append(w.rule)
    return [r for r in rules if r.startswith("lr")]


def test_lr_rules_are_quiet_on_a_correct_hold_and_see_a_missing_one():
    preset = Preset(
        name="t",
        train=TrainConfig(
            max_steps=400, warmup_steps=20, lr=1e-3, min_lr=1e-4, min_lr_hold_steps=150
        ),
    )
    held = [lr_at(s, preset.train) for s in range(400)]
    assert _lr_warnings(preset, held) == []
    # a trainer that ignored the hold: still decaying over steps 250-400
    no_hold = [cosine_lr(s, 1e-3, 1e-4, 20, 400) for s in range(400)]
    assert "lr_schedule" in _lr_warnings(preset, no_hold)


@pytest.mark.slow
def test_resume_mid_hold_keeps_the_floor(tmp_path):
    """A run stopped inside the hold resumes at min_lr: every step's lr is lr_at's, on both sides."""
    run_dir = make_run(
        tmp_path,
        "train.max_steps=20",
        "train.warmup_steps=4",
        "train.min_lr_hold_steps=8",
        "train.eval_interval=0",
        "train.log_interval=1",
        "train.sample_tokens=0",
    )
    first = train_in_process(run_dir, fault="stop_at_step=15")
    assert first.returncode == 0, first.stderr
    assert events_of(run_dir, "end")[-1]["reason"] == "stopped"
    second = train_in_process(run_dir, resume=True)
    assert second.returncode == 0, second.stderr
    assert [s["resumed_from"] for s in events_of(run_dir, "start")] == [None, 15]
    preset = rundir.load_run_preset(run_dir)
    lrs = {r["step"]: r["lr"] for r in events_of(run_dir, "step")}
    assert sorted(lrs) == list(range(1, 21))
    for step, lr in lrs.items():  # step events count from 1, the schedule from 0
        assert lr == pytest.approx(lr_at(step - 1, preset.train), rel=1e-6)
    assert [lrs[s] for s in range(13, 21)] == pytest.approx([3e-4] * 8)  # held across the stop
    assert lrs[12] > 3e-4
    assert not [w for w in events_of(run_dir, "warning") if w["rule"].startswith("lr")]


def test_overrides_reach_the_hold():
    preset = apply_overrides(load_preset("tiny_gpt_50m"), ["train.min_lr_hold_steps=0"])
    assert lr_at(54000, preset.train) > 3e-5
