"""Metric read-back: the pending steps' losses and norms, read in one host sync, become step events.

A step leaves its loss, grad norm and (fp16) GradScaler scale on the device as a
PendingStep. Every train.log_interval steps they are stacked and read back together
(under torchrun, averaged over the ranks with the stop and time-up flags, so every
rank decides alike), written as one batch of `step` events, and fed to the health
rules; the anomalies those find are returned for the trainer to respond to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from cockpit.rundir import make_record

if TYPE_CHECKING:
    from cockpit.train.loop import Trainer


@dataclass
class PendingStep:
    """One optimizer step whose metrics are still on the device."""

    step: int
    lr: float
    loss: torch.Tensor
    grad_norm: torch.Tensor
    scale: torch.Tensor | None  # GradScaler scale after the step (fp16 only)
    host_ms: float  # host time of the step (exact on CPU, where ops are synchronous)
    wall: float  # time.time() at the end of the step
    micro_batch: int
    grad_accum: int


@dataclass
class Metrics:
    """The pending steps' values on the host, in the pending steps' order."""

    losses: list[float]
    norms: list[float]
    scales: list[float] | None  # None unless every step had a GradScaler scale


def read_back(tr: Trainer) -> list[Any]:
    """Read the pending steps' metrics back in one sync, write their events, feed the health rules.

    Returns the anomalies (health warnings that call for train.on_anomaly).
    """
    if not tr.pending:
        return []
    pending, tr.pending = tr.pending, []
    metrics = _gather(tr, pending)
    now = time.perf_counter()
    interval_ms = (now - tr.interval_start) * 1000.0 / len(pending)
    tr.interval_start = now
    vram = torch.cuda.memory_reserved(tr.device) if tr.device.type == "cuda" else None
    if vram is not None and tr.dist.world_size > 1:  # the fullest GPU, the same on every rank
        from cockpit.train.dist import reduce_max

        vram = int(reduce_max(torch.tensor(float(vram), device=tr.device), tr.dist).item())
    records, warnings = [], []
    for i, p in enumerate(pending):
        loss, norm = metrics.losses[i], metrics.norms[i]
        skipped = False
        if metrics.scales is not None:
            scale = metrics.scales[i]
            # GradScaler backed off: step skipped
            skipped = tr.last_scale is not None and scale < tr.last_scale
            tr.last_scale = scale
        # CPU ops are synchronous, so host time is the step time; on CUDA only the interval average is real.
        step_ms = p.host_ms if tr.device.type == "cpu" else interval_ms
        tokens_per_s = tr.tokens_per_step / (step_ms / 1000.0) if step_ms > 0 else None
        record = make_record(
            "step",
            p.step,
            loss=loss,
            lr=p.lr,
            grad_norm=norm,
            tokens_per_s=tokens_per_s,
            step_ms=step_ms,
            tokens=tr.tokens_seen - (pending[-1].step - p.step) * tr.tokens_per_step,
            mfu=_mfu(tr, tokens_per_s),
            micro_batch=p.micro_batch,
            grad_accum=p.grad_accum,
            lr_scale=tr.lr_scale,
            vram_bytes=vram,
            scaler_skipped=skipped,
        )
        record["time"] = p.wall
        records.append(record)
        if tr.monitor is not None:  # None only where a benchmark turns the health rules off
            warnings += tr.monitor.observe_step(
                p.step,
                loss,
                norm,
                p.lr,
                tokens_per_s,
                vram_bytes=vram,
                scaler_skipped=skipped,
                lr_scale=tr.lr_scale,
            )
    tr.events.write_many(records)
    if getattr(tr, "loggers", None) is not None:  # train.loggers: the same host values, rank 0
        tr.loggers.log_steps(records)
    for w in warnings:
        tr.emit_warning(w)
    return [w for w in warnings if w.is_anomaly]


def _gather(tr: Trainer, pending: list[PendingStep]) -> Metrics:
    """Stack the pending values (and, under torchrun, reduce them over the ranks); one host sync."""
    n = len(pending)
    parts = [p.loss.float() for p in pending] + [p.grad_norm.float() for p in pending]
    scales = [p.scale for p in pending if p.scale is not None]
    has_scales = len(scales) == n
    if has_scales:
        parts += [s.float().reshape(()) for s in scales]
    ddp = tr.dist.world_size > 1
    if ddp:  # ranks agree on metrics, stop and time-up, so every rank makes the same decisions
        parts += [
            torch.tensor(float(f), device=tr.device) for f in (tr.stop_local, tr.past_max_time())
        ]
    stacked = torch.stack(parts)
    if ddp:
        import torch.distributed as tdist

        tdist.all_reduce(stacked)
        stacked[:-2] /= tr.dist.world_size
    values = stacked.tolist()  # the one host sync of this interval
    if ddp:
        tr.stop_requested = tr.stop_requested or values[-2] > 0
        tr.time_up = tr.time_up or values[-1] > 0
    return Metrics(values[:n], values[n : 2 * n], values[2 * n : 3 * n] if has_scales else None)


def _mfu(tr: Trainer, tokens_per_s: float | None) -> float | None:
    """Model FLOPs utilisation over all ranks; None on CPU or an unknown GPU."""
    if tokens_per_s and tr.flops_per_token and tr.peak_flops:
        return tr.flops_per_token * tokens_per_s / (tr.peak_flops * tr.dist.world_size)
    return None
