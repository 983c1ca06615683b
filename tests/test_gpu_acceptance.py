"""The GPU acceptance run's parts that need no GPU: budgets, the number checks, the report, no-CUDA."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import acceptance as acc  # noqa: E402
import gpu_acceptance as ga  # noqa: E402


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run(body, budget_s=10.0, clock=None, overall=None):
    return acc.run_check(
        acc.Check("9", "t", budget_s), body, clock=clock or FakeClock(), overall=overall
    )


# --------------------------------------------------------------------------- run_check and budgets


def test_a_check_passes_only_when_every_criterion_holds():
    def good(check, budget):
        check.fig("x", 1.5)
        check.expect(True, "one")
        check.expect(True, "two")

    def bad(check, budget):
        check.expect(True, "one")
        check.expect(False, "two")

    assert run(good).status == "pass"
    failed = run(bad)
    assert failed.status == "fail" and failed.criteria == [("one", True), ("two", False)]


def test_a_check_that_tests_nothing_fails():
    check = run(lambda c, b: None)
    assert check.status == "fail" and "no criterion" in check.notes[0]


def test_skip_timeout_and_error_are_reported_with_the_figures_gathered_so_far():
    def skips(check, budget):
        raise acc.Skip("needs a GPU")

    def child_times_out(check, budget):
        check.fig("before", 1)
        raise subprocess.TimeoutExpired(["x"], 5)

    def breaks(check, budget):
        check.fig("partial", 2)
        raise KeyError("oops")

    assert run(skips).status == "skip" and run(skips).notes == ["needs a GPU"]
    timed = run(child_times_out)
    assert timed.status == "timeout" and timed.figures == {"before": 1}
    erred = run(breaks)
    assert erred.status == "error" and erred.figures == {"partial": 2}
    assert "KeyError" in erred.notes[0] and "test_gpu_acceptance.py" in erred.notes[0]


def test_the_budget_runs_out_and_an_overrun_fails_a_passing_check():
    clock = FakeClock()

    def waits(check, budget):
        assert budget.timeout() == pytest.approx(10.0)
        clock.now += 11
        budget.timeout()  # raises: nothing left

    assert run(waits, clock=clock).status == "timeout"

    def slow_but_right(check, budget):
        clock.now += 12
        check.expect(True, "right")

    over = run(slow_but_right, clock=clock)
    assert over.status == "fail" and over.seconds == pytest.approx(12)
    assert "over its budget" in over.notes[-1]


def test_a_check_gets_no_more_than_the_run_has_left():
    clock = FakeClock()
    overall = acc.Budget(3.0, clock)
    seen = []

    def body(check, budget):
        seen.append(budget.remaining())
        check.expect(True, "ran")

    assert run(body, clock=clock, overall=overall).status == "pass"
    assert seen == [pytest.approx(3.0)]
    clock.now += 5
    late = run(body, clock=clock, overall=overall)
    assert late.status == "timeout" and len(seen) == 1  # not even started


# --------------------------------------------------------------------------- the number checks


def test_memory_error_sign_and_the_target_band():
    assert acc.pct_error(110, 100) == pytest.approx(10.0)  # over-estimate: +
    assert acc.pct_error(96, 100) == pytest.approx(-4.0)  # under: -
    assert acc.memory_error_ok(-5.0) and acc.memory_error_ok(10.0)
    assert not acc.memory_error_ok(-5.1) and not acc.memory_error_ok(10.1)
    with pytest.raises(ValueError):
        acc.pct_error(1, 0)


def test_loss_falling_needs_finite_falling_losses():
    assert acc.loss_falling([1, 2, 3, 4, 5] * 4)[2] is False  # rising at the end
    first, last, ok = acc.loss_falling([5.0] * 10 + [2.0] * 10)
    assert ok and first == 5.0 and last == 2.0
    assert not acc.loss_falling([5.0, 4.0, math.nan, 1.0])[2]
    assert not acc.loss_falling([1.0])[2]


def step(n, loss=1.0, tokens=None, mb=8, accum=1, skipped=False):
    return {
        "event": "step",
        "step": n,
        "loss": loss,
        "tokens": tokens if tokens is not None else n * 256,
        "micro_batch": mb,
        "grad_accum": accum,
        "scaler_skipped": skipped,
    }


def test_tokens_per_step_from_the_cumulative_counts():
    steps = [step(1), step(2), step(5)]
    assert acc.tokens_per_step(steps) == [256, 256, 256]
    assert acc.tokens_per_step([step(1), step(2, tokens=700)]) == [256, 444]


def oom_records(splits, end="finished", tokens_step=256):
    recs = [
        {"event": "warning", "rule": "oom", "evidence": {"batch_size": 8, "new_batch_size": 4}},
    ]
    recs += [
        step(i + 1, mb=m, accum=a, tokens=(i + 1) * tokens_step) for i, (m, a) in enumerate(splits)
    ]
    recs.append({"event": "end", "reason": end})
    return recs


def test_an_oom_retry_halves_keeps_the_tokens_and_finishes():
    good = acc.oom_retry_result(oom_records([(4, 2)] * 3), batch=8)
    assert acc.oom_retried(good), good
    assert good["tokens_per_step"] == [256] and good["sequences_per_step"] == [8]
    assert not acc.oom_retried(
        acc.oom_retry_result(oom_records([(4, 1)] * 3), 8)
    )  # fewer sequences
    assert not acc.oom_retried(acc.oom_retry_result(oom_records([(4, 2)], end="error"), 8))
    no_warning = [r for r in oom_records([(4, 2)]) if r["event"] != "warning"]
    assert not acc.oom_retried(acc.oom_retry_result(no_warning, 8))
    uneven = oom_records([(4, 2)] * 2) + [step(3, mb=4, accum=2, tokens=900)]
    assert not acc.oom_retried(acc.oom_retry_result(uneven, 8))


def test_the_scaler_skips_the_bad_step_and_recovers():
    losses = [3.0 - 0.02 * i for i in range(1, 40)]
    steps = [step(i, loss) for i, loss in enumerate(losses, 1)]
    steps += [step(40, math.nan, skipped=True)]
    steps += [step(i, 2.0 - 0.01 * (i - 40)) for i in range(41, 60)]
    r = acc.scaler_recovery(steps, 40)
    assert r["skipped_at_bad_step"] and r["losses_finite_after"] and r["skips_after"] == []
    assert acc.scaler_recovered(r)
    not_skipped = [dict(s, scaler_skipped=False) if s["step"] == 40 else s for s in steps]
    assert not acc.scaler_recovered(acc.scaler_recovery(not_skipped, 40))
    diverged = [dict(s, loss=math.nan) if s["step"] > 50 else s for s in steps]
    assert not acc.scaler_recovered(acc.scaler_recovery(diverged, 40))


def test_losses_continue_after_a_resume_but_not_after_a_restart():
    before = [step(i, 2.0) for i in range(1, 41)]
    carried = acc.resume_continuity(before, [step(i, 2.05) for i in range(41, 60)])
    assert acc.losses_continue(carried)
    restarted = acc.resume_continuity(before, [step(i, 5.5) for i in range(41, 60)])
    assert not acc.losses_continue(restarted)
    from_scratch = acc.resume_continuity(before, [step(i, 2.0) for i in range(1, 20)])
    assert not acc.losses_continue(from_scratch)  # back at step 1
    gap = acc.resume_continuity(before, [step(i, 2.0) for i in range(45, 60)])
    assert not acc.losses_continue(gap)  # steps lost


def test_nvidia_smi_line_and_the_comparison_with_nvml():
    smi = acc.parse_smi_line("NVIDIA H100 80GB HBM3, 1000, 81559, 3, 34, [N/A]")
    assert smi["memory_used_mib"] == 1000 and smi["power_w"] is None
    ours = {
        "memory_used_mib": 1030,
        "memory_total_mib": 81559,
        "utilization": 0,
        "temperature_c": 40,
    }
    rows = {name: ok for name, _, _, ok in acc.nvml_comparison(ours, smi)}
    assert rows == {
        "memory_used_mib": True,  # within 64 MiB
        "memory_total_mib": True,
        "utilization": True,
        "temperature_c": False,  # 6 degrees apart
    }  # power: nvidia-smi has none, so it is not compared
    with pytest.raises(ValueError):
        acc.parse_smi_line("only, three, fields")


# --------------------------------------------------------------------------- the report


def test_the_report_lists_every_check_with_its_criteria_and_figures(tmp_path):
    checks = [
        acc.Check("1", "speed", 60, "pass", 12.3, {"tokens/s": 123456.7}, [("fast", True)]),
        acc.Check("2", "memory", 30, "fail", 31, {"error": -7.5}, [("within", False)], ["why"]),
        acc.Check("3", "nvml", 10, "skip", 0, notes=["needs a CUDA GPU"]),
    ]
    text = acc.render_report(
        checks, {"device": "NVIDIA H100", "date": "2026-11-22", "torch": "2.13"}
    )
    assert text.startswith("# GPU acceptance run: NVIDIA H100, 2026-11-22")
    assert "| 1. speed | PASS | 12 | 60 |" in text and "| 3. nvml | skipped | 0 | 10 |" in text
    assert "- [x] fast" in text and "- [ ] within" in text and "| tokens/s | 123,457 |" in text
    assert "Note: needs a CUDA GPU" in text and "1 of 3 passed, 1 skipped." in text
    assert acc.exit_code(checks) == 1 and acc.exit_code(checks[::2]) == 0
    path = acc.report_path(tmp_path, "NVIDIA H100 80GB HBM3", date(2026, 11, 22))
    assert path == tmp_path / "nvidia-h100-80gb-hbm3-2026-11-22.md"


# --------------------------------------------------------------------------- the harness


def test_without_cuda_it_says_so_in_one_line_and_exits_0(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(ga, "cuda_device_name", lambda: None)
    monkeypatch.setattr(ga, "RESULTS", tmp_path)
    assert ga.main([]) == 0
    out = capsys.readouterr()
    assert len(out.out.strip().splitlines()) == 1 and "no CUDA GPU" in out.out
    assert list(tmp_path.iterdir()) == []


def test_a_failing_check_does_not_stop_the_others_and_all_reach_the_report(monkeypatch, tmp_path):
    def breaks(ctx):
        def body(check, budget):
            raise RuntimeError("boom")

        return body

    def passes(ctx):
        return lambda check, budget: check.expect(True, f"device {ctx.device}")

    monkeypatch.setattr(
        ga,
        "CHECKS",
        [("1", "breaks", 5, breaks), ("2", "passes", 5, passes), ("3", "unselected", 5, passes)],
    )
    out = tmp_path / "report.md"
    code = ga.main(["--device", "cpu", "--only", "1,2", "--out", str(out)])
    text = out.read_text()
    assert code == 1
    assert "| 1. breaks | ERROR |" in text and "RuntimeError: boom" in text
    assert "| 2. passes | PASS |" in text and "- [x] device cpu" in text
    assert "| 3. unselected | skipped |" in text and "not selected (--only)" in text


def test_quick_mode_runs_a_real_check_end_to_end_on_cpu(tmp_path):
    """Check 5 in --quick mode: a real training child with an injected OOM, read back from its
    events (a generous --slack: the budget is not what this test is about)."""
    out = tmp_path / "quick.md"
    code = ga.main(
        ["--device", "cpu", "--quick", "--only", "5", "--out", str(out), "--slack", "50"]
    )
    text = out.read_text()
    assert code == 0, text
    assert "| 5. OOM retry from a real out-of-memory | PASS |" in text
    assert "| new_micro_batches | [4, 2] |" in text and "| end_reason | finished |" in text
