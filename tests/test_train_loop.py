"""The training child end to end on CPU with a tiny model: events, run.json, checkpoints, errors.

Most runs call the child's own main() in this process (tiny_runs.train_in_process); the
child's command line and a one-line error exit are checked in a real process.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_runs import events_of, make_run, run_child, train_in_process

from cockpit import rundir
from cockpit.plan import presets
from cockpit.plan.schedule import lr_at
from cockpit.train import checkpoint as ckpt

# The engine needs the model and data modules; until they exist these tests skip rather than fail.
for _module in ("cockpit.train.models", "cockpit.train.data"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"{_module} has not landed yet", allow_module_level=True)

TRAIN_DIR = Path(ckpt.__file__).parent  # cockpit/train: the trainer's modules


def test_short_run_writes_a_well_formed_log_and_learns(finished_run):
    run_dir = finished_run  # 60 steps, trained once for the session (its exit code checked there)
    preset = rundir.load_run_preset(run_dir)
    lines = (run_dir / rundir.EVENTS_JSONL).read_text().splitlines()
    assert all(json.loads(line)["v"] == 1 for line in lines)  # strict JSON, versioned
    records = events_of(run_dir)
    assert records[0]["event"] == "start" and records[-1]["event"] == "end"
    start = records[0]
    assert start["device"] == "cpu" and start["dtype"] == "fp32" and start["resumed_from"] is None
    assert start["params"] > 0 and start["tokens_per_step"] == 4 * 32
    assert records[-1]["reason"] == "finished"

    steps = events_of(run_dir, "step")
    assert [r["step"] for r in steps] == list(range(1, 61))
    for r in steps:
        for key in (
            "loss",
            "lr",
            "grad_norm",
            "tokens_per_s",
            "step_ms",
            "tokens",
            "micro_batch",
            "grad_accum",
        ):
            assert key in r, key
        assert math.isfinite(r["loss"]) and r["grad_norm"] > 0 and r["tokens_per_s"] > 0
        assert r["tokens"] == r["step"] * 128
        assert r["lr"] == pytest.approx(
            lr_at(r["step"] - 1, preset.train)
        )  # step k used the schedule at k-1
    first, last = steps[:10], steps[-10:]
    assert sum(r["loss"] for r in last) / 10 < sum(r["loss"] for r in first) / 10 - 0.5

    evals = events_of(run_dir, "eval")
    assert [e["step"] for e in evals] == [20, 40, 60]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    assert all(e["train_loss"] > 0 for e in evals)
    if evals[0]["val_bpb"] is not None:  # char tokens of ASCII text: one byte per token
        assert evals[0]["val_bpb"] == pytest.approx(evals[0]["val_loss"] / math.log(2), rel=1e-6)
    assert len(events_of(run_dir, "sample")) == 3
    kinds = {(c["kind"], c["step"]) for c in events_of(run_dir, "checkpoint")}
    assert ("last", 60) in kinds and ("best", 60) in kinds

    state = ckpt.load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["step"] == 60 and state["best_val_loss"] == pytest.approx(evals[-1]["val_loss"])
    assert ckpt.load_checkpoint(run_dir / "checkpoints" / "best.pt")["step"] == 60
    info = rundir.read_run_info(run_dir)
    assert info.status == "finished" and info.end_reason == "finished"
    assert info.versions["torch"] == str(torch.__version__) and info.device == "cpu"
    assert info.step == 60 and info.params == start["params"]
    assert rundir.run_status(run_dir) == "finished"


def test_metrics_are_read_back_once_per_interval(tmp_path, monkeypatch):
    """No host sync per step in the loop: one tolist() per log interval, item() only in evals."""
    from cockpit.train.loop import Trainer

    run_dir = make_run(
        tmp_path,
        "train.max_steps=30",
        "train.log_interval=10",
        "train.eval_interval=0",
        "train.sample_tokens=0",
    )
    trainer = Trainer(run_dir, device="cpu")
    trainer.setup()
    calls = {"tolist": 0, "item": 0}
    real_tolist, real_item = torch.Tensor.tolist, torch.Tensor.item

    def counting(name, real):
        def wrapper(self, *args, **kwargs):
            caller = Path(sys._getframe(1).f_code.co_filename)
            if caller.parent == TRAIN_DIR and caller.name != "data.py":
                calls[name] += 1  # read-backs by the trainer (a data sampler may use item() on CPU)
            return real(self, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(torch.Tensor, "tolist", counting("tolist", real_tolist))
    monkeypatch.setattr(torch.Tensor, "item", counting("item", real_item))
    reason, _ = trainer.train()
    monkeypatch.undo()
    assert reason == "finished"
    assert calls["tolist"] == 3  # steps 10, 20, 30
    assert calls["item"] == 2  # the final eval: val and train loss


def grads_after_one_step(run_dir: Path, faults: str = "") -> tuple[dict[str, torch.Tensor], object]:
    from cockpit.train.faults import parse_faults
    from cockpit.train.loop import Trainer

    trainer = Trainer(
        run_dir,
        device="cpu",
        faults=parse_faults(faults),
        write_run_info=False,
        write_checkpoints=False,
    )
    trainer.setup()
    x, y = trainer.train_sampler.sample(trainer.n_seq)
    trainer._optimizer_step(x, y, 1.0)
    return {n: p.grad.detach().clone() for n, p in trainer.raw_model.named_parameters()}, trainer


def test_grad_accumulation_equals_one_big_batch(tmp_path):
    big, _ = grads_after_one_step(
        make_run(tmp_path, "train.batch_size=8", "train.grad_accum=1", name="a")
    )
    split, _ = grads_after_one_step(
        make_run(tmp_path, "train.batch_size=2", "train.grad_accum=4", name="b")
    )
    for name in big:
        torch.testing.assert_close(split[name], big[name], rtol=1e-4, atol=1e-6)


def test_oom_retry_halves_micro_batch_and_keeps_the_step(tmp_path):
    clean, _ = grads_after_one_step(make_run(tmp_path, "train.batch_size=8", name="a"))
    retried, trainer = grads_after_one_step(
        make_run(tmp_path, "train.batch_size=8", name="b"), "oom_above_batch=2"
    )
    assert (trainer.state.micro_batch, trainer.state.grad_accum) == (2, 4)
    for name in clean:
        torch.testing.assert_close(retried[name], clean[name], rtol=1e-4, atol=1e-6)


def test_oom_retry_in_a_real_run_says_so(tmp_path):
    run_dir = make_run(
        tmp_path, "train.batch_size=8", "train.max_steps=10", "train.eval_interval=0"
    )
    proc = train_in_process(run_dir, fault="oom_above_batch=3")
    assert proc.returncode == 0, proc.stderr
    ooms = [w for w in events_of(run_dir, "warning") if w["rule"] == "oom"]
    assert [(w["evidence"]["new_batch_size"], w["evidence"]["new_grad_accum"]) for w in ooms] == [
        (4, 2),
        (2, 4),
    ]
    steps = events_of(run_dir, "step")
    assert len(steps) == 10 and all((s["micro_batch"], s["grad_accum"]) == (2, 4) for s in steps)
    assert all(
        s["tokens"] == s["step"] * 8 * 32 for s in steps
    )  # tokens per optimizer step unchanged


def test_oom_at_micro_batch_one_is_a_clear_error(tmp_path):
    run_dir = make_run(tmp_path, "train.batch_size=2")
    proc = train_in_process(run_dir, fault="oom_above_batch=0")
    assert proc.returncode == 1
    assert "micro-batch 1" in proc.stderr and "Traceback" not in proc.stderr
    end = events_of(run_dir, "end")[-1]
    assert end["reason"] == "error" and "micro-batch 1" in end["message"]
    assert rundir.read_run_info(run_dir).status == "error"


@pytest.mark.parametrize("schedule", ["warmdown", "constant"])
def test_other_schedules_and_clipping_off(tmp_path, schedule):
    from cockpit.train.__main__ import run_child as run_in_process

    run_dir = make_run(
        tmp_path,
        f"train.schedule={schedule}",
        "train.warmup_steps=5",
        "train.warmdown_steps=10",
        "train.grad_clip=0",
        "train.max_steps=30",
    )
    assert run_in_process(run_dir, "cpu") == 0
    preset = rundir.load_run_preset(run_dir)
    steps = events_of(run_dir, "step")
    assert [r["lr"] for r in steps] == pytest.approx(
        [lr_at(r["step"] - 1, preset.train) for r in steps]
    )
    assert all(
        r["grad_norm"] > 0 and math.isfinite(r["grad_norm"]) for r in steps
    )  # measured even when not clipping
    if schedule == "warmdown":
        assert steps[-1]["lr"] < steps[15]["lr"] / 5


def test_missing_data_is_one_line_and_error(tmp_path):
    """In a real child process: an error ends it with exit 1 and exactly one line on stderr."""
    run_dir = make_run(tmp_path, f"data.source={tmp_path / 'nope.txt'}")
    proc = run_child(run_dir)
    assert proc.returncode == 1
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("gpt-cockpit: error:") and "nope.txt" in err[0]
    assert events_of(run_dir, "end")[-1]["reason"] == "error"
    assert events_of(run_dir, "error")[-1]["message"]
    assert rundir.read_run_info(run_dir).status == "error"


def test_bad_fault_spec_is_an_error_not_a_crash(tmp_path):
    run_dir = make_run(tmp_path)
    proc = train_in_process(run_dir, fault="explode=3")
    assert (
        proc.returncode == 1
        and "GPT_COCKPIT_FAULT" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    assert events_of(run_dir, "end")[-1]["reason"] == "error"


def test_untrainable_arch_is_an_error(tmp_path, monkeypatch):
    from cockpit.train.__main__ import run_child as run_in_process

    monkeypatch.setattr(presets, "_TRAINABLE_ARCHS", ("golf", "bdh"))
    run_dir = make_run(tmp_path)
    assert run_in_process(run_dir, "cpu") == 1
    end = events_of(run_dir, "end")[-1]
    assert end["reason"] == "error" and "model.arch=gpt: unknown architecture" in end["message"]
    assert events_of(run_dir, "error")[-1]["kind"] == "arch"


def test_trainable_archs_are_the_engines_models():
    from cockpit.train.models import ARCHITECTURES

    assert set(presets._TRAINABLE_ARCHS) == set(ARCHITECTURES) == set(presets.ARCHS)


def test_unexpected_exception_is_a_crash_with_traceback(tmp_path, monkeypatch):
    from cockpit.train import evaluate
    from cockpit.train.__main__ import run_child as run_in_process

    def boom(evaluator, state):
        raise RuntimeError("boom in eval")

    monkeypatch.setattr(evaluate.Evaluator, "run", boom)
    run_dir = make_run(tmp_path)
    assert run_in_process(run_dir, "cpu") == 1
    error = events_of(run_dir, "error")[-1]
    assert (
        error["kind"] == "RuntimeError"
        and "boom in eval" in error["message"]
        and "boom" in error["traceback"]
    )
    assert events_of(run_dir, "end")[-1]["reason"] == "crashed"
    assert rundir.read_run_info(run_dir).status == "crashed"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_is_a_clear_error(tmp_path):
    from cockpit.train.__main__ import run_child as run_in_process

    run_dir = make_run(tmp_path)
    assert run_in_process(run_dir, "cuda") == 1
    end = events_of(run_dir, "end")[-1]
    assert end["reason"] == "error" and "--device cuda" in end["message"]


def test_max_time_ends_the_run(tmp_path):
    run_dir = make_run(
        tmp_path, "train.max_steps=100000", "train.max_time_s=0.5", "train.eval_interval=0"
    )
    proc = train_in_process(run_dir, fault="slow_step_ms=20")
    assert proc.returncode == 0, proc.stderr
    end = events_of(run_dir, "end")[-1]
    assert end["reason"] == "max-time"
    assert (
        1 <= end["step"] < 100000
    )  # stopped by the clock, not the step cap (a loaded machine makes few steps)
    start = events_of(run_dir, "start")[-1]
    assert end["time"] - start["time"] >= 0.5
    assert events_of(run_dir, "eval")[-1]["step"] == end["step"]  # a final eval and checkpoint
    assert ckpt.load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == end["step"]
    assert rundir.read_run_info(run_dir).status == "finished"


def test_child_refuses_a_folder_that_is_not_a_run(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cockpit.train", "--run-dir", str(tmp_path), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "not a run directory" in proc.stderr
