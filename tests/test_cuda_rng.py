"""A checkpoint's CUDA generator state: the run's own GPU, restorable on a box with fewer GPUs.

No GPU here: torch.cuda's generator functions are replaced by a fake box of N GPUs,
each with its own state, which raises IndexError for a GPU it does not have (as
torch.cuda.default_generators[i] does).
"""

from __future__ import annotations

import pytest
import torch

from cockpit.train import checkpoint as ckpt


class FakeGpus:
    """N visible GPUs, each with a generator state tensor; the current device is 0."""

    def __init__(self, count: int) -> None:
        self.states = [torch.full((16,), i, dtype=torch.uint8) for i in range(count)]
        self.current = 0

    def _index(self, device: object) -> int:
        if isinstance(device, torch.device):
            return self.current if device.index is None else device.index
        if isinstance(device, str):
            return self._index(torch.device(device))
        return int(device)  # type: ignore[call-overload]

    def get(self, device: object = "cuda") -> torch.Tensor:
        return self.states[self._index(device)].clone()  # IndexError past the last GPU

    def set(self, state: torch.Tensor, device: object = "cuda") -> None:
        self.states[self._index(device)] = state.clone()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for module in (torch.cuda, torch.cuda.random):
            monkeypatch.setattr(module, "get_rng_state", self.get)
            monkeypatch.setattr(module, "set_rng_state", self.set)
            monkeypatch.setattr(module, "device_count", lambda: len(self.states))
            monkeypatch.setattr(module, "current_device", lambda: self.current)


def marked(value: int) -> torch.Tensor:
    return torch.full((16,), value, dtype=torch.uint8)


def test_a_checkpoint_holds_only_its_own_gpus_state(monkeypatch) -> None:
    box = FakeGpus(8)
    box.install(monkeypatch)
    box.states[3] = marked(33)
    state = ckpt.rng_state(torch.device("cuda", 3))
    assert len(state["cuda"]) == 1
    assert torch.equal(state["cuda"][0], marked(33))


def test_written_with_eight_gpus_resumed_on_one(monkeypatch) -> None:
    eight = FakeGpus(8)
    eight.install(monkeypatch)
    eight.states[0] = marked(200)
    state = ckpt.rng_state(torch.device("cuda"))

    one = FakeGpus(1)  # the same run moved from a rented 8-GPU box to one card
    one.install(monkeypatch)
    ckpt.set_rng_state(state, torch.device("cuda"))
    assert torch.equal(one.states[0], marked(200))


def test_an_older_checkpoints_every_gpu_list_is_read_at_this_devices_index(monkeypatch) -> None:
    box = FakeGpus(4)
    box.install(monkeypatch)
    old = ckpt.rng_state()
    old["cuda"] = [marked(10 + i) for i in range(8)]  # get_rng_state_all on 8 visible GPUs

    ckpt.set_rng_state(old, torch.device("cuda", 2))
    assert torch.equal(box.states[2], marked(12))
    assert [int(s[0]) for s in box.states] == [0, 1, 12, 3]  # the other GPUs untouched

    single = FakeGpus(1)
    single.install(monkeypatch)
    ckpt.set_rng_state(old, torch.device("cuda"))  # no IndexError for GPUs 1-7
    assert torch.equal(single.states[0], marked(10))


def test_a_rank_past_the_end_of_an_older_list_takes_the_first(monkeypatch) -> None:
    box = FakeGpus(4)
    box.install(monkeypatch)
    old = ckpt.rng_state()
    old["cuda"] = [marked(50), marked(51)]
    ckpt.set_rng_state(old, torch.device("cuda", 3))
    assert torch.equal(box.states[3], marked(50))


def test_a_cpu_checkpoint_leaves_the_gpus_alone(monkeypatch) -> None:
    box = FakeGpus(2)
    box.install(monkeypatch)
    state = ckpt.rng_state()  # written on CPU: no CUDA states
    assert state["cuda"] == []
    ckpt.set_rng_state(state, torch.device("cuda"))
    assert [int(s[0]) for s in box.states] == [0, 1]
