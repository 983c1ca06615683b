"""Metric read-back: the pending steps' losses and norms, read in one host sync, become step events.

A step leaves its loss, grad norm and (fp16) GradScaler scale on the device as a
PendingStep. Every train.log_interval steps they are stacked and read back together
(under torchrun, averaged over the ranks with the stop and time-up flags, so every
rank decides alike), written as one batch of `step` events, and fed to the health
rules; the anomalies those find are returned for the loop to respond to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from cockpit.health import HealthMonitor, HealthWarning
from cockpit.rundir import EventWriter, StepEvent
from cockpit.train.runtime import Dist, warning_event
from cockpit.train.state import TrainState


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


@dataclass
class ReadBack:
    """What one read-back found: the anomalies, and (under torchrun) the flags every rank agreed on."""

    anomalies: list[HealthWarning]
    stop: bool = False  # some rank was asked to stop
    time_up: bool = False  # some rank's clock passed train.max_time_s


@dataclass
class MetricsReader:
    """Keeps the steps' metrics on the device and reads them back together, as step events."""

    device: torch.device
    dist: Dist
    tokens_per_step: int  # every rank's tokens of one step
    events: EventWriter
    monitor: HealthMonitor | None = None  # None only where a benchmark turns the health rules off
    loggers: Any = None  # train.loggers (cockpit.train.loggers), rank 0 only
    flops_per_token: float = 0.0
    peak_flops: float | None = None  # per GPU; None on CPU or an unknown GPU
    pending: list[PendingStep] = field(default_factory=list)
    last_scale: float | None = None  # the GradScaler scale at the last step read (fp16)
    interval_start: float = field(default_factory=time.perf_counter)

    def add(self, step: PendingStep) -> None:
        """A step whose metrics stay on the device until the next read-back."""
        self.pending.append(step)

    def restart(self, scaler: torch.amp.GradScaler | None = None) -> None:
        """Time the next interval from now (after an eval or a rollback); take the scaler's scale."""
        self.interval_start = time.perf_counter()
        if scaler is not None and scaler.is_enabled():
            self.last_scale = float(scaler.get_scale())

    def read_back(
        self, state: TrainState, stop_local: bool = False, past_max_time: bool = False
    ) -> ReadBack:
        """Read the pending steps' metrics back in one sync, write their events, feed the health rules.

        `stop_local` and `past_max_time` are this rank's flags; under torchrun the
        returned ones are every rank's. The anomalies are the health warnings that call
        for train.on_anomaly.
        """
        if not self.pending:
            return ReadBack([], stop_local, past_max_time)
        pending, self.pending = self.pending, []
        metrics, stop, time_up = self._gather(pending, stop_local, past_max_time)
        now = time.perf_counter()
        interval_ms = (now - self.interval_start) * 1000.0 / len(pending)
        self.interval_start = now
        vram = self._vram_bytes()
        events, warnings = [], []
        for i, p in enumerate(pending):
            loss, norm = metrics.losses[i], metrics.norms[i]
            skipped = False
            if metrics.scales is not None:
                scale = metrics.scales[i]
                # GradScaler backed off: step skipped
                skipped = self.last_scale is not None and scale < self.last_scale
                self.last_scale = scale
            # CPU ops are synchronous, so host time is the step time; on CUDA only the interval average is real.
            step_ms = p.host_ms if self.device.type == "cpu" else interval_ms
            tokens_per_s = self.tokens_per_step / (step_ms / 1000.0) if step_ms > 0 else None
            events.append(
                StepEvent(
                    step=p.step,
                    time=p.wall,
                    loss=loss,
                    lr=p.lr,
                    grad_norm=norm,
                    tokens_per_s=tokens_per_s,
                    step_ms=step_ms,
                    tokens=state.tokens_seen - (pending[-1].step - p.step) * self.tokens_per_step,
                    mfu=self._mfu(tokens_per_s),
                    micro_batch=p.micro_batch,
                    grad_accum=p.grad_accum,
                    lr_scale=state.lr_scale,
                    vram_bytes=vram,
                    scaler_skipped=skipped,
                )
            )
            if self.monitor is not None:
                warnings += self.monitor.observe_step(
                    p.step,
                    loss,
                    norm,
                    p.lr,
                    tokens_per_s,
                    vram_bytes=vram,
                    scaler_skipped=skipped,
                    lr_scale=state.lr_scale,
                )
        self.events.write_many(events)
        if self.loggers is not None:  # train.loggers: the same host values, rank 0
            self.loggers.log_steps([e.to_record() for e in events])
        self.events.write_many(warning_event(w) for w in warnings)
        return ReadBack([w for w in warnings if w.is_anomaly], stop, time_up)

    def _vram_bytes(self) -> int | None:
        """Reserved GPU memory; under torchrun the fullest GPU's, the same on every rank."""
        if self.device.type != "cuda":
            return None
        vram = torch.cuda.memory_reserved(self.device)
        if self.dist.world_size > 1:
            from cockpit.train.dist import reduce_max

            vram = int(reduce_max(torch.tensor(float(vram), device=self.device), self.dist).item())
        return vram

    def _gather(
        self, pending: list[PendingStep], stop: bool, time_up: bool
    ) -> tuple[Metrics, bool, bool]:
        """Stack the pending values (and, under torchrun, reduce them and the flags over the ranks); one host sync."""
        n = len(pending)
        parts = [p.loss.float() for p in pending] + [p.grad_norm.float() for p in pending]
        scales = [p.scale for p in pending if p.scale is not None]
        has_scales = len(scales) == n
        if has_scales:
            parts += [s.float().reshape(()) for s in scales]
        ddp = self.dist.world_size > 1
        if ddp:  # ranks agree on metrics, stop and time-up, so every rank makes the same decisions
            parts += [torch.tensor(float(f), device=self.device) for f in (stop, time_up)]
        stacked = torch.stack(parts)
        if ddp:
            import torch.distributed as tdist

            tdist.all_reduce(stacked)
            stacked[:-2] /= self.dist.world_size
        values = stacked.tolist()  # the one host sync of this interval
        if ddp:
            stop, time_up = values[-2] > 0, values[-1] > 0
        metrics = Metrics(
            values[:n], values[n : 2 * n], values[2 * n : 3 * n] if has_scales else None
        )
        return metrics, stop, time_up

    def _mfu(self, tokens_per_s: float | None) -> float | None:
        """Model FLOPs utilisation over all ranks; None on CPU or an unknown GPU."""
        if tokens_per_s and self.flops_per_token and self.peak_flops:
            return self.flops_per_token * tokens_per_s / (self.peak_flops * self.dist.world_size)
        return None
