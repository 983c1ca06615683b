"""Setting a run up: the steps Trainer.setup takes, in the order it takes them.

The order matters for reproducibility: the seeds are set before the data loads and
the model is initialised, so a run and its resumption draw the same numbers.
"""

from __future__ import annotations

import inspect
import os
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cockpit import rundir
from cockpit.plan.gpu import peak_flops
from cockpit.plan.presets import Preset
from cockpit.train import checkpoint as ckpt
from cockpit.train import runtime, snapshot
from cockpit.train.data import BatchSampler, load_data
from cockpit.train.model import build_model
from cockpit.train.prefetch import PrefetchSampler, prefetch_wanted
from cockpit.train.runtime import (
    Dist,
    EngineError,
    enable_tf32,
    resolve_device,
    resolve_dtype,
    versions,
)

if TYPE_CHECKING:
    from cockpit.train.loop import Trainer


def check_trainable(preset: Preset) -> None:
    """An EngineError (kind arch) when the engine cannot train the preset's architecture."""
    ok, why = preset.trainable
    if not ok:
        raise EngineError(f"model.arch={preset.model.arch}: {why}", kind="arch")


def init_device(requested: str, train_dtype: str, dist: Dist) -> tuple[torch.device, str]:
    """Join the torchrun job (if any); the device and the compute dtype's name."""
    if dist.world_size > 1:  # nccl on CUDA, gloo on CPU (train/dist.py)
        from cockpit.train.dist import init_group

        device = init_group(requested, dist)
    else:
        device = resolve_device(requested, dist)
    dtype = resolve_dtype(train_dtype, device)
    if device.type == "cuda":
        enable_tf32()
    return device, dtype


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch generators from the preset's seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_training_data(
    preset: Preset, device: torch.device, rank: int, world_size: int = 1
) -> tuple[Any, BatchSampler]:
    """The data (train and val tokens, tokenizer) and this rank's training batch sampler."""
    m = preset.model
    data = load_data(preset.data, block_size=m.block_size, vocab_size=m.vocab_size)
    needed = int(getattr(data, "vocab_size_needed", 0) or 0)
    if needed > m.vocab_size:
        raise EngineError(
            f"model.vocab_size={m.vocab_size} is below the {needed} tokens this data and tokenizer need; "
            f"set model.vocab_size to at least {needed}",
            kind="data",
        )
    # Evals draw their batches from seeds of their own.
    if world_size > 1:  # each rank reads its slice of the global batch (train/dist.py)
        from cockpit.train.dist import RankSampler

        sampler: BatchSampler = RankSampler(
            data.train, m.block_size, preset.train.seed, device, rank, world_size
        )
    elif prefetch_wanted():  # the next batch copied on a side stream (measured on a GPU first)
        sampler = PrefetchSampler(data.train, m.block_size, preset.train.seed + rank, device)
    else:
        sampler = BatchSampler(data.train, m.block_size, preset.train.seed + rank, device)
    return data, sampler


def build_models(
    preset: Preset, device: torch.device, dist: Dist, warn: Callable[..., None]
) -> tuple[Any, Any]:
    """(raw model, the model that runs forward: compiled and/or DDP-wrapped as the preset asks)."""
    m, t = preset.model, preset.train
    try:
        raw_model = build_model(m).to(device)
    except NotImplementedError as exc:
        raise EngineError(f"model.arch={m.arch}: {exc}", kind="arch") from None
    if t.activation_checkpointing:
        setter = getattr(raw_model, "set_activation_checkpointing", None)
        if setter is None:
            warn(
                "activation_checkpointing",
                "info",
                f"model.arch={m.arch} has no activation checkpointing; training without it",
                "",
            )
        else:
            setter(True)
    model: Any = raw_model
    if dist.world_size > 1:  # per block, then wrapped or sharded: see compile_blocks
        from cockpit.train.sharded import compile_blocks, shard_model

        compiled = compile_blocks(raw_model) if t.compile else 0
        if t.parallel == "fsdp":  # sharded in place, no DDP wrapper
            shard_model(raw_model)
        if t.compile and not compiled:  # no block list to compile one by one: the whole model
            model = torch.compile(raw_model)
    elif t.compile:
        model = torch.compile(raw_model)
    if dist.world_size > 1 and t.parallel != "fsdp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [dist.local_rank] if device.type == "cuda" else None  # gloo on CPU: no device ids
        # No buffer sync per forward: a GPT's buffers are fixed, and evals run on the ranks unevenly.
        no_sync = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
            else {"broadcast_buffers": False}
        )
        model = DistributedDataParallel(model, device_ids=ids, **no_sync)
    return raw_model, model


def gpu_facts(device: torch.device, dtype: str) -> tuple[str | None, int | None, float | None]:
    """(GPU name, its memory in bytes, its peak FLOP/s for `dtype`); all None on CPU."""
    if device.type != "cuda":
        return None, None, None
    name = torch.cuda.get_device_name(device)
    peak = peak_flops(name, dtype)
    memory = torch.cuda.get_device_properties(device).total_memory
    return name, memory, (float(peak) if peak else None)


def gpu_uuid(device: torch.device) -> str | None:
    """The UUID of the GPU this rank trains on, as NVML writes it ("GPU-..."); None on CPU.

    What matches it to NVML's telemetry (plan/gpu.py gpu_by_uuid): CUDA's numbering
    follows CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER, NVML's does not.
    """
    if device.type != "cuda":
        return None
    uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
    if uuid is None:
        return None
    text = str(uuid)
    return text if text.startswith("GPU-") else f"GPU-{text}"


def tokens_per_byte(data: Any) -> float | None:
    """Validation tokens per byte of validation text (for bits per byte); None when unknown."""
    val_bytes = getattr(data, "val_bytes", None)
    n_val = len(data.val)
    return (n_val / val_bytes) if val_bytes and n_val else None


def resume(tr: Trainer) -> int:
    """Restore the latest usable checkpoint (saying why an unusable one was skipped); its step."""
    if tr.write_checkpoints:
        ckpt.remove_stale_temps(tr.ckpt_dir)
    loaded = ckpt.load_latest(tr.ckpt_dir)
    for problem in loaded.problems:
        tr.warn("checkpoint", "warning", f"{problem}; resuming from {loaded.path.name} instead", "")
    snapshot.restore(tr, loaded.state, counters=True)
    tr.last_ckpt_step = tr.step
    return tr.step


def cpu_dtype_tip(tr: Trainer) -> None:
    """An `info` warning (rule cpu_dtype) on a float32 CPU run where bf16 would run on AMX.

    On such a CPU a bf16 step (linears in bf16, attention kept in float32:
    model.causal_attention) takes 0.51-0.71x the fp32 one (nanoGPT's CPU recipe, tiny_char,
    small_char), and that recipe's val loss after 2000 steps is 1.8958 against 1.8961;
    bench/results/cpu-bf16-2026-11-22.md. fp32 stays the default on CPU: it is exact.
    """
    if tr.device.type != "cpu" or tr.dtype != "fp32" or not runtime.cpu_has_amx():
        return
    tr.warn(
        "cpu_dtype",
        "info",
        "this CPU has AMX bf16 units and the run trains in float32",
        "train.dtype=bf16 runs the linears on AMX: 1.4-2x faster a step, the same loss to ~0.01",
        {"dtype": tr.dtype},
    )


def announce_start(tr: Trainer, resumed_from: int | None) -> None:
    """The `start` event, and run.json's running status with where and how the run trains."""
    t = tr.t
    tr.events.emit(
        "start",
        tr.step,
        preset=tr.preset.name,
        device=str(tr.device),
        gpu=tr.gpu_name,
        gpu_uuid=gpu_uuid(tr.device),
        dtype=tr.dtype,
        params=tr.params,
        tokens_per_step=tr.tokens_per_step,
        data=str(getattr(tr.data, "description", "")),
        resumed_from=resumed_from,
        max_steps=t.max_steps,
        micro_batch=tr.micro_batch,
        grad_accum=tr.grad_accum,
        world_size=tr.dist.world_size,
        compile=t.compile,
        pid=os.getpid(),
    )
    if tr.write_run_info:
        rundir.update_run_info(
            tr.run_dir,
            status="running",
            pid=os.getpid(),
            pid_start_time=rundir.process_start_time(os.getpid()),
            device=str(tr.device),
            gpu_name=tr.gpu_name,
            dtype=tr.dtype,
            world_size=tr.dist.world_size,
            versions=versions(),
            max_steps=t.max_steps,
            params=tr.params,
            step=tr.step,
            started=time.time(),
            end_reason=None,
        )
