"""Health rules on synthetic series: each fires where it must, stays quiet on noise, survives a checkpoint."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cockpit.health import (
    ANOMALY_RULES,
    RULES,
    SEVERITIES,
    STATE_VERSION,
    HealthConfig,
    HealthMonitor,
    HealthWarning,
    oom_warning,
)
from cockpit.plan.presets import Preset, TrainConfig
from cockpit.plan.schedule import lr_at
from cockpit.rundir import decode_record, encode_record, make_record

GIB = 1 << 30


def make_preset(**train: Any) -> Preset:
    """A small preset whose schedule the synthetic series follow."""
    base = dict(max_steps=400, warmup_steps=20, lr=1e-3, min_lr=1e-4, schedule="cosine")
    base.update(train)
    return Preset(name="t", train=TrainConfig(**base))


@dataclass
class Series:
    """A synthetic run: per-step metrics and evaluations, in the order a trainer reports them."""

    preset: Preset
    steps: list[dict[str, Any]]
    evals: dict[int, dict[str, Any]] = field(default_factory=dict)
    gpu_memory_bytes: int | None = None

    def ops(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for s in self.steps:
            out.append(("step", s))
            if s["step"] in self.evals:
                out.append(("eval", {"step": s["step"], **self.evals[s["step"]]}))
        return out


def realistic(
    n: int = 400, seed: int = 0, preset: Preset | None = None, eval_every: int = 50
) -> Series:
    """A healthy run: noisy descending loss, noisy grad norm, the preset's lr, steady tokens/s."""
    preset = preset or make_preset(max_steps=max(n, 400))
    rng = random.Random(seed)
    steps, evals = [], {}
    for s in range(n):
        smooth = 1.5 + 2.5 * math.exp(-s / 120)
        steps.append(
            {
                "step": s,
                "loss": smooth + rng.gauss(0, 0.04),
                "grad_norm": (0.4 + 1.5 * math.exp(-s / 40)) * math.exp(rng.gauss(0, 0.15)),
                "lr": lr_at(s, preset.train),
                "tokens_per_s": 19000 * (1 + rng.gauss(0, 0.03)),
                "vram_bytes": int(10 * GIB * (1 + rng.gauss(0, 0.002))),
            }
        )
        if eval_every and s and s % eval_every == 0:
            evals[s] = {
                "val_loss": smooth + 0.03 + rng.gauss(0, 0.005),
                "train_loss": smooth + rng.gauss(0, 0.005),
            }
    return Series(preset, steps, evals, gpu_memory_bytes=24 * GIB)


def feed(monitor: HealthMonitor, ops: list[tuple[str, dict[str, Any]]]) -> list[HealthWarning]:
    out: list[HealthWarning] = []
    for kind, op in ops:
        if kind == "step":
            args = dict(op)
            out.extend(
                monitor.observe_step(
                    args.pop("step"),
                    args.pop("loss"),
                    args.pop("grad_norm"),
                    args.pop("lr"),
                    args.pop("tokens_per_s", None),
                    **args,
                )
            )
        else:
            out.extend(monitor.observe_eval(op["step"], op["val_loss"], op.get("train_loss")))
    return out


def run(series: Series) -> list[HealthWarning]:
    return feed(
        HealthMonitor(series.preset, gpu_memory_bytes=series.gpu_memory_bytes), series.ops()
    )


def key(w: HealthWarning) -> tuple:
    """What makes two warnings the same (NaN evidence compares unequal, so leave evidence out)."""
    return (w.rule, w.severity, w.step, w.message, w.tip)


# --------------------------------------------------------------------------- scenarios


def s_nonfinite_loss() -> Series:
    r = realistic(200)
    r.steps[150]["loss"] = math.nan
    return r


def s_nonfinite_grad() -> Series:
    r = realistic(200)
    r.steps[120]["grad_norm"] = math.inf
    return r


def s_scaler_skips() -> Series:
    r = realistic(200)
    for s in range(100, 106):  # overflowing steps: the scaler skips them and the norm reads inf
        r.steps[s].update(grad_norm=math.inf, scaler_skipped=True)
    return r


def s_loss_spike() -> Series:
    r = realistic(300)
    for s in (200, 201, 202):
        r.steps[s]["loss"] += (
            1.0  # ~+50% of a loss near 2.0: tens of sigma, below the 3x "huge" bar
        )
    return r


def s_loss_spike_huge_single() -> Series:
    r = realistic(300)
    r.steps[220]["loss"] *= 4.0
    return r


def s_grad_spikes() -> Series:
    r = realistic(300)
    for s in (150, 165, 180):
        r.steps[s]["grad_norm"] *= 6.0
    return r


def s_grad_variability() -> Series:
    r = realistic(300)
    for s in range(200, 300):
        r.steps[s]["grad_norm"] *= 4.0 if s % 2 else 0.5  # alternate 8x up and down
    return r


def s_val_plateau() -> Series:
    preset = make_preset(schedule="constant", warmup_steps=10)
    r = realistic(300, preset=preset, eval_every=0)
    for i, s in enumerate(range(20, 300, 20)):
        r.evals[s] = {
            "val_loss": 3.0 - 0.2 * min(i, 2),
            "train_loss": None,
        }  # best at step 60, then flat
    return r


def s_val_rising() -> Series:
    r = realistic(400, eval_every=0)
    values = [3.0, 2.6, 2.3, 2.2, 2.25, 2.3, 2.4]
    for s, v in zip(range(50, 400, 50), values, strict=True):
        r.evals[s] = {"val_loss": v, "train_loss": None}
    return r


def s_overfitting() -> Series:
    r = realistic(400, eval_every=0)
    train = [2.0, 1.8, 1.6, 1.4, 1.2]
    val = [2.05, 1.95, 1.9, 1.88, 1.87]
    for s, t, v in zip(range(50, 300, 50), train, val, strict=True):
        r.evals[s] = {"val_loss": v, "train_loss": t}
    return r


def s_lr_zero() -> Series:
    r = realistic(300)
    for s in range(150, 300):
        r.steps[s]["lr"] = 0.0
    return r


def s_lr_above_max() -> Series:
    r = realistic(300)
    r.steps[100]["lr"] = 2.5e-3  # the preset's max is 1e-3
    return r


def s_lr_schedule() -> Series:
    r = realistic(300)
    for s in range(100, 300):
        r.steps[s]["lr"] *= 0.5  # half the schedule, and no rollback factor explains it
    return r


def s_throughput_drop() -> Series:
    r = realistic(300)
    for s in range(210, 220):
        r.steps[s]["tokens_per_s"] *= 0.3
    return r


def s_vram_near_limit() -> Series:
    r = realistic(200)
    r.steps[120]["vram_bytes"] = int(0.97 * r.gpu_memory_bytes)
    return r


# name: (scenario, rule, (first step lo, hi), other rules allowed to fire, severity)
SCENARIOS = {
    "nonfinite_loss": (s_nonfinite_loss, "nonfinite", (150, 150), set(), "critical"),
    "nonfinite_grad": (s_nonfinite_grad, "nonfinite", (120, 120), set(), "critical"),
    "scaler_skips": (s_scaler_skips, "scaler_skips", (104, 104), set(), "warning"),
    "loss_spike": (s_loss_spike, "loss_spike", (200, 200), set(), "warning"),
    "loss_spike_huge_single": (
        s_loss_spike_huge_single,
        "loss_spike",
        (220, 220),
        set(),
        "warning",
    ),
    "grad_spikes": (s_grad_spikes, "grad_spikes", (180, 180), set(), "warning"),
    "grad_variability": (
        s_grad_variability,
        "grad_variability",
        (213, 217),
        {"grad_spikes"},
        "warning",
    ),
    "val_plateau": (s_val_plateau, "val_plateau", (140, 140), set(), "info"),
    "val_rising": (s_val_rising, "val_rising", (350, 350), set(), "warning"),
    "overfitting": (s_overfitting, "overfitting", (200, 200), set(), "warning"),
    "lr_zero": (s_lr_zero, "lr_zero", (159, 159), set(), "warning"),
    "lr_above_max": (s_lr_above_max, "lr_above_max", (100, 100), set(), "warning"),
    "lr_schedule": (s_lr_schedule, "lr_schedule", (102, 102), set(), "warning"),
    "throughput_drop": (
        s_throughput_drop,
        "throughput_drop",
        (214, 214),
        set(),
        "warning",
    ),  # 5th low point
    "vram_near_limit": (s_vram_near_limit, "vram_near_limit", (120, 120), set(), "warning"),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_rule_fires_at_the_right_step(name: str) -> None:
    scenario, rule, (lo, hi), allowed, severity = SCENARIOS[name]
    warnings = run(scenario())
    fired = [w for w in warnings if w.rule == rule]
    assert fired, f"{rule} did not fire; got {[(w.rule, w.step) for w in warnings]}"
    first = fired[0]
    assert lo <= first.step <= hi, f"{rule} fired at {first.step}, expected {lo}..{hi}"
    assert first.severity == severity
    assert first.message and first.tip and first.evidence
    assert first.is_anomaly == (rule in ANOMALY_RULES)
    json.dumps(first.evidence, default=str)  # plain data
    others = {w.rule for w in warnings} - {rule} - allowed
    assert not others, f"unexpected rules {others}"


@pytest.mark.parametrize("seed", range(6))
def test_quiet_on_realistic_noisy_descending_runs(seed: int) -> None:
    warnings = run(realistic(400, seed=seed))
    assert warnings == []


@pytest.mark.parametrize("seed", range(3))
def test_quiet_on_a_longer_noisier_run(seed: int) -> None:
    preset = make_preset(max_steps=1500, warmup_steps=100)
    rng = random.Random(100 + seed)
    steps = []
    for s in range(1500):
        smooth = 1.2 + 3.0 * math.exp(-s / 300)
        steps.append(
            {
                "step": s,
                "loss": smooth * (1 + rng.gauss(0, 0.04)),
                "grad_norm": 0.3 * math.exp(rng.gauss(0, 0.3)),
                "lr": lr_at(s, preset.train),
                "tokens_per_s": 50000 * math.exp(rng.gauss(0, 0.1)),
            }
        )
    evals = {
        s: {
            "val_loss": 1.25 + 3.0 * math.exp(-s / 300),
            "train_loss": 1.2 + 3.0 * math.exp(-s / 300),
        }
        for s in range(100, 1500, 100)
    }
    assert run(Series(preset, steps, evals)) == []


def test_quiet_on_constant_input() -> None:
    preset = make_preset(schedule="constant", warmup_steps=0)
    steps = [
        {
            "step": s,
            "loss": 2.0,
            "grad_norm": 1.0,
            "lr": 1e-3,
            "tokens_per_s": 1000.0,
            "vram_bytes": 5 * GIB,
        }
        for s in range(500)
    ]
    evals = {s: {"val_loss": 2.0, "train_loss": 2.0} for s in range(50, 500, 50)}
    warnings = run(Series(preset, steps, evals, gpu_memory_bytes=24 * GIB))
    # A constant val loss with a constant (high) lr is a plateau, and only that: sigma 0 never fires a spike.
    assert {w.rule for w in warnings} <= {"val_plateau"}


@pytest.mark.parametrize("jitter", [0.0, 1e-12, 1e-7])
def test_near_constant_loss_never_spikes(jitter: float) -> None:
    monitor = HealthMonitor()
    warnings = []
    for s in range(300):
        warnings += monitor.observe_step(s, 2.0 + (jitter if s % 7 == 0 else 0.0), 1.0, 1e-3)
    assert warnings == []


def test_one_noisy_step_is_not_a_spike() -> None:
    r = realistic(300)
    r.steps[200]["loss"] += 0.8  # one point, far out but below the single-point bar
    assert run(r) == []


def test_no_spike_alarm_before_the_window_warms_up() -> None:
    monitor = HealthMonitor()
    warnings = []
    for s, loss in enumerate([4.0, 3.9, 9.0, 9.5, 3.7, 3.6]):
        warnings += monitor.observe_step(s, loss, 1.0, 1e-3)
    assert warnings == []


def test_spike_evidence_carries_the_numbers() -> None:
    warnings = [w for w in run(s_loss_spike()) if w.rule == "loss_spike"]
    assert len(warnings) == 1
    ev = warnings[0].evidence
    assert ev["detected_at_step"] == 201
    assert ev["spike_points"] == 2
    assert ev["sigma"] > 6
    assert ev["loss"] == pytest.approx(ev["window_mean"] + 1.0, abs=0.3)


def test_scaler_skips_are_not_nonfinite_alarms() -> None:
    warnings = run(s_scaler_skips())
    assert [w.rule for w in warnings] == ["scaler_skips"]
    assert "bf16" in warnings[0].tip


def test_short_scaler_skip_streak_is_quiet() -> None:
    r = realistic(200)
    for s in (50, 51, 52, 90, 91):
        r.steps[s].update(grad_norm=math.inf, scaler_skipped=True)
    assert run(r) == []


def test_rollback_lr_factor_is_accepted() -> None:
    preset = make_preset(rollback_lr_factor=0.5, max_rollbacks=3)
    r = realistic(300, preset=preset)
    for s in range(150, 300):
        r.steps[s]["lr"] *= 0.25  # two rollbacks
    assert run(r) == []


def test_lr_scale_passed_by_the_trainer_is_accepted() -> None:
    r = realistic(300)
    for s in range(150, 300):
        r.steps[s]["lr"] *= 0.3
        r.steps[s]["lr_scale"] = 0.3
    assert run(r) == []


@pytest.mark.parametrize("schedule", ["cosine", "warmdown", "constant"])
def test_lr_at_the_end_of_the_schedule_is_not_lr_zero(schedule: str) -> None:
    preset = make_preset(schedule=schedule, warmdown_steps=100, min_lr=0.0, max_steps=300)
    r = realistic(300, preset=preset)
    assert run(r) == []


def test_without_a_preset_only_preset_free_lr_rules_apply() -> None:
    monitor = HealthMonitor()
    warnings = []
    for s in range(40):
        warnings += monitor.observe_step(
            s, 2.0, 1.0, 5.0 if s < 20 else 0.0
        )  # any lr is fine, 0 is not
    assert [(w.rule, w.step) for w in warnings] == [("lr_zero", 29)]


def test_throughput_ignores_the_point_after_an_eval() -> None:
    r = realistic(300, eval_every=50)
    for s in r.evals:
        r.steps[s + 1]["tokens_per_s"] *= 0.1  # the eval's time lands in the next point
    assert run(r) == []


@pytest.mark.parametrize("device", ["cpu", "cuda:0", None])
def test_the_throughput_tip_fits_the_device(device) -> None:
    monitor = HealthMonitor(make_preset(), device=device)
    warnings = [w for w in feed(monitor, s_throughput_drop().ops()) if w.rule == "throughput_drop"]
    assert warnings
    tip = warnings[0].tip
    if device == "cpu":
        assert "GPU" not in tip and "gpus" not in tip and "CPU cores" in tip
    else:
        assert "another process on the GPU" in tip


def test_vram_below_the_margin_is_quiet() -> None:
    r = realistic(200)
    for s in range(100, 200):
        r.steps[s]["vram_bytes"] = int(0.9 * r.gpu_memory_bytes)
    assert run(r) == []


def test_vram_without_gpu_size_is_quiet() -> None:
    r = s_vram_near_limit()
    r.gpu_memory_bytes = None
    assert run(r) == []


# --------------------------------------------------------------------------- de-duplication


def test_persistent_nan_fires_once_per_cooldown() -> None:
    monitor = HealthMonitor(config=HealthConfig(cooldown_steps=100))
    warnings = []
    for s in range(50):
        warnings += monitor.observe_step(s, 2.0, 1.0, 1e-3)
    for s in range(50, 260):
        warnings += monitor.observe_step(s, math.nan, math.nan, 1e-3)
    assert [(w.rule, w.step) for w in warnings] == [
        ("nonfinite", 50),
        ("nonfinite", 150),
        ("nonfinite", 250),
    ]


def test_lasting_divergence_does_not_alarm_every_step() -> None:
    r = realistic(400)
    for s in range(200, 400):
        r.steps[s]["loss"] += 1.5  # the run jumps to a worse level and stays there
    spikes = [w for w in run(r) if w.rule == "loss_spike"]
    assert [w.step for w in spikes] == [200]


def test_a_worse_spike_refires_within_the_cooldown() -> None:
    r = realistic(300)
    r.steps[200]["loss"] *= 3.5
    r.steps[230]["loss"] *= 8.0
    spikes = [w for w in run(r) if w.rule == "loss_spike"]
    assert [w.step for w in spikes] == [200, 230]


def test_steps_going_back_rearm_the_rules() -> None:
    """After a rollback the trainer replays steps; the same anomaly must be reported again."""
    monitor = HealthMonitor()
    for s in range(100):
        monitor.observe_step(s, 2.0, 1.0, 1e-3)
    first = monitor.observe_step(100, math.nan, 1.0, 1e-3)
    for s in range(90, 100):  # rolled back to step 90
        assert monitor.observe_step(s, 2.0, 1.0, 1e-3) == []
    again = monitor.observe_step(100, math.nan, 1.0, 1e-3)
    assert [w.rule for w in first] == [w.rule for w in again] == ["nonfinite"]


# --------------------------------------------------------------------------- stalled and oom


def test_check_stalled() -> None:
    monitor = HealthMonitor()
    monitor.observe_step(42, 2.0, 1.0, 1e-3)
    assert monitor.check_stalled(now=1030.0, last_event_time=1000.0, typical_interval_s=2.0) == []
    (w,) = monitor.check_stalled(now=1100.0, last_event_time=1000.0, typical_interval_s=2.0)
    assert (w.rule, w.step, w.evidence["silent_s"]) == ("stalled", 42, 100.0)
    assert (
        monitor.check_stalled(now=1150.0, last_event_time=1000.0, typical_interval_s=2.0) == []
    )  # already said
    assert [
        x.rule
        for x in monitor.check_stalled(now=1210.0, last_event_time=1000.0, typical_interval_s=2.0)
    ] == ["stalled"]
    # a slow run (one event a minute) is not stalled after two minutes
    assert monitor.check_stalled(now=2120.0, last_event_time=2000.0, typical_interval_s=60.0) == []
    assert (
        monitor.check_stalled(now=2700.0, last_event_time=2000.0, typical_interval_s=None)[0].rule
        == "stalled"
    )


def test_oom_warning() -> None:
    retry = oom_warning(7, batch_size=16, grad_accum=2, new_batch_size=8, new_grad_accum=4)
    assert (retry.rule, retry.severity, retry.step) == ("oom", "warning", 7)
    assert "8 x 4" in retry.message and "batch" in retry.tip
    final = oom_warning(7, batch_size=1, grad_accum=32)
    assert final.severity == "critical" and "nothing smaller" in final.message


# --------------------------------------------------------------------------- events and state


def test_warning_round_trips_through_an_event() -> None:
    (w,) = [x for x in run(s_nonfinite_loss()) if x.rule == "nonfinite"]
    record = make_record("warning", w.step, **w.to_event_fields())
    back = HealthWarning.from_event(decode_record(encode_record(record)))
    assert key(back) == key(w)
    assert math.isnan(back.evidence["loss"])
    assert HealthWarning.from_event({"event": "warning", "step": 3}).rule == ""
    odd = HealthWarning.from_event({"step": "x", "evidence": [1], "rule": 5})
    assert (odd.step, odd.evidence, odd.rule) == (0, {}, "5")


def test_every_rule_has_a_tip_and_scenario_or_test() -> None:
    from cockpit.health import TIPS

    assert set(TIPS) == set(RULES)
    covered = {v[1] for v in SCENARIOS.values()} | {"stalled", "oom"}
    covered |= {
        "variant_instability"
    }  # tests/test_streams.py (needs a preset with num_streams > 1)
    assert covered == set(RULES)


def test_replay_reads_event_records() -> None:
    """The trainer's step and eval records, through the event encoding, give what direct calls give."""
    r = s_loss_spike()
    records = []
    for kind, op in r.ops():
        fields = {k: v for k, v in op.items() if k != "step"}
        records.append(decode_record(encode_record(make_record(kind, op["step"], **fields))))
    records.insert(5, make_record("sample", 5, text="hello"))
    replayed = HealthMonitor(r.preset, gpu_memory_bytes=r.gpu_memory_bytes).replay(records)
    assert [key(w) for w in replayed] == [key(w) for w in run(r)]
    assert [w.rule for w in replayed] == ["loss_spike"]


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize("cut_frac", [0.3, 0.5, 0.75])
def test_state_survives_a_checkpoint(name: str, cut_frac: float) -> None:
    series = SCENARIOS[name][0]()
    ops = series.ops()
    cut = int(len(ops) * cut_frac)
    whole_monitor = HealthMonitor(series.preset, gpu_memory_bytes=series.gpu_memory_bytes)
    whole = feed(whole_monitor, ops)

    first = HealthMonitor(series.preset, gpu_memory_bytes=series.gpu_memory_bytes)
    before = feed(first, ops[:cut])
    text = json.dumps(first.state_dict(), allow_nan=False)  # strict JSON: no NaN in the state
    assert len(text) < 20000
    resumed = HealthMonitor(series.preset, gpu_memory_bytes=series.gpu_memory_bytes)
    resumed.load_state_dict(json.loads(text))
    after = feed(resumed, ops[cut:])
    assert [key(w) for w in before + after] == [key(w) for w in whole]
    assert json.loads(json.dumps(resumed.state_dict())) == json.loads(
        json.dumps(whole_monitor.state_dict())
    )


def test_state_stays_small_on_a_long_run() -> None:
    monitor = HealthMonitor(make_preset(max_steps=5000))
    rng = random.Random(1)
    for s in range(5000):
        monitor.observe_step(s, 2.0 + rng.random(), 1.0 + rng.random(), None, 1000.0)
        if s % 100 == 0:
            monitor.observe_eval(s, 2.0, 1.9)
    assert len(json.dumps(monitor.state_dict())) < 8000


def test_after_a_rollback_the_monitor_forgets_the_discarded_steps() -> None:
    """A reader replaying a log with a rollback ends up where the trainer's restored monitor was."""
    r = realistic(200)
    again = realistic(200, seed=9)  # the steps trained a second time see other batches
    ops_first = [("step", s) for s in r.steps[:150]]
    ops_again = [("step", s) for s in again.steps[120:200]]
    replayed = HealthMonitor(r.preset)
    feed(replayed, ops_first)
    after_replayed = feed(replayed, ops_again)  # steps go back from 149 to 120
    restored = HealthMonitor(r.preset)
    feed(restored, ops_first[:120])
    after_restored = feed(restored, ops_again)
    assert [key(w) for w in after_replayed] == [key(w) for w in after_restored]
    assert replayed.state_dict() == restored.state_dict()


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"version": 1, "loss": [1.0, 2.0]},
        {"version": 2, "loss": "bad", "evals": [[1]]},
        {"version": 99},
    ],
)
def test_an_unreadable_state_starts_afresh(state: dict) -> None:
    monitor = HealthMonitor(make_preset())
    monitor.observe_step(5, 2.0, 1.0, 1e-3)
    monitor.load_state_dict(state)
    assert monitor.state_dict() == HealthMonitor(make_preset()).state_dict()


_any_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0.0, max_value=10.0),
    st.none(),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            _any_float, _any_float, _any_float, _any_float, st.booleans(), st.integers(-3, 3)
        ),
        max_size=120,
    ),
    st.lists(st.tuples(_any_float, _any_float), max_size=8),
)
def test_any_input_is_survived_and_the_state_stays_strict_json(steps, evals) -> None:
    """Garbage in (NaN, inf, huge, negative, missing, steps going back) never raises or poisons the state."""
    monitor = HealthMonitor(make_preset(), gpu_memory_bytes=GIB)
    step = 0
    for i, (loss, grad, lr, tps, skipped, jump) in enumerate(steps):
        step = max(0, step + jump)
        for w in monitor.observe_step(
            step, loss, grad, lr, tps, vram_bytes=tps, scaler_skipped=skipped
        ):
            assert w.rule in RULES
            encode_record(make_record("warning", w.step, **w.to_event_fields()))
        if evals and i % 20 == 0:
            val, train = evals[(i // 20) % len(evals)]
            monitor.observe_eval(step, val, train)
    state = json.loads(json.dumps(monitor.state_dict(), allow_nan=False))
    resumed = HealthMonitor(make_preset(), gpu_memory_bytes=GIB)
    resumed.load_state_dict(state)
    assert json.loads(json.dumps(resumed.state_dict())) == state


# --------------------------------------------------------------------------- the layout


def test_each_rule_lives_in_one_family_with_its_tip() -> None:
    from cockpit.health import FAMILIES, TIPS

    names = [rule.name for family in FAMILIES for rule in family.rules]
    assert len(names) == len(set(names)) == len(RULES)
    assert set(names) == set(RULES) == set(TIPS)
    for family in FAMILIES:
        for rule in family.rules:
            assert rule.tip and TIPS[rule.name] == rule.tip
            assert rule.severity in SEVERITIES
    assert ANOMALY_RULES == {"nonfinite", "loss_spike"}


def test_threshold_names_and_state_keys_are_unique_across_families() -> None:
    """HealthConfig overrides a threshold by its name, and the state is one flat dict."""
    from dataclasses import fields

    from cockpit.health import FAMILIES
    from cockpit.health.base import Context
    from cockpit.health.monitor import Dedup

    thresholds = [f.name for f in fields(Dedup)]
    thresholds += [f.name for family in FAMILIES for f in fields(family.Thresholds)]
    assert len(thresholds) == len(set(thresholds))
    ctx = Context(make_preset().train, None, emit=lambda *args, **kwargs: True)
    keys = ["version", "last_step", "fired"]  # the monitor's own
    keys += [k for family in FAMILIES for k in family(family.Thresholds(), ctx).state()]
    assert len(keys) == len(set(keys)) == len(HealthMonitor(make_preset()).state_dict())


def test_health_config_overrides_a_threshold_by_name() -> None:
    config = HealthConfig(cooldown_steps=100, stall_min_s=0.5, loss_window=30)
    assert (config.cooldown_steps, config.stall_min_s, config.loss_window) == (100, 0.5, 30)
    assert config.families["stall"].stall_factor == 10.0  # the others keep their defaults
    assert config == HealthConfig(loss_window=30, stall_min_s=0.5, cooldown_steps=100)
    assert config != HealthConfig()
    with pytest.raises(TypeError, match="loss_windw"):
        HealthConfig(loss_windw=30)
    with pytest.raises(AttributeError):
        _ = config.no_such_threshold


# The keys of a version-2 state, as checkpoints written before the rules were split hold them:
# such a checkpoint must still load, so a change here needs a new STATE_VERSION and a reader.
V2_KEYS = {
    "version", "loss", "loss_streak", "loss_episode", "grad", "grad_flags", "grad_log_ratios",
    "last_grad", "skip_streak", "lr_zero_streak", "lr_bad_streak", "peak_lr", "last_lr", "tps",
    "tps_streak", "skip_next_tps", "evals", "best_val", "evals_since_best", "last_step", "fired",
    "stall_fired",
}  # fmt: skip


def test_the_state_keeps_the_version_2_format() -> None:
    monitor = HealthMonitor(make_preset())
    feed(monitor, s_loss_spike().ops()[:250])
    state = monitor.state_dict()
    assert state["version"] == STATE_VERSION == 2
    assert set(state) == V2_KEYS


def test_docs_list_every_rule_with_its_tip_and_every_threshold() -> None:
    """docs/health.md has a row per rule with its tip word for word, and each threshold's default."""
    from dataclasses import fields
    from pathlib import Path

    from cockpit.health import FAMILIES, TIPS
    from cockpit.health.monitor import Dedup

    text = (Path(__file__).parent.parent / "docs" / "health.md").read_text()
    for rule in RULES:
        assert f"| `{rule}` |" in text, rule
        assert f"| {TIPS[rule]} |" in text, rule
    for part in (Dedup, *(family.Thresholds for family in FAMILIES)):
        for f in fields(part):
            assert f"| `{f.name}` | {f.default} |" in text, f.name
