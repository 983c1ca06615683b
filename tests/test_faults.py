"""The GPT_COCKPIT_FAULT test hook: parsing and one-shot behaviour (engine-level faults are in test_signals/test_train_loop)."""

from __future__ import annotations

import math

import pytest
import torch

from cockpit.train.faults import SPIKE_FACTOR, FaultSpecError, faults_from_env, parse_faults


def test_parse_all_items():
    f = parse_faults("nan_at_step=5, spike_at_step=7,spike_steps=3,oom_above_batch=4,slow_step_ms=2.5,die_at_step=9,stop_at_step=3")
    assert (f.nan_at_step, f.spike_at_step, f.spike_steps, f.oom_above_batch) == (5, 7, 3, 4)
    assert (f.slow_step_ms, f.die_at_step, f.stop_at_step) == (2.5, 9, 3)
    assert f.active


def test_empty_means_no_fault(monkeypatch):
    monkeypatch.delenv("GPT_COCKPIT_FAULT", raising=False)
    f = faults_from_env()
    assert not f.active
    assert f.loss_factor(1) == 1.0
    f.check_oom(10_000)  # never raises


@pytest.mark.parametrize("spec", ["nan_at_step", "nan_at_step=x", "explode=1", "slow_step_ms=fast"])
def test_bad_specs_name_the_item(spec):
    with pytest.raises(FaultSpecError, match="GPT_COCKPIT_FAULT"):
        parse_faults(spec)


def test_nan_fires_once():
    f = parse_faults("nan_at_step=3")
    assert [f.loss_factor(s) for s in (1, 2)] == [1.0, 1.0]
    assert math.isnan(f.loss_factor(3))
    assert f.loss_factor(3) == 1.0  # a replayed step 3 (after a rollback) is clean


def test_spike_spans_its_steps_once():
    f = parse_faults("spike_at_step=5,spike_steps=2")
    assert [f.loss_factor(s) for s in (4, 5, 6, 7)] == [1.0, SPIKE_FACTOR, SPIKE_FACTOR, 1.0]
    assert f.loss_factor(5) == 1.0


def test_oom_above_batch_raises_torch_oom():
    f = parse_faults("oom_above_batch=4")
    f.check_oom(4)
    with pytest.raises(torch.OutOfMemoryError, match="micro-batch 5"):
        f.check_oom(5)
