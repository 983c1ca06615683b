"""The shared optimizer step (cockpit/train/step.py) on CPU, driven as the memory probe and the trainer drive it."""

from __future__ import annotations

import pytest
import torch
from tiny_runs import TINY

from cockpit.plan.presets import Preset, apply_overrides
from cockpit.train import probe
from cockpit.train.faults import parse_faults
from cockpit.train.runtime import EngineError
from cockpit.train.step import Split, run_with_oom_retry


def tiny_preset(*overrides: str) -> Preset:
    return apply_overrides(Preset(name="tiny_step"), [*TINY, *overrides])


def runner_for(preset: Preset, fault: str = ""):
    torch.manual_seed(0)  # the same initial weights for every runner of a test
    return probe.build_runner(preset, torch.device("cpu"), parse_faults(fault))


def weights(runner) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in runner.raw_model.named_parameters()}


def test_probe_steps_are_the_shared_step_and_report_an_oom():
    preset = tiny_preset()
    runner = runner_for(preset, "oom_above_batch=2")
    before = weights(runner)
    assert probe.probe_size(runner, 2, 2, preset) is None
    after = weights(runner)
    assert any(not torch.equal(before[n], after[n]) for n in before)  # two real optimizer steps
    assert all(int(s["step"]) == 2 for s in runner.optimizer.state.values())

    problem = probe.probe_size(runner, 4, 2, preset)  # the fault hook: out of memory above 2
    assert problem is not None and "out of memory for micro-batch 4" in problem
    assert all(p.grad is None for p in runner.raw_model.parameters())  # freed for the next size
    now = weights(runner)
    assert all(torch.equal(now[n], after[n]) for n in after)  # the failed step changed nothing
    assert probe.probe_size(runner, 2, 1, preset) is None  # and the next size still runs


def test_oom_retry_takes_the_same_step_at_a_smaller_micro_batch():
    preset = tiny_preset("train.batch_size=8")
    x = torch.randint(0, 64, (8, 32), generator=torch.Generator().manual_seed(1))
    y = torch.roll(x, -1, dims=1)
    clean = runner_for(preset)
    clean_loss, clean_norm = clean.run(x, y, micro_batch=8)

    retried = runner_for(preset, "oom_above_batch=3")
    warnings = []
    loss, norm, split = run_with_oom_retry(
        retried, x, y, Split(8, 1), 1.0, oom_retry=True, step=1, warn=warnings.append
    )
    assert split == Split(2, 4)
    assert [(w.rule, w.step, w.evidence["new_batch_size"]) for w in warnings] == [
        ("oom", 1, 4),
        ("oom", 1, 2),
    ]
    torch.testing.assert_close(loss, clean_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(norm, clean_norm, rtol=1e-4, atol=1e-6)
    want = dict(clean.raw_model.named_parameters())
    for name, param in retried.raw_model.named_parameters():  # the gradients the step applied
        torch.testing.assert_close(param.grad, want[name].grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("retry", "start", "fragment"),
    [(False, Split(4, 1), "set train.oom_retry=true"), (True, Split(1, 4), "micro-batch 1")],
)
def test_oom_without_a_retry_left_is_an_engine_error(retry, start, fragment):
    preset = tiny_preset()
    runner = runner_for(preset, "oom_above_batch=0")
    x = torch.zeros(4, 32, dtype=torch.long)
    warnings = []
    with pytest.raises(EngineError, match=fragment) as caught:
        run_with_oom_retry(runner, x, x, start, 1.0, oom_retry=retry, step=7, warn=warnings.append)
    assert caught.value.kind == "oom"
    assert [(w.step, w.severity) for w in warnings] == ([(7, "critical")] if retry else [])


def test_halving_keeps_every_sequence():
    assert Split(8, 1).halved(8) == Split(4, 2)
    assert Split(5, 1).halved(5) == Split(2, 3)  # the last micro-batch holds one sequence
