"""train.loggers: TensorBoard read back, W&B offline by default, a failing logger never fails the run."""

from __future__ import annotations

import sys
import types

import pytest
from tiny_runs import events_of, make_run, train_in_process

from cockpit.plan.presets import Preset, PresetError, apply_overrides, preset_from_dict
from cockpit.runs.prelaunch import launch_problem
from cockpit.train import loggers

LOGGED = ("train.max_steps=10", "train.log_interval=5", "train.eval_interval=10")


class FakeWandbRun:
    def __init__(self, calls: list) -> None:
        self.calls = calls

    def log(self, scalars: dict, step: int) -> None:
        self.calls.append(("log", step, dict(scalars)))
        if len(self.calls) >= 3:  # init, one good log, then this one fails
            raise RuntimeError("wandb: disk quota exceeded\nsecond line")

    def finish(self) -> None:
        self.calls.append(("finish",))


def fake_wandb(calls: list) -> types.ModuleType:
    module = types.ModuleType("wandb")

    def init(**kwargs):
        import os

        calls.append(
            ("init", os.environ.get("WANDB_MODE"), kwargs["dir"], kwargs["config"]["name"])
        )
        return FakeWandbRun(calls)

    module.init = init
    return module


@pytest.mark.slow
def test_tensorboard_reads_back_and_a_failing_wandb_is_dropped(tmp_path, monkeypatch):
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="tensorboard is not installed (pip install -e '.[test]')",
    )
    calls: list = []
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb(calls))
    monkeypatch.setenv("WANDB_MODE", "unset-below")  # so the teardown restores the user's value
    monkeypatch.delenv("WANDB_MODE")
    run_dir = make_run(tmp_path, *LOGGED, "train.loggers=tensorboard,wandb")
    proc = train_in_process(run_dir)
    assert proc.returncode == 0, proc.stderr
    assert events_of(run_dir, "end")[-1]["reason"] == "finished"

    acc = accumulator.EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    loss = {e.step: e.value for e in acc.Scalars("train/loss")}
    expected = {r["step"]: r["loss"] for r in events_of(run_dir, "step")}
    assert sorted(loss) == list(range(1, 11))
    assert all(abs(loss[s] - expected[s]) < 1e-6 for s in loss)
    lrs = {e.step: e.value for e in acc.Scalars("train/lr")}
    assert lrs[5] == pytest.approx(events_of(run_dir, "step")[4]["lr"], rel=1e-6)
    val = acc.Scalars("val/loss")
    assert [e.step for e in val] == [10]
    assert val[0].value == pytest.approx(events_of(run_dir, "eval")[-1]["val_loss"], rel=1e-6)

    # W&B: offline unless the user said otherwise; its failure is one warning, then it is dropped
    assert calls[0][:2] == ("init", "offline") and calls[0][2] == str(run_dir)
    logged = [c for c in calls if c[0] == "log"]
    assert len(logged) == 2 and "finish" not in [c[0] for c in calls]
    warned = [w for w in events_of(run_dir, "warning") if w["rule"] == "logger"]
    assert len(warned) == 1 and "wandb failed: wandb: disk quota exceeded" in warned[0]["message"]
    assert "\n" not in warned[0]["message"] and "training goes on" in warned[0]["message"]


def test_a_missing_package_is_one_warning_with_the_pip_line(tmp_path, monkeypatch):
    warnings = []

    def missing(run_dir, preset):
        raise ModuleNotFoundError("No module named 'tensorboard'", name="tensorboard")

    monkeypatch.setitem(loggers.FACTORIES, "tensorboard", missing)
    preset = apply_overrides(Preset(name="p"), ["train.loggers=tensorboard"])
    opened = loggers.open_loggers(preset, tmp_path, lambda *a: warnings.append(a))
    assert opened is not None and opened.active == []
    opened.log_steps([{"step": 1, "loss": 1.0}])
    opened.close()
    assert len(warnings) == 1
    rule, severity, message, _tip = warnings[0]
    assert rule == "logger" and severity == "warning" and "pip install tensorboard" in message
    assert loggers.open_loggers(Preset(name="p"), tmp_path, print) is None


def test_the_pre_launch_check_names_a_missing_logger(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    preset = apply_overrides(Preset(name="p"), ["train.loggers=wandb"])
    problem = launch_problem(preset)
    assert problem.startswith("train.loggers: wandb") and "pip install wandb" in problem
    assert launch_problem(Preset(name="p")) is None


def test_loggers_in_a_preset():
    preset = preset_from_dict({"name": "p", "train": {"loggers": ["tensorboard", "wandb"]}})
    assert preset.train.loggers == "tensorboard,wandb"
    assert preset_from_dict(preset.to_dict()).train.loggers == "tensorboard,wandb"
    with pytest.raises(PresetError, match="train.loggers.*unknown logger 'mlflow'"):
        apply_overrides(Preset(name="p"), ["train.loggers=tensorboard,mlflow"])
    with pytest.raises(PresetError, match="train.loggers"):
        preset_from_dict({"name": "p", "train": {"loggers": ["tensorboard", 3]}})
