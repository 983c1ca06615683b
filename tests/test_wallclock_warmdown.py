"""The wall-clock warmdown (parameter-golf's lr_mul under MAX_WALLCLOCK_SECONDS) and a cap without evals."""

from __future__ import annotations

import pytest
from tiny_runs import events_of, make_run, train_in_process

from cockpit.health import HealthMonitor
from cockpit.plan.presets import Preset, apply_overrides
from cockpit.plan.schedule import lr_at, lr_at_time, time_warmdown, wallclock_warmdown_factor


def test_factor_edges():
    f = wallclock_warmdown_factor
    assert f(0.0, 0, 600.0, 1200) == 1.0  # no step timed yet
    assert f(100.0, 10, 0.0, 1200) == 1.0  # no cap
    assert f(100.0, 10, 600.0, 0) == 1.0  # no warmdown
    # 10 s a step, 20 warmdown steps: the decay starts 200 s before the 600 s cap
    assert f(399.0, 40, 600.0, 20) == 1.0
    assert f(400.0, 40, 600.0, 20) == pytest.approx(1.0)  # the start: remaining == warmdown time
    assert f(500.0, 50, 600.0, 20) == pytest.approx(0.5)
    assert f(600.0, 60, 600.0, 20) == 0.0  # at the cap
    assert f(700.0, 70, 600.0, 20) == 0.0  # past it
    # a warmdown longer than the whole cap: decaying from the first timed step
    assert f(1.0, 1, 10.0, 100) == pytest.approx(9.0 / 100.0)


def train(**fields) -> Preset:
    base = [
        "train.schedule=warmdown",
        "train.lr=0.04",
        "train.min_lr=0",
        "train.warmup_steps=0",
        "train.max_steps=1000",
        "train.warmdown_steps=100",
    ]
    return apply_overrides(Preset(name="t"), base + [f"train.{k}={v}" for k, v in fields.items()])


def test_lr_at_time_takes_whichever_warmdown_comes_first():
    capped = train(max_time_s=100.0).train
    assert time_warmdown(capped)
    # 1 s a step: 100 s of warmdown fill the 100 s cap, so the decay runs from the start
    assert lr_at_time(10, capped, 10.0, 10) == pytest.approx(0.04 * 90 / 100)
    assert lr_at_time(10, capped, 1.0, 10) == lr_at(10, capped)  # 0.1 s a step: not yet
    # 0.5 s a step: the time warmdown (50 s) starts at 50 s, step 100
    assert lr_at_time(150, capped, 75.0, 150) == pytest.approx(0.04 * 25 / 50)
    # the step warmdown is still there: step 950 of 1000 is at half, time has 40 s left of 50
    assert lr_at_time(950, capped, 60.0, 950) == pytest.approx(0.02)
    assert lr_at_time(150, capped, 75.0, 150, scale=0.5) == pytest.approx(0.01)
    assert lr_at_time(-1, capped, 75.0, 150) == 0.0
    for uncapped in (train(), train(schedule="cosine", max_time_s=100.0, min_lr=0.004)):
        t = uncapped.train
        assert not time_warmdown(t)
        assert lr_at_time(150, t, 99.0, 150) == lr_at(150, t)


def test_lr_rule_accepts_a_time_warmdown():
    preset = train(max_time_s=100.0, log_interval=1)
    monitor = HealthMonitor(preset)
    rules = []
    for step in range(1, 30):
        lr = 0.04 * (30 - step) / 30  # below the step schedule's flat 0.04
        for w in monitor.observe_step(step=step, loss=2.0, grad_norm=1.0, lr=lr):
            rules.append(w.rule)
    assert "lr_schedule" not in rules
    plain = HealthMonitor(train(log_interval=1))
    rules = [
        w.rule
        for step in range(1, 30)
        for w in plain.observe_step(step=step, loss=2.0, grad_norm=1.0, lr=0.01)
    ]
    assert "lr_schedule" in rules  # without a cap the same lr is off schedule


def test_clock_leaves_paused_time_out(monkeypatch):
    from cockpit.train import clock

    fake = [0.0]
    monkeypatch.setattr(clock, "now", lambda: fake[0])
    c = clock.TrainClock()
    c.start()
    fake[0] = 5.0
    with c.paused():
        fake[0] = 105.0
    fake[0] = 107.0
    assert c.elapsed() == 7.0


@pytest.mark.slow
def test_a_capped_run_warms_down_by_time_and_evals_do_not_count(tmp_path, monkeypatch):
    from cockpit.train import clock, evaluate

    fake = [0.0]

    def now() -> float:
        fake[0] += 0.5
        return fake[0]

    real_eval = evaluate.Evaluator.run

    def slow_eval(evaluator, state) -> bool:
        fake[0] += 100.0  # an eval longer than the whole cap
        return real_eval(evaluator, state)

    monkeypatch.setattr(clock, "now", now)
    monkeypatch.setattr(evaluate.Evaluator, "run", slow_eval)
    run = make_run(
        tmp_path,
        "train.schedule=warmdown",
        "train.max_steps=500",
        "train.warmdown_steps=4",
        "train.max_time_s=14",
        "train.eval_interval=4",
        "train.log_interval=1",
        "train.sample_tokens=0",
    )
    proc = train_in_process(run)
    assert proc.returncode == 0, proc.stderr
    end = events_of(run, "end")[-1]
    assert end["reason"] == "max-time"
    lrs = [e["lr"] for e in events_of(run, "step")]
    assert len(lrs) >= 8  # evals of 100 s each did not end the 14 s run
    assert lrs[0] == pytest.approx(3e-3)
    assert lrs[-1] < 0.3 * 3e-3  # warmed down before the cap
    assert all(b <= a + 1e-12 for a, b in zip(lrs, lrs[1:], strict=False))
    assert not [w for w in events_of(run, "warning") if w["rule"].startswith("lr_")]
