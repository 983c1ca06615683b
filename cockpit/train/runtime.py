"""Where and how the child runs: torchrun ranks, device, dtype, errors, and the end of a run."""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch

from cockpit import __version__, rundir
from cockpit.health import HealthWarning
from cockpit.plan.gpu import has_bf16
from cockpit.rundir import EndEvent, EventWriter, WarningEvent

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class EngineError(RuntimeError):
    """A run the engine cannot start or continue (end reason `error`); `kind` names the cause."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind


class HaltTraining(RuntimeError):
    """A health response stopped the run on purpose (end reason `halted`)."""


@dataclass
class Dist:
    """Where this process sits in a torchrun job (world_size 1 without torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def master(self) -> bool:
        return self.rank == 0


def dist_from_env() -> Dist:
    """RANK / LOCAL_RANK / WORLD_SIZE as torchrun sets them."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Dist()
    return Dist(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world)


def resolve_device(requested: str, dist: Dist) -> torch.device:
    """auto -> cuda when torch sees a GPU, else cpu; cuda without a GPU is an EngineError."""
    if dist.world_size > 1:
        return torch.device("cuda", dist.local_rank)
    if requested not in ("auto", "cpu", "cuda"):
        raise EngineError(f"unknown device {requested!r}; use auto, cpu or cuda", kind="device")
    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        raise EngineError(
            f"--device cuda was asked for but torch {torch.__version__} sees no CUDA GPU; use --device cpu or auto",
            kind="device",
        )
    if requested == "auto" and not has_cuda and gpus_granted():
        # A scheduler (Slurm, the queue) gave this process GPUs that torch cannot use: a CPU
        # build of torch, or no driver on the node. Training goes on, on the CPU, and says so.
        print(
            f"gpt-cockpit: CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']} gives this"
            f" run GPUs but torch {torch.__version__} sees no CUDA device: training on the CPU",
            file=sys.stderr,
            flush=True,
        )
    return torch.device(
        "cuda" if requested == "cuda" or (requested == "auto" and has_cuda) else "cpu"
    )


def gpus_granted() -> bool:
    """CUDA_VISIBLE_DEVICES names at least one GPU (set by a scheduler or by hand)."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    return bool(value) and value not in ("-1", "NoDevFiles")


def resolve_dtype(requested: str, device: torch.device) -> str:
    """The compute dtype: auto is bf16 on GPUs that have it, fp16 (+GradScaler) on older ones, fp32 on CPU."""
    if device.type == "cpu":
        if requested == "fp16":
            raise EngineError(
                "train.dtype=fp16 needs a CUDA GPU (it trains with a GradScaler); use bf16 or fp32 on CPU",
                kind="dtype",
            )
        return "fp32" if requested == "auto" else requested
    # By compute capability, as the planner decides (plan/gpu.py has_bf16), not by
    # torch.cuda.is_bf16_supported(), which counts 7.x's emulated bf16 as support.
    major, minor = torch.cuda.get_device_capability(device)
    capability = (major, minor)
    bf16_ok = has_bf16(capability)
    if requested == "auto":
        return "bf16" if bf16_ok else "fp16"
    if requested == "bf16" and not bf16_ok:
        major, minor = capability
        raise EngineError(
            f"{torch.cuda.get_device_name(device)} (compute capability {major}.{minor}) has no "
            "bf16 tensor cores, it would train emulated bf16; use train.dtype=fp16 or auto",
            kind="dtype",
        )
    return requested


def cpu_has_amx() -> bool:
    """True when this CPU multiplies bf16 on AMX tiles (Xeon Sapphire Rapids and newer)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # an older torch, or a non-x86 build
        return False


def enable_tf32() -> None:
    """TF32 matmuls and convolutions on Ampere and newer GPUs (fp32 parts run on tensor cores)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def set_threads() -> int:
    """Apply `chosen_threads` to torch; the number of threads torch now uses."""
    from cockpit.train.threads import chosen_threads

    n = chosen_threads()
    if n is not None:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def versions() -> dict[str, Any]:
    """cockpit, Python, torch and CUDA versions, as plain strings."""
    return {
        "cockpit": __version__,
        "python": platform.python_version(),
        "torch": str(torch.__version__),  # TorchVersion is a class weights_only loading refuses
        "cuda": torch.version.cuda,
    }


def one_line(text: str, limit: int = 500) -> str:
    """`text` squeezed onto one line, cut at `limit` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def warning_event(warning: HealthWarning) -> WarningEvent:
    """A health warning as the `warning` event of its step."""
    return WarningEvent(step=int(warning.step), **warning.to_event_fields())


def finish_run(
    run_dir: str | os.PathLike[str],
    events: EventWriter,
    reason: str,
    message: str,
    step: int,
    best_val_loss: float | None = None,
    *,
    write_run_info: bool = True,
) -> None:
    """The `end` event and run.json's final status, end_reason and end time."""
    events.emit(EndEvent(step=step, reason=reason, message=one_line(message)))
    events.sync()
    if write_run_info:
        changes: dict[str, Any] = {
            "status": rundir.status_for_end_reason(reason),
            "end_reason": reason,
            "end_message": one_line(message),
            "ended": time.time(),
            "step": step,
        }
        if best_val_loss is not None:
            changes["best_val_loss"] = best_val_loss
        rundir.update_run_info(run_dir, **changes)
