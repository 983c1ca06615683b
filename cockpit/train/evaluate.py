"""Evaluation and sampling: val and train loss, a text sample, the best-so-far bookkeeping.

Each eval draws fresh batches, as nanoGPT's estimate_loss does (one fixed set would
bias every eval the same way), from seeds of the step: a resumed run evaluates on
the same batches. Sampling forks the RNG, so the training streams are untouched.
"""

from __future__ import annotations

import contextlib
import math
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cockpit import rundir
from cockpit.health import HealthMonitor
from cockpit.plan.presets import Preset
from cockpit.rundir import EvalEvent, EventWriter, SampleEvent
from cockpit.train.data import BatchSampler
from cockpit.train.runtime import Dist, warning_event
from cockpit.train.state import TrainState

LN2 = math.log(2.0)


@dataclass
class Evaluator:
    """Val and train loss, a sample, the best-so-far; writes the eval's events and run.json."""

    preset: Preset
    model: Any  # what runs forward (compiled and/or wrapped; DDP's wrapper is taken off)
    raw_model: Any  # the model whose `generate` writes samples
    data: Any  # the run's data: train and val tokens
    tokenizer: Any
    device: torch.device
    dist: Dist
    autocast: AbstractContextManager[Any]
    events: EventWriter
    monitor: HealthMonitor | None = None
    loggers: Any = None  # train.loggers, rank 0 only
    fsdp: bool = False  # every rank takes part in each forward
    tokens_per_byte: float | None = None  # validation tokens per byte, for bits per byte
    byte_table: Any = None  # per-token bytes on the device (token shards, train/bpb.py)
    run_dir: Path | None = None  # the run whose run.json gets the step and best val loss
    last_step: int | None = None  # the step of the last eval

    def run(self, state: TrainState) -> bool:
        """Val and train loss on eval_steps random batches each, a sample; events, health, run.json.

        Updates `state.best_val_loss`; True if this eval improved it (best.pt is due).
        """
        t, step = self.preset.train, state.step
        self.model.eval()
        try:
            seed = (t.seed + 1_000_003) * 1_000_033 + 2 * step
            full_tpb = None
            if t.eval_full_val:
                val_loss, full_tpb = self.full_val_loss(state.micro_batch)
            else:
                val_loss = self.mean_loss(self.data.val, seed, state.micro_batch)
            train_loss = self.mean_loss(self.data.train, seed + 1, state.micro_batch)
            # FSDP: every rank takes part in each forward, so all generate (the same text); rank 0 writes it
            wanted = t.sample_tokens > 0 and (self.dist.master or self.fsdp)
            text = self.sample_text(step) if wanted else None
        finally:
            self.model.train()
        self.last_step = step
        best = state.best_val_loss
        improved = math.isfinite(val_loss) and (best is None or val_loss < best)
        if improved:
            state.best_val_loss = val_loss
        tpb = full_tpb or self.tokens_per_byte
        bpb = val_loss / LN2 * tpb if tpb else None
        self.events.emit(
            EvalEvent(
                step=step,
                val_loss=val_loss,
                train_loss=train_loss,
                val_bpb=bpb,
                best_val_loss=state.best_val_loss,
                improved=improved,
            )
        )
        if text is not None:
            self.events.emit(SampleEvent(step=step, text=text))
        if self.loggers is not None:
            self.loggers.log_eval(
                step, {"val_loss": val_loss, "train_loss": train_loss, "val_bpb": bpb}
            )
        if self.monitor is not None:
            for w in self.monitor.observe_eval(step, val_loss, train_loss):
                self.events.emit(warning_event(w))
        if self.run_dir is not None:
            rundir.update_run_info(self.run_dir, step=step, best_val_loss=state.best_val_loss)
        return improved

    @torch.no_grad()
    def mean_loss(self, tokens: Any, seed: int, micro_batch: int) -> float:
        """The mean loss over eval_steps micro-batches of `tokens` drawn from `seed` (one host sync).

        Under torchrun the ranks share the batches out (rank r evaluates batches r, r+W, ...)
        and sum their losses, so the mean is over the same eval_steps batches as on one process.
        """
        eval_steps = self.preset.train.eval_steps
        sampler = BatchSampler(tokens, self.preset.model.block_size, seed, self.device)
        losses = torch.zeros(eval_steps, device=self.device)
        rank, world = self.dist.rank, self.dist.world_size
        net = _unwrapped(self.model)
        # FSDP: every rank runs as many forwards (each gathers weights from all): pad the last round
        rounds = -(-eval_steps // world) * world if self.fsdp else eval_steps
        for k in range(rounds):
            if k % world != rank:
                sampler.skip(micro_batch)  # another rank's batch
                continue
            x, y = sampler.sample(micro_batch)
            with self.autocast:
                loss = net(x, y)[1]
            if k < eval_steps:
                losses[k] = loss.float()
        if world > 1:
            from cockpit.train.dist import reduce_sum

            reduce_sum(losses, self.dist)
        return float(losses.mean().item())

    @torch.no_grad()
    def full_val_loss(self, micro_batch: int) -> tuple[float, float | None]:
        """The mean loss over the whole validation split in consecutive block_size windows, as the
        golf reference evaluates, and its target tokens per byte (with a byte table); one host sync.

        Under torchrun the ranks share the windows out (rank r evaluates windows
        [n*r//W, n*(r+1)//W) in micro-batches) and the token-weighted loss sums and the byte
        sums are added over the ranks: every rank ends with the figures of one process."""
        T = self.preset.model.block_size
        n_windows = (len(self.data.val) - 1) // T
        rank, world = self.dist.rank, self.dist.world_size
        table = self.byte_table
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        byte_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        batch = max(1, micro_batch)
        net = _unwrapped(self.model)
        lo, hi = n_windows * rank // world, n_windows * (rank + 1) // world
        for first in range(lo, hi, batch):
            x, y = self._windows(first, min(first + batch, hi))
            with self.autocast:
                loss = net(x, y)[1]
            loss_sum += loss.double() * y.numel()
            if table is not None:
                byte_sum += table.bytes_of(x.reshape(-1), y.reshape(-1)).double()
        if world > 1:
            if self.fsdp:
                self._pad_forwards(net, n_windows, hi - lo, batch)
            from cockpit.train.dist import reduce_sum

            sums = reduce_sum(torch.stack([loss_sum, byte_sum]), self.dist)
            loss_sum, byte_sum = sums[0], sums[1]
        n_tokens = n_windows * T
        loss_value, n_bytes = (loss_sum / max(n_tokens, 1)).item(), byte_sum.item()
        return loss_value, (n_tokens / n_bytes if n_bytes else None)

    def _windows(self, first: int, last: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of validation windows [first, last), on the eval's device."""
        T = self.preset.model.block_size
        tokens = np.asarray(self.data.val[first * T : last * T + 1]).astype(np.int64)
        chunk = torch.from_numpy(tokens)
        if self.device.type == "cuda":
            # pinned and non-blocking: a pageable copy waits for the GPU, a host sync per batch
            # over golf's whole validation split; torch keeps the pinned buffer until the copy ran
            chunk = chunk.pin_memory().to(self.device, non_blocking=True)
        else:
            chunk = chunk.to(self.device)
        return chunk[:-1].view(-1, T), chunk[1:].view(-1, T)

    def _pad_forwards(self, net: Any, n_windows: int, own: int, batch: int) -> None:
        """FSDP: each forward gathers weights from every rank, so every rank runs as many as the
        rank with the most windows (ceil(n/W) of them); a rank with fewer runs forwards on the
        first windows again, not counted."""
        most = -(-n_windows // self.dist.world_size)
        spare = -(-most // batch) - -(-own // batch)
        if spare <= 0:
            return
        x, y = self._windows(0, min(batch, n_windows))  # the shape of a full micro-batch
        for _ in range(spare):
            with self.autocast:
                net(x, y)

    def sample_text(self, step: int) -> str:
        """Generated text from a newline (or the first validation token); the training RNG streams are left untouched."""
        tokenizer, val = self.tokenizer, self.data.val
        try:
            start_ids = list(tokenizer.encode("\n")) or [int(val[0])]
        except ValueError:  # a char vocabulary without a newline, or ids-only data
            start_ids = [int(val[0])]
        idx = torch.tensor([start_ids], dtype=torch.long, device=self.device)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), self.autocast, _eager(self.preset):
            torch.manual_seed(self.preset.train.seed + step)
            out = self.raw_model.generate(
                idx,
                self.preset.train.sample_tokens,
                temperature=0.8,
                top_k=200,
                vocab_limit=tokenizer.vocab_size or None,
            )
        return str(tokenizer.decode(out[0, len(start_ids) :].tolist()))


def _eager(preset: Preset) -> AbstractContextManager[Any]:
    """Compiled code run eagerly while a sample is written (nothing to do on an eager run).

    Under torchrun the blocks are compiled in place (sharded.compile_blocks), so the raw
    model's generate would run them compiled: a batch of one and a context that grows by one
    token each step are two more graphs per rank (static, then dynamic shapes), compiled at
    the first eval. A few hundred eager forwards cost less than those compiles; on a tiny
    model on the CPU they were a quarter of a 2-rank compiled run's CPU (9 s of 39 s, with a
    cold inductor cache)."""
    if not preset.train.compile:
        return contextlib.nullcontext()  # the stance would load torch._dynamo (eager.py)
    return torch.compiler.set_stance("force_eager")


def _unwrapped(model: Any) -> Any:
    """The model without its DistributedDataParallel wrapper: an eval forward needs no collective."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model
