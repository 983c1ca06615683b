"""How the full-val eval shares the validation windows out over W ranks, without processes: a
stand-in model records the windows each rank evaluates, and the all-reduce is the test's sum
(test_ddp runs the real thing on 2 ranks, DDP and FSDP)."""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cockpit.rundir import NullEventWriter
from cockpit.train import dist as train_dist
from cockpit.train.evaluate import Evaluator
from cockpit.train.runtime import Dist

T = 4


class Recorder(torch.nn.Module):
    """A model whose loss is the mean target id; it records the first window of each forward."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[int]] = []

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[None, torch.Tensor]:
        self.calls.append([int(v) // T for v in x[:, 0]])
        return None, y.float().mean()


def rank_eval(n_windows: int, batch: int, rank: int, world: int, fsdp: bool, sums: list) -> list:
    net = Recorder()
    evaluator = Evaluator(
        preset=SimpleNamespace(model=SimpleNamespace(block_size=T)),
        model=net,
        raw_model=net,
        data=SimpleNamespace(val=np.arange(n_windows * T + 1)),
        tokenizer=None,
        device=torch.device("cpu"),
        dist=Dist(rank, rank, world),
        autocast=contextlib.nullcontext(),
        events=NullEventWriter(),
        fsdp=fsdp,
    )
    value = evaluator.full_val_loss(batch)
    if world == 1:
        sums.append(value)
    return net.calls


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("n_windows", [1, 2, 3, 5, 7, 12])
@pytest.mark.parametrize("batch", [1, 2, 3])
def test_each_window_once_and_fsdp_ranks_run_as_many_forwards(monkeypatch, world, n_windows, batch):
    """Fewer windows than ranks, uneven and even splits: the ranks' windows are each window once
    and their summed losses are one process's; under FSDP every rank runs as many forwards (the
    extra ones are padding, not counted)."""
    parts: list[torch.Tensor] = []
    monkeypatch.setattr(train_dist, "reduce_sum", lambda value, _dist: parts.append(value) or value)
    one: list = []
    rank_eval(n_windows, batch, 0, 1, False, one)
    ddp = [rank_eval(n_windows, batch, r, world, False, []) for r in range(world)]
    seen = sorted(w for calls in ddp for call in calls for w in call)
    assert seen == list(range(n_windows))
    total = torch.stack(parts).sum(0)
    assert float(total[0]) / (n_windows * T) == pytest.approx(one[0][0], rel=1e-12)
    parts.clear()
    fsdp = [rank_eval(n_windows, batch, r, world, True, []) for r in range(world)]
    assert len({len(calls) for calls in fsdp}) == 1  # as many forwards on every rank
    most = math.ceil(n_windows / world)  # the busiest rank's windows
    assert len(fsdp[0]) == math.ceil(most / batch)  # its forwards, no more
    assert torch.equal(torch.stack(parts).sum(0), total)  # the padding is not counted


def test_one_process_evaluates_in_micro_batches_in_order():
    calls = rank_eval(7, 3, 0, 1, True, [])
    assert calls == [[0, 1, 2], [3, 4, 5], [6]]
