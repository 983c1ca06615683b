"""The CUDA path of the prefetching sampler, on CPU with its stream calls recorded: each batch
is handed over by waiting on its own copy's event, queued before the next batch's copy, and
inputs and targets are contiguous like the CPU path's.

torch.cuda's streams and events are replaced by recorders; the copies themselves run on the
CPU (pin_memory is the identity, record_stream a no-op)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from cockpit.train.data import BatchSampler
from cockpit.train.prefetch import PrefetchSampler

TOKENS = np.arange(5000, dtype=np.uint16) % 251


class FakeEvent:
    made = 0

    def __init__(self, log: list[str]) -> None:
        FakeEvent.made += 1
        self.name, self.log = f"event{FakeEvent.made}", log

    def record(self, stream: object = None) -> None:
        self.log.append(f"record {self.name}")


class FakeStream:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def wait_event(self, event: FakeEvent) -> None:
        self.log.append(f"{self.name} waits {event.name}")

    def wait_stream(self, stream: FakeStream) -> None:
        self.log.append(f"{self.name} waits all of {stream.name}")


@pytest.fixture
def side_stream(monkeypatch):
    """A PrefetchSampler taking its CUDA path on CPU tensors; the log of stream calls."""
    log: list[str] = []
    FakeEvent.made = 0
    compute = FakeStream("compute", log)

    @contextlib.contextmanager
    def on_stream(stream):
        log.append("copy on side")
        yield

    monkeypatch.setattr(torch.cuda, "stream", on_stream)
    monkeypatch.setattr(torch.cuda, "Event", lambda *a, **k: FakeEvent(log))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: compute)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: self)
    monkeypatch.setattr(torch.Tensor, "record_stream", lambda self, stream: None)
    sampler = PrefetchSampler(TOKENS, 16, seed=5, ahead=True)
    sampler.stream = FakeStream("side", log)  # as on a GPU
    return sampler, log


def test_each_batch_waits_for_its_own_copy_before_the_next_is_queued(side_stream):
    sampler, log = side_stream
    sampler.sample(8)
    assert log == [
        "copy on side",  # batch 1, drawn now
        "record event1",
        "compute waits event1",  # handed over: compute waits for batch 1's copy alone
        "copy on side",  # batch 2, drawn ahead, queued after the hand-over
        "record event2",
    ]
    log.clear()
    sampler.sample(8)
    assert log == ["compute waits event2", "copy on side", "record event3"]


def test_the_side_streams_batches_are_contiguous_and_the_plain_samplers(side_stream):
    sampler, _ = side_stream
    plain = BatchSampler(TOKENS, 16, seed=5)
    for n in (8, 8, 4, 4):
        x, y = sampler.sample(n)
        u, v = plain.sample(n)
        assert x.is_contiguous() and y.is_contiguous()
        assert torch.equal(x, u) and torch.equal(y, v)
