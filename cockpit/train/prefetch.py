"""The next training batch drawn and copied to the GPU while the current step runs.

`PrefetchSampler` is a `BatchSampler` that, once asked for a batch of n sequences,
also draws the next batch of n at once and starts its copy into device memory from
pinned host memory on a side CUDA stream; the next `sample(n)` makes the compute
stream wait for that copy (no host sync) and hands it over. On CPU there is nothing
to overlap, so it samples as `BatchSampler` does unless `ahead=True` (the tests use
that to check the bookkeeping without a GPU).

The batches and their order are exactly `BatchSampler`'s: the same generator draws
them. `state_dict()` is the position after the batches handed out, not after the
one drawn ahead, so a checkpoint resumes on the batch the run would have trained next;
`load_state_dict` and `skip` drop the batch drawn ahead.

Whether it pays is measured on a GPU (bench/gpu_acceptance.py): until then the trainer
uses it only where GPT_COCKPIT_PREFETCH=1.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from cockpit.train.data import BatchSampler

PREFETCH_ENV = "GPT_COCKPIT_PREFETCH"

# A batch on its way: inputs, targets, and the CUDA event after their copy (None on CPU).
Drawn = tuple[torch.Tensor, torch.Tensor, "torch.cuda.Event | None"]


def prefetch_wanted() -> bool:
    """True where $GPT_COCKPIT_PREFETCH is 1 (the trainer's default stays the plain sampler)."""
    return os.environ.get(PREFETCH_ENV, "").strip() == "1"


class PrefetchSampler(BatchSampler):
    """A BatchSampler that prepares the next batch of the same size while the current one trains."""

    def __init__(
        self,
        tokens: np.ndarray,
        block_size: int,
        seed: int,
        device: torch.device | str = "cpu",
        *,
        ahead: bool | None = None,
    ) -> None:
        super().__init__(tokens, block_size, seed, device)
        self.ahead = self.device.type == "cuda" if ahead is None else ahead
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._pending: tuple[int, Drawn] | None = None
        self._state_before_pending: torch.Tensor | None = None

    def _draw(self, n: int) -> Drawn:
        """The next n windows, on the device: copied on the side stream on CUDA, with an
        event recorded after this batch's copy alone."""
        starts = self._starts(n).numpy()
        windows = np.asarray(self.tokens[starts[:, None] + self._offsets]).astype(np.int64)
        batch = torch.from_numpy(windows)
        if self.stream is None:
            return batch[:, :-1].contiguous(), batch[:, 1:].contiguous(), None
        pinned = batch.pin_memory()
        with torch.cuda.stream(self.stream):
            on_device = pinned.to(self.device, non_blocking=True)
            # contiguous here, on the side stream, as the CPU path hands them out: a strided
            # view would make the step's embedding gather (and every reshape) copy it anyway
            x, y = on_device[:, :-1].contiguous(), on_device[:, 1:].contiguous()
            copied = torch.cuda.Event()
            copied.record(self.stream)
        return x, y, copied

    def _hand_over(self, drawn: Drawn) -> tuple[torch.Tensor, torch.Tensor]:
        """Make the compute stream wait for this batch's copy (no host sync); the tensors now
        belong to it.

        An event per batch, not wait_stream: by the time the step starts the side stream
        may also hold the next batch's copy, which compute must not wait for.
        """
        x, y, copied = drawn
        if copied is None:
            return x, y
        current = torch.cuda.current_stream(self.device)
        current.wait_event(copied)
        x.record_stream(current)  # the allocator must not reuse the memory before compute is done
        y.record_stream(current)
        return x, y

    def sample(self, n_sequences: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.ahead:
            return super().sample(n_sequences)
        if self._pending is not None and self._pending[0] == n_sequences:
            drawn = self._pending[1]
        else:
            self._drop_pending()  # none drawn ahead, or of another size (an OOM halved the split)
            drawn = self._draw(n_sequences)
        handed = self._hand_over(drawn)  # queued before the look-ahead copy below
        self._state_before_pending = self.generator.get_state()
        self._pending = (n_sequences, self._draw(n_sequences))
        return handed

    def _drop_pending(self) -> None:
        """Forget the batch drawn ahead and rewind the generator to before it."""
        if self._pending is not None and self._state_before_pending is not None:
            self.generator.set_state(self._state_before_pending)
        self._pending = None
        self._state_before_pending = None

    def skip(self, n_sequences: int) -> None:
        self._drop_pending()
        super().skip(n_sequences)

    def state_dict(self) -> dict[str, Any]:
        state = self._state_before_pending  # a batch drawn ahead is not drawn yet
        if self._pending is None or state is None:
            state = self.generator.get_state()
        return {"generator": state.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = None
        self._state_before_pending = None
        super().load_state_dict(state)
