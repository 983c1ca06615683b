"""Evaluation and sampling: val and train loss, a text sample, the best-so-far bookkeeping.

Each eval draws fresh batches, as nanoGPT's estimate_loss does (one fixed set would
bias every eval the same way), from seeds of the step: a resumed run evaluates on
the same batches. Sampling forks the RNG, so the training streams are untouched.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

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
    bpb = val_loss / LN2 * tr.tokens_per_byte if tr.tokens_per_byte else None
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
