"""The prefetching sampler draws exactly BatchSampler's batches, and its saved position is the
position after the batches it handed out (the one drawn ahead is not counted)."""

from __future__ import annotations

import numpy as np
import torch
from tiny_runs import TINY

from cockpit.plan.presets import Preset, apply_overrides
from cockpit.train import setup
from cockpit.train.data import BatchSampler
from cockpit.train.prefetch import PREFETCH_ENV, PrefetchSampler, prefetch_wanted

TOKENS = np.arange(5000, dtype=np.uint16) % 251


def batches(sampler, sizes):
    return [sampler.sample(n) for n in sizes]


def same(a, b):
    return all(torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in zip(a, b, strict=True))


def test_it_hands_out_the_plain_samplers_batches_whatever_the_sizes():
    sizes = [8, 8, 8, 4, 4, 8, 3]  # a size change (an OOM halving) drops the batch drawn ahead
    plain = batches(BatchSampler(TOKENS, 16, seed=5), sizes)
    ahead = batches(PrefetchSampler(TOKENS, 16, seed=5, ahead=True), sizes)
    assert same(plain, ahead)
    x, y = ahead[0]
    assert x.shape == (8, 16) and torch.equal(x[:, 1:], y[:, :-1])


def test_a_checkpoint_taken_with_a_batch_drawn_ahead_resumes_on_the_next_one():
    sampler = PrefetchSampler(TOKENS, 16, seed=3, ahead=True)
    batches(sampler, [8, 8, 8])
    state = sampler.state_dict()
    expected = batches(sampler, [8, 8])
    plain = BatchSampler(TOKENS, 16, seed=0)
    plain.load_state_dict(state)
    assert same(batches(plain, [8, 8]), expected)  # the plain sampler agrees on the position
    resumed = PrefetchSampler(TOKENS, 16, seed=0, ahead=True)
    resumed.load_state_dict(state)
    assert same(batches(resumed, [8, 8]), expected)


def test_skip_and_load_drop_the_batch_drawn_ahead():
    a, b = PrefetchSampler(TOKENS, 16, 11, ahead=True), BatchSampler(TOKENS, 16, 11)
    a.sample(4)
    b.sample(4)
    a.skip(6)
    b.skip(6)
    assert same(batches(a, [4, 4]), batches(b, [4, 4]))


def test_on_cpu_it_is_the_plain_sampler_and_the_trainer_uses_it_only_when_asked(
    monkeypatch, tmp_path
):
    sampler = PrefetchSampler(TOKENS, 16, seed=2)
    assert not sampler.ahead and sampler.stream is None
    assert same(batches(sampler, [4, 4]), batches(BatchSampler(TOKENS, 16, seed=2), [4, 4]))
    monkeypatch.delenv(PREFETCH_ENV, raising=False)
    assert not prefetch_wanted()
    (tmp_path / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog. " * 200)
    preset = apply_overrides(Preset(name="p"), [*TINY, f"data.source={tmp_path / 'corpus.txt'}"])
    cpu = torch.device("cpu")
    assert type(setup.load_training_data(preset, cpu, 0)[1]) is BatchSampler
    monkeypatch.setenv(PREFETCH_ENV, "1")
    assert prefetch_wanted()
    assert type(setup.load_training_data(preset, cpu, 0)[1]) is PrefetchSampler
