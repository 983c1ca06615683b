"""RunHistory, the core bookkeeping behind the run screen: bounded series, rollbacks, rates."""

from __future__ import annotations

import math

from cockpit.rundir import make_record
from cockpit.runs.history import RunHistory, Series, envelope


def step(n: int, t: float, loss: float = 2.0) -> dict:
    record = make_record("step", n, loss=loss, lr=1e-3, grad_norm=0.5, tokens_per_s=1000.0, mfu=0.3)
    record["time"] = t
    return record


def test_series_stays_bounded_and_keeps_the_latest_points():
    series = Series(max_points=100)
    for n in range(1, 10001):
        series.add(n, float(n))
    assert len(series) <= 100
    assert series.steps[0] == 1 and series.steps[-1] >= 9900
    assert series.steps == sorted(series.steps)


def test_a_repeated_step_replaces_the_later_points():
    series = Series()
    for n in range(1, 11):
        series.add(n, 1.0)
    series.add(6, 9.0)  # a rollback to step 5 trains step 6 again
    assert series.steps == [1, 2, 3, 4, 5, 6] and series.values[-1] == 9.0


def test_nonfinite_values_are_kept_but_not_plotted():
    series = Series()
    series.add(1, 1.0)
    series.add(2, math.nan)
    assert len(series) == 2 and series.finite() == ([1], [1.0])


def test_eta_from_the_recent_step_rate_and_none_once_ended():
    history = RunHistory(max_steps=1000)
    history.ingest(
        [make_record("start", 0, max_steps=1000)]
        + [step(n, 100.0 + n * 0.5) for n in range(1, 101)]
    )
    assert history.steps_per_s() == 2.0
    assert history.eta_s() == 450.0
    assert history.tokens_per_s == 1000.0 and history.mfu == 0.3
    history.add(make_record("end", 100, reason="stopped"))
    assert history.eta_s() is None


def test_evals_warnings_samples_and_log():
    history = RunHistory(max_steps=100)
    history.ingest(
        [
            make_record("eval", 50, val_loss=2.5, best_val_loss=2.5),
            make_record("eval", 100, val_loss=2.7, best_val_loss=2.5),
            make_record(
                "warning",
                60,
                rule="loss_spike",
                severity="warning",
                message="spike",
                tip="lower lr",
            ),
            make_record(
                "warning", 61, rule="rollback", severity="info", message="rolled back", tip=""
            ),
            make_record("sample", 100, text="hello"),
        ]
    )
    assert history.best_val_loss == 2.5 and len(history.val_loss) == 2
    assert history.warning_steps() == [60]  # info notices are not marked on the plot
    assert history.sample == "hello" and history.sample_step == 100
    assert any("[loss_spike]" in line for line in history.log)


def test_envelope_cuts_points_but_keeps_a_spike_and_the_ends():
    steps = list(range(1, 5001))
    values = [1.0] * 5000
    values[3333] = 50.0  # one spike
    out_steps, out_values = envelope(steps, values, 40)
    assert len(out_steps) <= 80
    assert 50.0 in out_values and 3334 in out_steps
    assert out_steps == sorted(out_steps) and out_steps[0] == 1


def test_envelope_leaves_short_series_alone_and_skips_non_finite_points():
    assert envelope([1, 2, 3], [3.0, 2.0, 1.0], 40) == ([1, 2, 3], [3.0, 2.0, 1.0])
    series = Series()
    for n in range(1, 1001):
        series.add(n, math.nan if n == 500 else float(n))
    steps, values = series.envelope(10)
    assert len(steps) <= 20 and all(math.isfinite(v) for v in values)
    assert max(values) == 1000.0 and min(values) == 1.0


def timed(event: str, n: int, t: float, **fields) -> dict:
    record = make_record(event, n, **fields)
    record["time"] = t
    return record


def test_eta_counts_down_between_records_and_last_update_ages():
    history = RunHistory(max_steps=1000)
    history.ingest(
        [timed("start", 0, 100.0, max_steps=1000)]
        + [step(n, 100.0 + n * 0.5) for n in range(1, 101)]
    )
    assert history.eta_s(now=150.0) == 450.0  # the last step's own time: nothing to take off
    assert history.eta_s(now=160.0) == 440.0
    assert history.eta_s(now=10_000.0) == 0.0  # never below zero
    assert history.since_update_s(157.5) == 7.5
    assert RunHistory().since_update_s(1.0) is None


def test_phase_follows_start_first_step_eval_and_checkpoint():
    history = RunHistory(max_steps=100)
    history.eval_interval = 50
    assert history.phase() == "starting"
    history.add(timed("start", 0, 1.0, max_steps=100))
    assert history.phase() == "first step"
    history.add(step(10, 2.0))
    assert history.phase() == "training"
    history.add(step(50, 3.0))
    assert history.phase() == "evaluating"
    history.add(timed("warning", 50, 3.1, rule="r", severity="warning", message="m", tip=""))
    assert history.phase() == "evaluating"  # a warning does not end the eval
    history.add(timed("eval", 50, 4.0, val_loss=2.0))
    assert history.phase() == "checkpointing"
    history.add(timed("checkpoint", 50, 5.0, path="c", kind="last"))
    assert history.phase() == "training"
    history.add(step(100, 6.0))
    assert history.phase() == "evaluating"  # the final eval
    history.add(timed("end", 100, 7.0, reason="finished"))
    assert history.phase() == ""
    history.add(timed("start", 100, 50.0, max_steps=200))  # a resume
    assert history.phase() == "first step"


def test_elapsed_after_a_resume_leaves_out_the_stopped_gap():
    history = RunHistory(max_steps=100)
    history.ingest(
        [timed("start", 0, 100.0), step(10, 110.0), timed("end", 10, 112.0, reason="stopped")]
    )
    assert history.elapsed_s() == 12.0
    history.ingest([timed("start", 10, 1000.0), step(20, 1010.0)])
    assert history.elapsed_s() == 22.0 and history.elapsed_s(now=1020.0) == 32.0
    history.add(timed("end", 20, 1015.0, reason="finished"))
    assert history.elapsed_s(now=5000.0) == 27.0
    # the end line's "after" is the same time trained as the status line's elapsed
    assert history.log[-1].endswith("after 27.0s"), history.log[-1]


def test_the_log_tail_keeps_up_with_the_steps_that_arrive():
    """max_steps 300 logs about every 3rd step; records arriving every 10 steps each get a line."""
    history = RunHistory(max_steps=300)
    history.ingest([step(n, float(n)) for n in range(10, 101, 10)])
    logged = [line.split(" | ")[0] for line in history.log]
    assert logged[-1] == "step 100/300" and len(logged) == 10
