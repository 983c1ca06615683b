"""FSDP2 (`train.parallel=fsdp`): the model sharded over the ranks, and its sharded checkpoints.

`shard_model` applies `torch.distributed.fsdp.fully_shard` to each block of the
model's block list, then to the root (embeddings, head, final norm, and tied
weights with them): each rank holds 1/W of the weights, gradients and AdamW
state, and gathers one block's weights at a time for its forward and backward.

A checkpoint of a sharded run is two parts: every rank writes its shards of the
model and optimizer state with torch.distributed.checkpoint into
`checkpoints/shards-<step>/` (written to `.tmp`, renamed by rank 0 once all have
written), and rank 0 writes `last.pt` as always, with `model` and `optimizer`
empty and `shards` naming that folder. Shard folders that no checkpoint file
names any more are removed. The world size is checked before loading (a resume
must keep it: the data positions are per rank). `sample` and `export` read the model's
shards back whole, in one process (`load_whole_model`).
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from cockpit.common.diagnostics import first_line
from cockpit.train import checkpoint as ckpt
from cockpit.train.runtime import Dist

SHARDS_PREFIX = "shards-"


def trained_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The blocks of the model's outermost block lists (ModuleLists) that have trained weights."""
    blocks: list[torch.nn.Module] = []
    taken: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.ModuleList):
            continue
        if any(name.startswith(prefix + ".") for prefix in taken):
            continue  # inside a block already chosen
        taken.append(name)
        blocks += [b for b in module if any(p.requires_grad for p in b.parameters())]
    return blocks


def compile_blocks(model: torch.nn.Module) -> int:
    """torch.compile each block in place (its state_dict keys unchanged); the blocks compiled.

    Under DDP and FSDP, instead of one graph for the whole model: each block's backward
    is then its own graph, so the gradients of a block are ready, and DDP's all-reduce
    of its bucket (FSDP's reduce-scatter) starts, while the blocks before it still run
    backward. One whole-model graph hands every gradient over at its end: no overlap.
    torchtitan's order: compile per block, then fully_shard.
    """
    blocks = trained_blocks(model)
    for block in blocks:
        block.compile()
    return len(blocks)


def shard_model(model: torch.nn.Module) -> int:
    """fully_shard each block of the model's outermost block lists, then the root; the units made."""
    from torch.distributed.fsdp import fully_shard

    blocks = trained_blocks(model)
    for block in blocks:
        fully_shard(block)
    fully_shard(model)
    return len(blocks) + 1


def full_norm(norm: torch.Tensor) -> torch.Tensor:
    """A grad norm as a plain tensor (FSDP2's clip returns a DTensor)."""
    full = getattr(norm, "full_tensor", None)
    return full() if callable(full) else norm


def save_shards(
    ckpt_dir: Path,
    step: int,
    dist: Dist,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
) -> str:
    """Every rank writes its shards of `step` into `ckpt_dir`; the folder's name (a collective)."""
    import torch.distributed as tdist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    name = f"{SHARDS_PREFIX}{step:08d}"
    final = ckpt_dir / name
    tmp = ckpt_dir / (name + ".tmp")
    if dist.master:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    tdist.barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optim_state}, checkpoint_id=str(tmp))
    tdist.barrier()  # every rank's shards are on disk
    if dist.master:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    return name


def load_shards(
    ckpt_dir: Path, name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    """Load the model and optimizer shards of folder `name` into this rank (a collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    folder = ckpt_dir / name
    if not folder.is_dir():
        raise ckpt.CheckpointError(f"{folder} is missing: the checkpoint's shards are gone")
    model_state, optim_state = get_state_dict(model, optimizer)
    state: dict[str, Any] = {"model": model_state, "optimizer": optim_state}
    dcp.load(state, checkpoint_id=str(folder))
    set_state_dict(
        model,
        optimizer,
        model_state_dict=state["model"],
        optim_state_dict=state["optimizer"],
    )


def load_whole_model(model: torch.nn.Module, folder: Path) -> None:
    """Load the model part of shard folder `folder` into an unsharded `model`, in this process.

    What sampling and export need from a sharded run: no process group, no optimizer.
    DCP reads each full tensor from every rank's shards (resharding to one "rank"), into
    the model's own tensors; a checkpoint that lacks one of the model's weights raises.
    """
    import torch.distributed.checkpoint as dcp

    if not folder.is_dir():
        raise ckpt.CheckpointError(f"{folder} is missing: the checkpoint's shards are gone")
    state = {"model": model.state_dict()}
    try:
        with (
            warnings.catch_warnings()
        ):  # "torch.distributed is disabled...": one process, on purpose
            warnings.simplefilter("ignore", UserWarning)
            dcp.load(state, checkpoint_id=str(folder), no_dist=True)
    except Exception as exc:  # noqa: BLE001 - DCP wraps each reader's error in its own type
        raise ckpt.CheckpointError(
            f"{folder}: the shards do not load into the saved preset's model ({first_line(exc)})"
        ) from None
    model.load_state_dict(state["model"])


def prune(ckpt_dir: Path) -> list[str]:
    """Remove the shard folders no checkpoint file names (rank 0, after a write); their names."""
    keep = set()
    for file in (ckpt.LAST, ckpt.LAST_PREV, ckpt.BEST):
        with contextlib.suppress(Exception):
            state = ckpt.load_checkpoint(ckpt_dir / file)
            if state.get("shards"):
                keep.add(state["shards"])
    removed = []
    for folder in ckpt_dir.glob(SHARDS_PREFIX + "*"):
        if folder.is_dir() and folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed
