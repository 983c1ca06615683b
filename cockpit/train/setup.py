"""Setting a run up: the steps Trainer.setup takes, in the order it takes them, with explicit inputs.

The order matters for reproducibility: the seeds are set before the data loads and
the model is initialised, so a run and its resumption draw the same numbers.
"""

from __future__ import annotations

import inspect
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cockpit import rundir
from cockpit.plan.gpu import peak_flops
from cockpit.plan.presets import Preset
from cockpit.rundir import EventWriter, StartEvent, WarningEvent
from cockpit.train import runtime
from cockpit.train.data import BatchSampler, load_data
from cockpit.train.models import build_model
from cockpit.train.prefetch import PrefetchSampler, prefetch_wanted
from cockpit.train.runtime import (
    Dist,
    EngineError,
    enable_tf32,
    resolve_device,
    resolve_dtype,
    versions,
)


def check_trainable(preset: Preset) -> None:
    """An EngineError (kind arch) when the engine cannot train the preset's architecture."""
    ok, why = preset.trainable
    if not ok:
        raise EngineError(f"model.arch={preset.model.arch}: {why}", kind="arch")


def check_model_file(run_dir: Path) -> None:
    """An EngineError (kind arch) when resuming would continue the checkpoint with a model file
    (or a module beside it) changed since the run started: the launchers refuse that before the
    child starts; this catches what starts the child without them (a Slurm requeue, by hand)."""
    from cockpit.runs.prelaunch import model_file_problem

    changed = model_file_problem(run_dir)
    if changed is not None:
        raise EngineError(changed.line, kind="arch")


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
        if not getattr(raw_model, "checkpointing_supported", False):
            warn(
                "activation_checkpointing",
                "info",
                f"model.arch={m.arch} has no activation checkpointing; training without it",
                "",
            )
        else:
            raw_model.set_activation_checkpointing(True)
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
        no_sync: dict[str, Any] = (
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


def cpu_dtype_tip(step: int, device: torch.device, dtype: str) -> WarningEvent | None:
    """An `info` warning (rule cpu_dtype) on a float32 CPU run where bf16 would run on AMX.

    On such a CPU a bf16 step (linears in bf16, attention kept in float32:
    model.causal_attention) takes 0.51-0.71x the fp32 one (nanoGPT's CPU recipe, tiny_char,
    small_char), and that recipe's val loss after 2000 steps is 1.8958 against 1.8961;
    bench/results/cpu-bf16-2026-11-22.md. fp32 stays the default on CPU: it is exact.
    """
    if device.type != "cpu" or dtype != "fp32" or not runtime.cpu_has_amx():
        return None
    return WarningEvent(
        step=step,
        rule="cpu_dtype",
        severity="info",
        message="this CPU has AMX bf16 units and the run trains in float32",
        tip="train.dtype=bf16 runs the linears on AMX: 1.4-2x faster a step, the same loss to ~0.01",
        evidence={"dtype": dtype},
    )


def announce_start(
    events: EventWriter, run_dir: Path, start: StartEvent, *, write_run_info: bool
) -> None:
    """The `start` event, and run.json's running status with where and how the run trains."""
    events.emit(start)
    if write_run_info:
        rundir.update_run_info(
            run_dir,
            status="running",
            pid=start.pid,
            pid_start_time=rundir.process_start_time(os.getpid()),
            device=start.device,
            gpu_name=start.gpu,
            dtype=start.dtype,
            world_size=start.world_size,
            versions=versions(),
            max_steps=start.max_steps,
            params=start.params,
            step=start.step,
            started=time.time(),
            end_reason=None,
            end_message=None,  # a kill asked for before this launch (rundir.KILLED_HOW) is over
        )
