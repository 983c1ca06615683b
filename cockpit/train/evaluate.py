"""Evaluation and sampling: val and train loss, a text sample, the best-so-far bookkeeping.

Each eval draws fresh batches, as nanoGPT's estimate_loss does (one fixed set would
bias every eval the same way), from seeds of the step: a resumed run evaluates on
the same batches. Sampling forks the RNG, so the training streams are untouched.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cockpit import rundir
from cockpit.train.data import BatchSampler

if TYPE_CHECKING:
    from cockpit.train.loop import Trainer

LN2 = math.log(2.0)


def run_eval(tr: Trainer) -> None:
    """Val and train loss on eval_steps random batches each, a sample; events, health, run.json."""
    tr.model.eval()
    try:
        seed = (tr.t.seed + 1_000_003) * 1_000_033 + 2 * tr.step
        full_tpb = None
        if tr.t.eval_full_val:
            val_loss, full_tpb = full_val_loss(tr)
        else:
            val_loss = mean_loss(tr, tr.data.val, seed)
        train_loss = mean_loss(tr, tr.data.train, seed + 1)
        # FSDP: every rank takes part in each forward, so all generate (the same text); rank 0 writes it
        text = sample_text(tr) if tr.t.sample_tokens > 0 and (tr.master or tr.fsdp) else None
    finally:
        tr.model.train()
    tr.last_eval_step = tr.step
    improved = math.isfinite(val_loss) and (tr.best_val_loss is None or val_loss < tr.best_val_loss)
    if improved:
        tr.best_val_loss = val_loss
    tpb = full_tpb or tr.tokens_per_byte
    bpb = val_loss / LN2 * tpb if tpb else None
    tr.events.emit(
        "eval",
        tr.step,
        val_loss=val_loss,
        train_loss=train_loss,
        val_bpb=bpb,
        best_val_loss=tr.best_val_loss,
        improved=improved,
    )
    if text is not None:
        tr.events.emit("sample", tr.step, text=text)
    if getattr(tr, "loggers", None) is not None:
        tr.loggers.log_eval(
            tr.step, {"val_loss": val_loss, "train_loss": train_loss, "val_bpb": bpb}
        )
    tr.improved = improved
    if tr.monitor is not None:
        for w in tr.monitor.observe_eval(tr.step, val_loss, train_loss):
            tr.emit_warning(w)
    if tr.write_run_info:
        rundir.update_run_info(tr.run_dir, step=tr.step, best_val_loss=tr.best_val_loss)


@torch.no_grad()
def mean_loss(tr: Trainer, tokens: Any, seed: int) -> float:
    """The mean loss over eval_steps micro-batches of `tokens` drawn from `seed` (one host sync).

    Under torchrun the ranks share the batches out (rank r evaluates batches r, r+W, ...)
    and sum their losses, so the mean is over the same eval_steps batches as on one process.
    """
    sampler = BatchSampler(tokens, tr.preset.model.block_size, seed, tr.device)
    losses = torch.zeros(tr.t.eval_steps, device=tr.device)
    rank, world = tr.dist.rank, tr.dist.world_size
    net = _unwrapped(tr.model)
    # FSDP: every rank runs as many forwards (each gathers weights from all): pad the last round
    rounds = -(-tr.t.eval_steps // world) * world if tr.fsdp else tr.t.eval_steps
    for k in range(rounds):
        if k % world != rank:
            sampler.skip(tr.micro_batch)  # another rank's batch
            continue
        x, y = sampler.sample(tr.micro_batch)
        with tr.autocast:
            loss = net(x, y)[1]
        if k < tr.t.eval_steps:
            losses[k] = loss.float()
    if world > 1:
        from cockpit.train.dist import reduce_sum

        reduce_sum(losses, tr.dist)
    return losses.mean().item()


@torch.no_grad()
def full_val_loss(tr: Trainer) -> tuple[float, float | None]:
    """The mean loss over the whole validation split in consecutive block_size windows, as the
    golf reference evaluates, and its target tokens per byte (with a byte table); one host sync.

    Under torchrun the ranks share the windows out (rank r evaluates windows
    [n*r//W, n*(r+1)//W) in micro-batches) and the token-weighted loss sums and the byte
    sums are added over the ranks: every rank ends with the figures of one process."""
    T = tr.preset.model.block_size
    val = tr.data.val
    n_windows = (len(val) - 1) // T
    rank, world = tr.dist.rank, tr.dist.world_size
    table = getattr(tr, "device_byte_table", None)
    loss_sum = torch.zeros((), device=tr.device, dtype=torch.float64)
    byte_sum = torch.zeros((), device=tr.device, dtype=torch.float64)
    batch = max(1, tr.micro_batch)
    net = _unwrapped(tr.model)
    lo, hi = n_windows * rank // world, n_windows * (rank + 1) // world
    for first in range(lo, hi, batch):
        x, y = _windows(tr, first, min(first + batch, hi))
        with tr.autocast:
            loss = net(x, y)[1]
        loss_sum += loss.double() * y.numel()
        if table is not None:
            byte_sum += table.bytes_of(x.reshape(-1), y.reshape(-1)).double()
    if world > 1:
        if tr.fsdp:
            _pad_forwards(tr, net, n_windows, hi - lo, batch)
        from cockpit.train.dist import reduce_sum

        sums = reduce_sum(torch.stack([loss_sum, byte_sum]), tr.dist)
        loss_sum, byte_sum = sums[0], sums[1]
    n_tokens = n_windows * T
    loss_value, n_bytes = (loss_sum / max(n_tokens, 1)).item(), byte_sum.item()
    return loss_value, (n_tokens / n_bytes if n_bytes else None)


def _windows(tr: Trainer, first: int, last: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of validation windows [first, last), on the eval's device."""
    T = tr.preset.model.block_size
    chunk = torch.from_numpy(np.asarray(tr.data.val[first * T : last * T + 1]).astype(np.int64))
    if tr.device.type == "cuda":
        # pinned and non-blocking: a pageable copy waits for the GPU, a host sync per batch
        # over golf's whole validation split; torch keeps the pinned buffer until the copy ran
        chunk = chunk.pin_memory().to(tr.device, non_blocking=True)
    else:
        chunk = chunk.to(tr.device)
    return chunk[:-1].view(-1, T), chunk[1:].view(-1, T)


def _pad_forwards(tr: Trainer, net: Any, n_windows: int, own: int, batch: int) -> None:
    """FSDP: each forward gathers weights from every rank, so every rank runs as many as the
    rank with the most windows (ceil(n/W) of them); a rank with fewer runs forwards on the
    first windows again, not counted."""
    most = -(-n_windows // tr.dist.world_size)
    spare = -(-most // batch) - -(-own // batch)
    if spare <= 0:
        return
    x, y = _windows(tr, 0, min(batch, n_windows))  # the shape of a full micro-batch
    for _ in range(spare):
        with tr.autocast:
            net(x, y)


def _unwrapped(model: Any) -> Any:
    """The model without its DistributedDataParallel wrapper: an eval forward needs no collective."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def sample_text(tr: Trainer) -> str:
    """Generated text from a newline (or the first validation token); the training RNG streams are left untouched."""
    try:
        start_ids = list(tr.tokenizer.encode("\n")) or [int(tr.data.val[0])]
    except ValueError:  # a char vocabulary without a newline, or ids-only data
        start_ids = [int(tr.data.val[0])]
    idx = torch.tensor([start_ids], dtype=torch.long, device=tr.device)
    devices = [tr.device.index or 0] if tr.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), tr.autocast:
        torch.manual_seed(tr.t.seed + tr.step)
        out = tr.raw_model.generate(
            idx,
            tr.t.sample_tokens,
            temperature=0.8,
            top_k=200,
            vocab_limit=tr.tokenizer.vocab_size or None,
        )
    return tr.tokenizer.decode(out[0, len(start_ids) :].tolist())
