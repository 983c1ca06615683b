"""The GPU acceptance run's parts that need no GPU: budgets, the number checks, the report, no-CUDA."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import types
from datetime import date
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import acceptance as acc  # noqa: E402
import gpu_acceptance as ga  # noqa: E402

from cockpit.plan.gpu import GIB, GpuStatus  # noqa: E402


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


def test_a_check_gets_no_more_than_the_run_has_left_and_none_starts_without_time():
    clock = FakeClock()
    overall = acc.Budget(20.0, clock)
    seen = []

    def body(check, budget):
        seen.append(budget.remaining())
        check.expect(True, "ran")

    assert run(body, budget_s=30, clock=clock, overall=overall).status == "pass"
    assert seen == [pytest.approx(20.0)]
    clock.now += 8  # 12 s left: less than the 15 s a check needs to start
    late = run(body, budget_s=30, clock=clock, overall=overall)
    assert late.status == "skip" and late.for_time and len(seen) == 1  # not even started
    assert late.word == "SKIPPED (time)" and "12 s of the run's overall time left" in late.reason
    assert run(body, budget_s=10, clock=clock, overall=overall).status == "pass"  # 10 s fits


def test_a_check_cut_short_by_the_deadline_says_so():
    clock = FakeClock()
    overall = acc.Budget(20.0, clock)

    def waits(check, budget):
        clock.now += 25
        budget.timeout()

    late = run(waits, budget_s=60, clock=clock, overall=overall)
    assert late.status == "timeout" and late.word == "FAILED (timeout)"
    assert "cut short by the run's overall deadline" in late.reason


def test_an_interrupt_marks_the_check_and_goes_on_up():
    def interrupted(check, budget):
        check.fig("before", 1)
        raise acc.Interrupted("SIGTERM")

    check = acc.Check("1", "t", 10)
    with pytest.raises(acc.Interrupted):
        acc.run_check(check, interrupted, clock=FakeClock())
    assert check.status == "interrupted" and check.word == "FAILED (interrupted)"
    assert check.figures == {"before": 1} and "SIGTERM" in check.reason


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
    assert "| 1. speed | PASS | 12 | 60 |  |" in text
    assert "| 2. memory | FAILED | 31 | 30 | within |" in text  # the failed criterion is the reason
    assert "| 3. nvml | SKIPPED | 0 | 10 | needs a CUDA GPU |" in text
    assert "- [x] fast" in text and "- [ ] within" in text and "| tokens/s | 123,457 |" in text
    assert "Note: needs a CUDA GPU" in text and "1 of 3 passed, 1 failed, 1 skipped." in text
    assert acc.exit_code(checks) == 1 and acc.exit_code(checks[::2]) == 0
    path = acc.report_path(tmp_path, "NVIDIA H100 80GB HBM3", date(2026, 11, 22))
    assert path == tmp_path / "nvidia-h100-80gb-hbm3-2026-11-22.md"
    acc.write_report(path, checks, {"device": "NVIDIA H100"})
    assert path.read_text().startswith("# GPU acceptance run: NVIDIA H100")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


# --------------------------------------------------------------------------- the harness


def test_without_cuda_it_says_so_in_one_line_and_exits_0(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(ga, "cuda_facts", lambda: {"problem": "torch 2.13.0+cpu sees no CUDA GPU"})
    assert ga.main(["--results", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert len(out.out.strip().splitlines()) == 1 and "no CUDA GPU" in out.out
    assert "sees no CUDA GPU" in out.out
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
    code = ga.main(["--device", "cpu", "--quick", "--only", "1,2", "--out", str(out)])
    text = out.read_text()
    assert code == 1
    assert "| 1. breaks | FAILED (error) |" in text and "RuntimeError: boom" in text
    assert "| 2. passes | PASS |" in text and "- [x] device cpu" in text
    assert "| 3. unselected | SKIPPED |" in text and "not selected (--only)" in text


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


# --------------------------------------------------------------------------- the run as a whole


def fake_checks(monkeypatch, *bodies):
    """CHECKS replaced by (key, title, 5 s budget, body) for each body given."""

    def maker(body):
        return lambda ctx: body

    monkeypatch.setattr(
        ga, "CHECKS", [(str(i), f"c{i}", 5, maker(b)) for i, b in enumerate(bodies, 1)]
    )


def test_the_report_is_rewritten_after_every_check(monkeypatch, tmp_path):
    out = tmp_path / "report.md"
    seen = []

    def first(check, budget):
        check.expect(True, "first ran")

    def second(check, budget):
        seen.append(out.read_text())  # what a kill at this moment would leave
        check.expect(True, "second ran")

    fake_checks(monkeypatch, first, second)
    assert ga.main(["--device", "cpu", "--quick", "--out", str(out)]) == 0
    (during,) = seen
    assert "| 1. c1 | PASS |" in during
    assert "| 2. c2 | NOT FINISHED (the run stopped during it) |" in during
    assert "| 2. c2 | PASS |" in out.read_text()


def test_sigterm_ends_the_check_and_the_run_and_the_report_is_written(monkeypatch, tmp_path):
    out = tmp_path / "report.md"
    import os
    import signal

    def first(check, budget):
        check.expect(True, "first ran")

    def killed(check, budget):
        check.fig("partial", 7)
        os.kill(os.getpid(), signal.SIGTERM)
        check.expect(True, "never reached")

    def never(check, budget):
        raise AssertionError("ran after SIGTERM")

    fake_checks(monkeypatch, first, killed, never)
    before = signal.getsignal(signal.SIGTERM)
    assert ga.main(["--device", "cpu", "--quick", "--out", str(out)]) == 1
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is put back
    text = out.read_text()
    assert "| 1. c1 | PASS |" in text
    assert "| 2. c2 | FAILED (interrupted) |" in text and "SIGTERM" in text
    assert "| partial | 7 |" in text
    assert "| 3. c3 | SKIPPED |" in text and "not run: the run was interrupted" in text


def test_past_the_overall_deadline_the_rest_is_skipped_for_time(monkeypatch, tmp_path):
    clock = FakeClock()
    monkeypatch.setattr(ga, "Budget", lambda seconds: acc.Budget(seconds, clock))

    def spends(check, budget):
        clock.now += 538  # of the run's 540: 2 s left, less than a 5 s budget
        check.expect(True, "ran")

    def late(check, budget):
        raise AssertionError("started with no time left")

    fake_checks(monkeypatch, spends, late, late)
    out = tmp_path / "report.md"
    assert ga.main(["--device", "cpu", "--quick", "--out", str(out)]) == 0  # skips are not failures
    text = out.read_text()
    assert "| 1. c1 | PASS |" in text
    assert "| 2. c2 | SKIPPED (time) |" in text and "| 3. c3 | SKIPPED (time) |" in text
    assert "2 s of the run's overall time left" in text


# --------------------------------------------------------------------------- CUDA, faked


H100 = "NVIDIA H100 80GB HBM3"


def test_the_cuda_query_child_reads_torch_and_says_why_not(monkeypatch, capsys):
    """The query the child runs, executed here with torch.cuda faked; then the parsing of its line."""
    import torch

    props = types.SimpleNamespace(name=H100, total_memory=85_520_809_984, major=9, minor=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    exec(compile(ga._CUDA_FACTS, "cuda_facts", "exec"), {})
    facts = json.loads(capsys.readouterr().out)
    assert facts["name"] == H100 and facts["cc"] == [9, 0] and facts["count"] == 1

    def child(stdout, stderr="", code=0):
        return lambda *a, **k: subprocess.CompletedProcess([], code, stdout, stderr)

    monkeypatch.setattr(ga.subprocess, "run", child(json.dumps(facts) + "\n"))
    assert ga.cuda_facts() == facts
    monkeypatch.setattr(ga.subprocess, "run", child("", "ImportError: libcuda.so.1", 1))
    assert ga.cuda_facts() == {
        "problem": "the CUDA query failed (exit 1): ImportError: libcuda.so.1"
    }


def test_without_nvml_the_spec_comes_from_torch_with_the_catalog_peak(monkeypatch):
    monkeypatch.setattr(ga, "local_gpu_spec", lambda: None)
    spec = ga.gpu_spec({"name": H100, "total_memory": 85_520_809_984, "cc": [9, 0]})
    assert spec.name == H100 and spec.memory_bytes == 85_520_809_984
    assert spec.peak_flops("bf16") == 989e12


def cuda_ctx(tmp_path, gpu=H100):
    from cockpit.plan.gpu import lookup_gpu, spec_for_status

    status = GpuStatus(0, gpu, 80 * GIB, 0, 80 * GIB, 0.0, 30.0, 70.0, 700.0, (9, 0))
    spec = spec_for_status(status) if lookup_gpu(gpu) else None
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello world. " * 100)
    return ga.Context("cuda", False, tmp_path, corpus, spec)


def gpu_records(preset, *, steps=20, tok_s=400_000.0, mfu=None, dtype="bf16", loss0=4.0):
    """What a bf16 + compile run on an H100 logs: a start record, then step records every 10."""
    from cockpit.plan.estimate import flops_per_token

    fpt = flops_per_token(preset.model)
    mfu = fpt * tok_s / 989e12 if mfu is None else mfu
    tps = preset.train.batch_size * preset.train.grad_accum * preset.model.block_size
    recs = [{"event": "start", "time": 1000.0, "dtype": dtype, "compile": True, "step": 0}]
    for i in range(1, steps + 1):
        recs.append(
            {
                "event": "step",
                "step": 10 * i,
                "time": 1060.0 + 10 * i * tps / tok_s,
                "tokens": 10 * i * tps,
                "loss": loss0 / (1 + 0.1 * i),
                "tokens_per_s": tok_s,
                "mfu": mfu,
                "vram_bytes": 20 * GIB,
                "micro_batch": preset.train.batch_size,
                "grad_accum": preset.train.grad_accum,
            }
        )
    last = recs[-1]["time"]
    recs.append({"event": "end", "reason": "finished", "step": 10 * steps, "time": last + 75.0})
    return recs


def fake_train(monkeypatch, records_for, launched):
    def train(ctx, budget, preset, *, fault="", label="", env=None):
        launched.append((label, preset, fault))
        return ga.Trained(ctx.work / label, 0, records_for(preset))

    monkeypatch.setattr(ga, "train", train)
    monkeypatch.setattr(ga, "query_gpus", lambda: [])  # NvmlPeak reads nothing


def test_check_1_on_a_faked_h100_judges_mfu_against_the_peak(monkeypatch, tmp_path):
    launched = []
    fake_train(monkeypatch, gpu_records, launched)
    ctx = cuda_ctx(tmp_path)
    check = acc.run_check(acc.Check("1", "t", 60), ga.check_throughput(ctx))
    assert check.status == "pass", (check.criteria, check.notes)
    assert [label for label, _, _ in launched] == [
        "throughput-gpt2_124m",
        "throughput-small",
        "throughput-tiny_char",
    ]
    gpt2 = launched[0][1]
    assert (gpt2.train.dtype, gpt2.train.compile, gpt2.train.grad_accum) == ("bf16", True, 1)
    assert gpt2.train.max_steps == 200 and gpt2.data.tokenizer == "byte"
    assert check.figures["gpt2_124m start -> first logged step (s, compile included)"] > 60
    # the final eval (a second compile, in eval mode) is kept short and timed on its own
    assert gpt2.train.eval_steps == ga.FINAL_EVAL_STEPS
    end_s = check.figures["gpt2_124m last step -> end (s: final eval, its compile, checkpoint)"]
    assert end_s == pytest.approx(75.0)
    assert "gpt2_124m MFU (recomputed, peak 989 TFLOP/s)" in check.figures
    assert ctx.shared["gpt2_124m"][0] is gpt2  # check 4 reuses this run

    # an MFU the cockpit got wrong (a wrong peak, say the PCIe card's) fails the check
    fake_train(monkeypatch, lambda p: gpu_records(p, mfu=0.5), [])
    wrong = acc.run_check(acc.Check("1", "t", 60), ga.check_throughput(cuda_ctx(tmp_path)))
    assert wrong.status == "fail"
    assert any("MFU" in what and not ok for what, ok in wrong.criteria)
    # fp32 where bf16 was asked: fails too
    fake_train(monkeypatch, lambda p: gpu_records(p, dtype="fp32"), [])
    fp32 = acc.run_check(acc.Check("1", "t", 60), ga.check_throughput(cuda_ctx(tmp_path)))
    assert any("bf16" in what and not ok for what, ok in fp32.criteria)


def test_check_1_on_an_unknown_gpu_reports_no_mfu_but_still_judges_speed(monkeypatch, tmp_path):
    fake_train(monkeypatch, gpu_records, [])
    ctx = cuda_ctx(tmp_path, gpu="NVIDIA Future X9")
    ctx.gpu = ga.gpu_spec({"name": "NVIDIA Future X9", "total_memory": 80 * GIB, "cc": [12, 0]})
    check = acc.run_check(acc.Check("1", "t", 60), ga.check_throughput(ctx))
    assert any("not in the catalog" in n for n in check.notes)


def test_checks_2_4_5_build_their_full_size_runs_for_an_h100(monkeypatch, tmp_path):
    """The presets the GPU run launches are valid at full size (no quick shrink), and the
    criteria read the records as a GPU run writes them."""
    launched = []

    def records(preset):
        if preset.train.dtype == "fp16":  # check 2: the GradScaler skips the injected step 40
            recs = gpu_records(preset, steps=120)
            for r in recs:
                if r["event"] == "step":
                    r["step"] //= 10
                    r["scaler_skipped"] = r["step"] == 40
            return recs
        if preset.train.oom_retry and preset.train.max_steps == 6:  # check 5: halved once
            b = preset.train.batch_size
            warn = {"event": "warning", "rule": "oom", "evidence": {"new_batch_size": b // 2}}
            steps = [
                {"event": "step", "step": i, "tokens": i * b * 1024, "loss": 5.0,
                 "micro_batch": b // 2, "grad_accum": 2}
                for i in range(1, 7)
            ]  # fmt: skip
            return [warn, *steps, {"event": "end", "reason": "finished"}]
        return gpu_records(preset)

    fake_train(monkeypatch, records, launched)
    ctx = cuda_ctx(tmp_path)
    oom = acc.run_check(acc.Check("5", "t", 60), ga.check_oom(ctx))
    assert oom.status == "pass", (oom.criteria, oom.notes)
    (_, preset, fault) = launched[-1]
    assert fault == "" and preset.train.compile is False  # a real out-of-memory, eager
    from cockpit.plan.estimate import estimate

    too_big = estimate(preset, ctx.gpu, batch_size=preset.train.batch_size).memory.total_bytes
    assert too_big > 1.25 * ctx.gpu.memory_bytes
    half = estimate(preset, ctx.gpu, batch_size=preset.train.batch_size // 2).memory.total_bytes
    assert half <= 1.25 * ctx.gpu.memory_bytes  # the smallest such power of two

    fp16 = acc.run_check(acc.Check("2", "t", 60), ga.check_fp16(ctx))
    assert fp16.status == "pass", (fp16.criteria, fp16.notes)
    assert launched[-1][2] == "nan_at_step=40" and launched[-1][1].train.dtype == "fp16"

    suggestion = acc.run_check(acc.Check("4", "t", 60), ga.check_suggestion(ctx))
    assert suggestion.status == "pass", (suggestion.criteria, suggestion.notes)
    names = [p.name for label, p, _ in launched if label.startswith("suggested-")]
    assert names == ["gpt2_124m", "golf_baseline", "bdh_8gb"]  # no check 1 run to reuse here
    golf = launched[-2][1]
    assert golf.data.tokenizer == "byte" and golf.data.tokenizer_model == ""  # not FineWeb's
    assert golf.train.warmup_steps + golf.train.warmdown_steps <= 200
    assert all(p.train.max_steps == 200 and p.train.grad_accum == 1 for _, p, _ in launched[-3:])


def smi_run(line, code=0):
    return lambda cmd, budget, **kw: subprocess.CompletedProcess(cmd, code, line + "\n", "")


def test_check_7_compares_nvml_with_nvidia_smi(monkeypatch, tmp_path):
    ours = GpuStatus(0, H100, 81559 * acc.MIB, 4 * acc.MIB, 0, 0.0, 31.0, 71.5, 700.0, (9, 0))
    monkeypatch.setattr(ga, "NVML_SETTLE_S", 0)
    monkeypatch.setattr(ga, "query_gpus", lambda: [ours])
    ctx = cuda_ctx(tmp_path)
    monkeypatch.setattr(ga, "run_child", smi_run(f"{H100}, 1, 81559, 0, 31, 72.10"))
    good = acc.run_check(acc.Check("7", "t", 10), ga.check_nvml(ctx))
    assert good.status == "pass", good.criteria
    assert len(good.criteria) == 5
    # NVML v1's used memory (the driver's reserve counted) would be 573 MiB off: a failure
    v1 = GpuStatus(0, H100, 81559 * acc.MIB, 577 * acc.MIB, 0, 0.0, 31.0, 71.5, 700.0, (9, 0))
    monkeypatch.setattr(ga, "query_gpus", lambda: [v1])
    bad = acc.run_check(acc.Check("7", "t", 10), ga.check_nvml(ctx))
    assert bad.status == "fail" and "memory_used_mib" in bad.reason
    monkeypatch.setattr(ga, "run_child", smi_run("", code=9))
    broken = acc.run_check(acc.Check("7", "t", 10), ga.check_nvml(ctx))
    assert broken.status == "fail" and "nvidia-smi" in broken.reason

    def missing(cmd, budget, **kw):
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(ga, "run_child", missing)
    assert acc.run_check(acc.Check("7", "t", 10), ga.check_nvml(ctx)).status == "skip"


def test_the_step_timestamps_and_the_start_give_speed_and_compile_time():
    steps = [{"time": 100.0 + i, "tokens": 1000 * i} for i in range(1, 11)]
    assert ga.tokens_per_s_from_times(steps) == pytest.approx(1000.0)
    assert ga.tokens_per_s_from_times(steps[:1]) is None
    # CUDA: the host queues an interval's 10 steps at once (1 ms each) and waits at the read-back,
    # every step taking 0.1 s on the GPU: whole intervals give the GPU's rate exactly
    queued = [
        {"step": n, "time": 1.0 * ((n - 1) // 10) + 0.001 * ((n - 1) % 10), "tokens": 100 * n}
        for n in range(1, 201)
    ]
    assert ga.tokens_per_s_from_times(queued, every=10) == pytest.approx(1000.0)
    assert ga.tokens_per_s_from_times(queued) > 1050  # all records: over by ~6%
    records = [{"event": "start", "time": 40.0}] + [dict(s, event="step") for s in steps]
    assert ga.start_to_first_log(records) == pytest.approx(61.0)
    assert ga.start_to_first_log(records[:1]) is None


def test_a_child_past_its_time_is_named_shortly():
    def slow_child(check, budget):
        raise subprocess.TimeoutExpired(
            ["/venv/bin/python", "-m", "cockpit.train", "--preset-json", "{" + "x" * 5000 + "}"],
            6.2,
        )

    check = run(slow_child)
    assert (
        check.reason
        == "stopped after 0 s: the child `-m cockpit.train --preset-json ...` was killed after 6 s"
    )


def test_a_training_child_past_the_budget_is_killed(monkeypatch, tmp_path):
    """Even one that holds no run lock yet (stop_run cannot find it): the Popen is killed."""
    from cockpit import runs

    children = []

    def launch(run_dir, **kw):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        children.append(child)
        return runs.RunHandle(run_dir, child)

    monkeypatch.setattr(ga.runs, "launch", launch)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello world. " * 100)
    ctx = ga.Context("cpu", True, tmp_path, corpus, None)
    with pytest.raises(subprocess.TimeoutExpired):
        ga.train(ctx, acc.Budget(0.3), ga.preset_for(ctx, "tiny_char"), label="slow")
    assert children[0].poll() is not None  # killed, not left running


def test_check_3_on_a_faked_h100_measures_in_order_and_compares_the_calibration(
    monkeypatch, tmp_path
):
    """Probe, tracer and `gpt-cockpit probe` children answered as on a GPU (the probe 3% under
    the analytic estimate); NVML's used memory rising 1 GiB a reading."""
    from cockpit.plan.estimate import estimate, fit_calibration
    from cockpit.plan.presets import preset_from_dict

    ctx = cuda_ctx(tmp_path)
    calls = []

    def sizes(cmd):
        preset = preset_from_dict(json.loads(cmd[cmd.index("--preset-json") + 1]))
        return preset, [int(b) for b in cmd[cmd.index("--batches") + 1].split(",")]

    def run_child(cmd, budget, **kw):
        calls.append(cmd[2])
        if cmd[2] == "cockpit":  # `gpt-cockpit probe gpt2_124m`
            return subprocess.CompletedProcess(cmd, 0, "calibration saved\n", "")
        preset, batches = sizes(cmd)
        reserved = [
            [b, int(estimate(preset, ctx.gpu, batch_size=b).memory.reserved_bytes / 1.03)]
            for b in batches
        ]
        if preset.name == "bdh_8gb":
            return subprocess.CompletedProcess(cmd, 1, "", "probe: CUDA error: unspecified\n")
        out = {"points": reserved, "allocated": [[b, r * 0.9] for b, r in reserved]}
        return subprocess.CompletedProcess(cmd, 0, json.dumps(out) + "\n", "")

    def finish(proc, budget):
        preset, batches = sizes(proc.args)
        # the allocator model's replay 2% over what the probe measures
        points = [
            {
                "batch": b,
                "peak_bytes": GIB * b,
                "reserved_bytes": int(
                    estimate(preset, ctx.gpu, batch_size=b).memory.reserved_bytes / 1.03 * 1.02
                ),
            }
            for b in batches
        ]
        return subprocess.CompletedProcess(proc.args, 0, json.dumps({"points": points}), "")

    used = iter(range(1, 10**6))
    monkeypatch.setattr(ga, "run_child", run_child)

    def start_trace(preset, batches, dtype):
        calls.append("tracer")
        return FakeTracer(ga.trace_command(preset, batches, dtype))

    monkeypatch.setattr(ga, "_start_trace", start_trace)
    monkeypatch.setattr(ga, "_finish", finish)
    monkeypatch.setattr(
        ga, "query_gpus", lambda: [types.SimpleNamespace(memory_used=next(used) * GIB)]
    )
    monkeypatch.setattr(
        ga,
        "load_calibration",
        lambda preset, name: fit_calibration(
            name, sorted(ctx.shared["measured"]["gpt2_124m"].items())
        ),
    )
    check = acc.run_check(acc.Check("3", "t", 600), ga.check_memory(ctx))
    # each preset's tracer after its probe: its CUDA context is not in the probe's NVML delta
    assert calls[:5] == [
        "cockpit.train.probe",
        "tracer",
        "cockpit",
        "cockpit.train.probe",
        "tracer",
    ], check.notes
    figure = check.figures["gpt2_124m @ 32"]
    assert "error +3.0%; traced vs allocated " in figure and "; allocator model " in figure
    assert figure.endswith("MiB (+2.0%)")
    first = [
        what for what, ok in check.criteria if "allocator model vs max_memory_reserved" in what
    ]
    assert first and all(ok for what, ok in check.criteria if what in first)
    assert "calibration @ 64" in check.figures
    assert "MiB vs" in check.figures["gpt2_124m NVML used (peak) vs estimated total @ 64"]
    failed = [what for what, ok in check.criteria if not ok]
    assert failed == ["bdh_8gb: the probe child measured (exit 1): probe: CUDA error: unspecified"]
    assert check.status == "fail"
    # every built-in that fits was measured, gpt2_124m first; none left for lack of time
    assert "not measured (the check's time was spent)" not in check.figures


class FakeTracer:
    def __init__(self, args):
        self.args = args

    def poll(self):
        return 0


def test_check_10_reports_newton_schulz_batched_against_per_matrix(monkeypatch, tmp_path):
    line = (
        '{"preset": "golf_baseline", "device": "cuda", "matrices": 54, "shapes": 4, '
        '"batched_ms": 2.5, "per_matrix_ms": 9.0, "speedup": 3.6}'
    )
    ran = []

    def child(cmd, budget, **kw):
        ran.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, line + "\n", "")

    monkeypatch.setattr(ga, "run_child", child)
    check = acc.run_check(acc.Check("10", "t", 30), ga.check_newton_schulz(cuda_ctx(tmp_path)))
    assert check.status == "pass", (check.criteria, check.notes)
    assert ran[0][1].endswith("muon_ns.py") and "--quick" not in ran[0]
    assert check.figures["Newton-Schulz + momentum per step, batched (ms)"] == 2.5
    assert check.figures["speedup"] == 3.6
    slower = line.replace('"batched_ms": 2.5', '"batched_ms": 12.0')
    monkeypatch.setattr(
        ga, "run_child", lambda cmd, budget, **kw: subprocess.CompletedProcess(cmd, 0, slower, "")
    )
    worse = acc.run_check(acc.Check("10", "t", 30), ga.check_newton_schulz(cuda_ctx(tmp_path)))
    assert worse.status == "fail"


def test_check_11_needs_two_gpus_and_judges_the_scaling(monkeypatch, tmp_path):
    monkeypatch.setattr(ga, "query_gpus", lambda: [object()])
    one = acc.run_check(acc.Check("11", "t", 60), ga.check_ddp_overlap(cuda_ctx(tmp_path)))
    assert one.status == "skip" and "two CUDA GPUs (1 here)" in one.notes[-1]
    monkeypatch.setattr(ga, "query_gpus", lambda: [object(), object()])
    launched = []

    def train(ctx, budget, preset, *, label="", nproc=1, **kw):
        launched.append(nproc)
        speed = 1000.0 if nproc == 1 else 1800.0  # 2 ranks: 900 per GPU, 90%
        steps = [
            {"event": "step", "step": 10 * i, "tokens_per_s": speed, "loss": 1.0}
            for i in range(1, 11)
        ]
        return ga.Trained(ctx.work / label, 0, steps)

    monkeypatch.setattr(ga, "train", train)
    check = acc.run_check(acc.Check("11", "t", 60), ga.check_ddp_overlap(cuda_ctx(tmp_path)))
    assert launched == [1, 2]
    assert check.status == "pass", (check.criteria, check.notes)
    assert check.figures["scaling per GPU, 2 ranks / 1"] == pytest.approx(0.9)
