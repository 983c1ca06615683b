"""The training loop: setup, optimizer steps, batched metric read-back, evals, checkpoints, responses.

`Trainer` owns one run directory. It never reads a metric back per step: each
step's loss and grad norm stay on the device and are read back together every
`train.log_interval` steps (one host sync per interval), then written as one
batch of `step` events. Health warnings, anomaly responses (warn / halt /
rollback) and the out-of-memory retry are applied at those read-backs.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cockpit import runs
from cockpit.events import EventWriter, NullEventWriter, make_record
from cockpit.presets import Preset
from cockpit.train import checkpoint as ckpt
from cockpit.train.faults import Faults, faults_from_env
from cockpit.train.runtime import (
    AMP_DTYPES,
    Dist,
    EngineError,
    Fallback,
    HaltTraining,
    dist_from_env,
    finish_run,
    one_line,
    resolve_device,
    resolve_dtype,
    versions,
)
from cockpit.train.schedule import lr_at

LN2 = math.log(2.0)


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


class Trainer:
    """Trains the preset of one run directory, writing events, run.json and checkpoints."""

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        device: str = "auto",
        resume: bool = False,
        events: EventWriter | None = None,
        faults: Faults | None = None,
        dist: Dist | None = None,
        write_run_info: bool = True,
        write_checkpoints: bool = True,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / runs.CHECKPOINTS
        self.requested_device = device
        self.resume = resume
        self.dist = dist or dist_from_env()
        self.master = self.dist.master
        self.events: EventWriter = (
            events if (events is not None and self.master) else NullEventWriter()
        )
        self.faults = faults if faults is not None else faults_from_env()
        self.write_run_info = write_run_info and self.master
        self.write_checkpoints = write_checkpoints and self.master
        self.preset: Preset = runs.load_run_preset(self.run_dir)
        self.t = self.preset.train
        self.step = 0
        self.best_val_loss: float | None = None
        self.last_ckpt_step: int | None = None
        self.last_eval_step: int | None = None
        self.lr_scale = 1.0
        self.rollbacks = 0
        self.tokens_seen = 0
        self.micro_batch = self.t.batch_size
        self.grad_accum = self.t.grad_accum
        self.n_seq = (
            self.t.batch_size * self.t.grad_accum
        )  # sequences per optimizer step (never changes)
        self.stop_requested = False  # the stop every rank agreed on
        self.stop_local = False  # this process was asked to stop
        self.time_up = False  # max_time_s passed (agreed between ranks under torchrun)
        self.stop_reason = ""
        self.pending: list[PendingStep] = []
        self.last_scale: float | None = None
        self.monitor: Any = None
        self._improved = False  # the last eval set a new best (best.pt is due)

    # ----------------------------------------------------------------- setup

    def request_stop(self, why: str = "stop requested") -> None:
        """Finish the current step, checkpoint, and end with reason `stopped` (signal-safe)."""
        self.stop_local = True
        self.stop_reason = why
        if self.dist.world_size == 1:
            self.stop_requested = True  # under torchrun the ranks agree on it at the next read-back

    def setup(self) -> None:
        """Device, dtype, seeds, data, model, optimizer, health; restore a checkpoint on resume."""
        t, m = self.t, self.preset.model
        ok, why = self.preset.trainable
        if not ok:
            raise EngineError(f"model.arch={m.arch}: {why}", kind="arch")
        if self.dist.world_size > 1:
            import torch.distributed as tdist

            torch.cuda.set_device(
                self.dist.local_rank
            )  # before NCCL starts, so each rank binds its own GPU
            tdist.init_process_group(backend="nccl")
        self.device = resolve_device(self.requested_device, self.dist)
        self.dtype = resolve_dtype(t.dtype, self.device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls and convolutions on Ampere+
            torch.backends.cudnn.allow_tf32 = True
        random.seed(t.seed)
        np.random.seed(t.seed)
        torch.manual_seed(t.seed)
        amp = AMP_DTYPES.get(self.dtype)
        self.autocast = (
            torch.autocast(device_type=self.device.type, dtype=amp)
            if amp is not None
            else contextlib.nullcontext()
        )

        from cockpit.train.data import BatchSampler, load_data
        from cockpit.train.model import build_model

        self._sampler_cls = BatchSampler
        self.data = load_data(self.preset.data, block_size=m.block_size, vocab_size=m.vocab_size)
        needed = int(getattr(self.data, "vocab_size_needed", 0) or 0)
        if needed > m.vocab_size:
            raise EngineError(
                f"model.vocab_size={m.vocab_size} is below the {needed} tokens this data and tokenizer need; "
                f"set model.vocab_size to at least {needed}",
                kind="data",
            )
        self.tokenizer = self.data.tokenizer
        # Each rank draws its own batches (seed + rank); evals draw theirs from seeds of their own (see _evaluate).
        self.train_sampler = BatchSampler(
            self.data.train, m.block_size, t.seed + self.dist.rank, self.device
        )

        try:
            self.raw_model = build_model(m).to(self.device)
        except NotImplementedError as exc:
            raise EngineError(f"model.arch={m.arch}: {exc}", kind="arch") from None
        if t.activation_checkpointing:
            setter = getattr(self.raw_model, "set_activation_checkpointing", None)
            if setter is None:
                self._warn(
                    "activation_checkpointing",
                    "info",
                    f"model.arch={m.arch} has no activation checkpointing; training without it",
                    "",
                )
            else:
                setter(True)
        self.params = sum(p.numel() for p in self.raw_model.parameters())
        self.model: Any = torch.compile(self.raw_model) if t.compile else self.raw_model
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(self.model, device_ids=[self.dist.local_rank])
        groups = self.raw_model.optimizer_groups(t.weight_decay)
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(
            groups,
            lr=t.lr,
            betas=(t.beta1, t.beta2),
            **({"fused": True} if fused else {"foreach": True}),
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == "fp16")

        self.gpu_name = (
            torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None
        )
        gpu_memory = (
            torch.cuda.get_device_properties(self.device).total_memory if self.gpu_name else None
        )
        self.flops_per_token = self._flops_per_token()
        self.peak_flops = self._peak_flops()
        try:
            from cockpit.health import HealthMonitor

            self.monitor = HealthMonitor(self.preset, gpu_memory_bytes=gpu_memory)
        except ImportError:
            self.monitor = None
        self.tokens_per_step = self.preset.tokens_per_step * self.dist.world_size
        val_bytes = getattr(self.data, "val_bytes", None)
        n_val = len(self.data.val)
        self.tokens_per_byte = (n_val / val_bytes) if val_bytes and n_val else None

        resumed_from = None
        if self.resume:
            if self.write_checkpoints:
                ckpt.remove_stale_temps(self.ckpt_dir)
            loaded = ckpt.load_latest(self.ckpt_dir)
            for problem in loaded.problems:
                self._warn(
                    "checkpoint",
                    "warning",
                    f"{problem}; resuming from {loaded.path.name} instead",
                    "",
                )
            self._restore(loaded.state, counters=True)
            resumed_from = self.step
            self.last_ckpt_step = self.step
        if self.scaler.is_enabled():
            self.last_scale = float(
                self.scaler.get_scale()
            )  # so a skip at the first step is seen too
        self.events.emit(
            "start",
            self.step,
            preset=self.preset.name,
            device=str(self.device),
            gpu=self.gpu_name,
            dtype=self.dtype,
            params=self.params,
            tokens_per_step=self.tokens_per_step,
            data=str(getattr(self.data, "description", "")),
            resumed_from=resumed_from,
            max_steps=t.max_steps,
            micro_batch=self.micro_batch,
            grad_accum=self.grad_accum,
            world_size=self.dist.world_size,
            compile=t.compile,
            pid=os.getpid(),
        )
        if self.write_run_info:
            runs.update_run_info(
                self.run_dir,
                status="running",
                pid=os.getpid(),
                pid_start_time=runs.process_start_time(os.getpid()),
                device=str(self.device),
                gpu_name=self.gpu_name,
                dtype=self.dtype,
                versions=versions(),
                max_steps=t.max_steps,
                params=self.params,
                step=self.step,
                started=time.time(),
                end_reason=None,
            )
        if t.on_anomaly == "rollback" and self.step == 0 and self.write_checkpoints:
            self._checkpoint()  # something to roll back to before the first eval

    def _flops_per_token(self) -> float | None:
        try:
            from cockpit.estimate import flops_per_token

            return float(flops_per_token(self.preset.model))
        except Exception:  # the estimator is optional here: no MFU without it
            return None

    def _peak_flops(self) -> float | None:
        if not self.gpu_name:
            return None
        try:
            from cockpit.gpu import peak_flops

            peak = peak_flops(self.gpu_name, self.dtype)
            return float(peak) if peak else None
        except Exception:
            return None

    # ----------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume or rollback needs, as weights_only-safe values."""
        return {
            "format": ckpt.FORMAT_VERSION,
            "step": self.step,
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "schedule": {"step": self.step, "lr_scale": self.lr_scale, "rollbacks": self.rollbacks},
            "micro_batch": self.micro_batch,
            "grad_accum": self.grad_accum,
            "rng": ckpt.rng_state(self.device),
            "sampler": ckpt.plain(self.train_sampler.state_dict()),
            "health": ckpt.plain(self.monitor.state_dict()) if self.monitor is not None else None,
            "tokenizer": ckpt.plain(self.tokenizer.state_dict()),
            "best_val_loss": self.best_val_loss,
            "tokens": self.tokens_seen,
            "preset": self.preset.to_dict(),
            "versions": versions(),
            "time": time.time(),
        }

    def _restore(self, state: dict[str, Any], *, counters: bool) -> None:
        """Load model, optimizer, scaler, step, RNG, health; with `counters` also sampler and run counters."""
        try:
            self.raw_model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise EngineError(
                f"the checkpoint does not fit this preset's model ({one_line(str(exc), 200)}); "
                "was preset.json changed after the run started?",
                kind="checkpoint",
            ) from None
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        ckpt.set_rng_state(state["rng"], self.device)
        if self.monitor is not None and state.get("health") is not None:
            self.monitor.load_state_dict(state["health"])
        self.best_val_loss = state.get("best_val_loss")
        if counters:
            if self.dist.world_size == 1:
                self.train_sampler.load_state_dict(state["sampler"])
            else:  # the checkpoint holds rank 0's position only: give each rank a fresh stream of its own
                seed = (self.t.seed + self.dist.rank) * 1_000_003 + self.step
                self.train_sampler = self._sampler_cls(
                    self.data.train, self.preset.model.block_size, seed, self.device
                )
            sched = state.get("schedule", {})
            self.lr_scale = float(sched.get("lr_scale", 1.0))
            self.rollbacks = int(sched.get("rollbacks", 0))
            self.tokens_seen = int(state.get("tokens", 0))
            self.micro_batch = int(state.get("micro_batch", self.micro_batch))
            self.grad_accum = int(state.get("grad_accum", self.grad_accum))
            if self.micro_batch * self.grad_accum < self.n_seq:
                self.micro_batch, self.grad_accum = (
                    self.t.batch_size,
                    self.t.grad_accum,
                )  # preset changed

    # ----------------------------------------------------------------- one step

    def _forward_backward(
        self, x: torch.Tensor, y: torch.Tensor, loss_factor: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Accumulate gradients over micro-batches of the step's sequences, clip, step; no host sync."""
        n = x.size(0)
        mb = self.micro_batch
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        starts = range(0, n, mb)
        ddp = self.dist.world_size > 1
        for i, start in enumerate(starts):
            xb, yb = x[start : start + mb], y[start : start + mb]
            self.faults.check_oom(xb.size(0))
            last = i == len(starts) - 1
            sync = self.model.no_sync() if ddp and not last else contextlib.nullcontext()
            with sync:
                with self.autocast:
                    loss = self.model(xb, yb)[
                        1
                    ]  # drop the logits now: holding them through backward costs 2 bytes per logit
                if loss_factor != 1.0:
                    loss = loss * loss_factor
                weight = xb.size(0) / n  # mean over all sequences of the step, whatever the split
                scaled = loss * weight if weight != 1.0 else loss
                self.scaler.scale(scaled).backward()
            total += scaled.detach().float()
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        # The clip call already computes the global norm; with clipping off, max_norm=inf only measures.
        max_norm = self.t.grad_clip if self.t.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return total, norm.detach()

    def _optimizer_step(
        self, x: torch.Tensor, y: torch.Tensor, loss_factor: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step; on out-of-memory, halve the micro-batch (same sequences) and redo it."""
        while True:
            failed: BaseException | None = None
            try:
                return self._forward_backward(x, y, loss_factor)
            except torch.OutOfMemoryError as exc:
                failed = exc
            message = one_line(str(failed), 200)
            del failed  # the traceback holds the step's activations
            self._after_oom(message)

    def _after_oom(self, message: str) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        mb, accum = self.micro_batch, self.grad_accum
        if not self.t.oom_retry:
            raise EngineError(
                f"out of memory at micro-batch {mb} ({message}); lower train.batch_size and raise train.grad_accum, "
                "or set train.oom_retry=true",
                kind="oom",
            )
        if mb <= 1:
            self._warn_obj(self._oom_warning(mb, accum, None, None))
            raise EngineError(
                f"out of memory even at micro-batch 1 ({message}); the model does not fit: use a smaller model "
                "or model.block_size, train.activation_checkpointing, or a bigger GPU",
                kind="oom",
            )
        new_mb = mb // 2
        new_accum = -(-self.n_seq // new_mb)  # ceil: the last micro-batch may be smaller
        self.micro_batch, self.grad_accum = new_mb, new_accum
        self._warn_obj(self._oom_warning(mb, accum, new_mb, new_accum))

    def _oom_warning(
        self, mb: int, accum: int, new_mb: int | None, new_accum: int | None
    ) -> dict[str, Any]:
        try:
            from cockpit.health import oom_warning

            w = oom_warning(
                self.step + 1,
                batch_size=mb,
                grad_accum=accum,
                new_batch_size=new_mb,
                new_grad_accum=new_accum,
            )
            return {**w.to_event_fields(), "step": w.step}
        except ImportError:
            msg = f"out of memory at micro-batch {mb}" + (
                f"; retrying with {new_mb} x {new_accum}" if new_mb else ""
            )
            return {
                "rule": "oom",
                "severity": "warning",
                "message": msg,
                "tip": "",
                "evidence": {},
                "step": self.step + 1,
            }

    # ----------------------------------------------------------------- the loop

    def train(self) -> tuple[str, str]:
        """Train until max_steps, max_time_s, a stop request or a halt; returns (end reason, message)."""
        self.train_start = self.interval_start = time.perf_counter()
        while True:
            ending = self._end_condition()
            if ending is not None:
                if self._readback_and_respond():
                    continue  # rolled back: not at the end after all
                break
            t = self.t
            t0 = time.perf_counter()
            lr = lr_at(self.step, t, self.lr_scale)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            x, y = self.train_sampler.sample(self.n_seq)
            loss_factor = self.faults.loss_factor(self.step + 1)
            loss, norm = self._optimizer_step(x, y, loss_factor)
            self.step += 1
            self.tokens_seen += self.tokens_per_step
            scale = None
            if self.scaler.is_enabled() and getattr(self.scaler, "_scale", None) is not None:
                scale = (
                    self.scaler._scale.detach().clone()
                )  # a device copy, read back with the losses
            if self.faults.active:
                self.faults.after_step(self.step)
                if self.faults.stop_at_step is not None and self.step == self.faults.stop_at_step:
                    self.request_stop(f"stop_at_step={self.step} fault")
            host_ms = (time.perf_counter() - t0) * 1000.0
            self.pending.append(
                PendingStep(
                    self.step,
                    lr,
                    loss,
                    norm,
                    scale,
                    host_ms,
                    time.time(),
                    self.micro_batch,
                    self.grad_accum,
                )
            )
            if self.step % t.log_interval == 0 or self.step >= t.max_steps or self.stop_requested:
                if self._readback_and_respond():
                    continue
            if t.eval_interval and self.step % t.eval_interval == 0 and self.step < t.max_steps:
                self._evaluate()
                self._checkpoint()
                self.interval_start = time.perf_counter()  # eval time is not step time
        reason, message = ending
        if reason in ("finished", "max-time") and self.last_eval_step != self.step:
            self._evaluate()
        if self.last_ckpt_step != self.step:
            self._checkpoint()
        return reason, message

    def _end_condition(self) -> tuple[str, str] | None:
        """(reason, message) when the run should end before the next step, else None."""
        t = self.t
        if self.step >= t.max_steps:
            return "finished", f"reached max_steps={t.max_steps}"
        if self.stop_requested:
            return "stopped", self.stop_reason or "stop requested"
        if self.time_up or (self.dist.world_size == 1 and self._past_max_time()):
            return "max-time", f"reached max_time_s={t.max_time_s:g} at step {self.step}"
        return None

    def _past_max_time(self) -> bool:
        return (
            bool(self.t.max_time_s) and time.perf_counter() - self.train_start >= self.t.max_time_s
        )

    # ----------------------------------------------------------------- read-back

    def _readback_and_respond(self) -> bool:
        """Read back and apply train.on_anomaly; True if the run rolled back."""
        anomalies = self._readback()
        if anomalies and self.t.on_anomaly != "warn":
            self._respond(anomalies[0])
            return True
        return False

    def _readback(self) -> list[Any]:
        """Read the pending steps' metrics back in one sync, write their events, feed the health rules."""
        if not self.pending:
            return []
        pending, self.pending = self.pending, []
        n = len(pending)
        parts = [p.loss.float() for p in pending] + [p.grad_norm.float() for p in pending]
        scales = [p.scale for p in pending if p.scale is not None]
        if len(scales) == n:
            parts += [s.float().reshape(()) for s in scales]
        ddp = self.dist.world_size > 1
        if ddp:  # ranks agree on metrics, stop and time-up, so every rank makes the same decisions
            parts += [
                torch.tensor(float(f), device=self.device)
                for f in (self.stop_local, self._past_max_time())
            ]
        stacked = torch.stack(parts)
        if ddp:
            import torch.distributed as tdist

            tdist.all_reduce(stacked)
            stacked[:-2] /= self.dist.world_size
        values = stacked.tolist()  # the one host sync of this interval
        if ddp:
            self.stop_requested = self.stop_requested or values[-2] > 0
            self.time_up = self.time_up or values[-1] > 0
        now = time.perf_counter()
        interval_ms = (now - self.interval_start) * 1000.0 / n
        self.interval_start = now
        vram = torch.cuda.memory_reserved(self.device) if self.device.type == "cuda" else None
        records, warnings = [], []
        for i, p in enumerate(pending):
            loss, norm = values[i], values[n + i]
            skipped = False
            if len(scales) == n:
                scale = values[2 * n + i]
                skipped = (
                    self.last_scale is not None and scale < self.last_scale
                )  # GradScaler backed off: step skipped
                self.last_scale = scale
            # CPU ops are synchronous, so host time is the step time; on CUDA only the interval average is real.
            step_ms = p.host_ms if self.device.type == "cpu" else interval_ms
            tokens_per_s = self.tokens_per_step / (step_ms / 1000.0) if step_ms > 0 else None
            mfu = None
            if tokens_per_s and self.flops_per_token and self.peak_flops:
                mfu = self.flops_per_token * tokens_per_s / (self.peak_flops * self.dist.world_size)
            record = make_record(
                "step",
                p.step,
                loss=loss,
                lr=p.lr,
                grad_norm=norm,
                tokens_per_s=tokens_per_s,
                step_ms=step_ms,
                tokens=self.tokens_seen - (pending[-1].step - p.step) * self.tokens_per_step,
                mfu=mfu,
                micro_batch=p.micro_batch,
                grad_accum=p.grad_accum,
                lr_scale=self.lr_scale,
                vram_bytes=vram,
                scaler_skipped=skipped,
            )
            record["time"] = p.wall
            records.append(record)
            if self.monitor is not None:
                warnings += self.monitor.observe_step(
                    p.step,
                    loss,
                    norm,
                    p.lr,
                    tokens_per_s,
                    vram_bytes=vram,
                    scaler_skipped=skipped,
                    lr_scale=self.lr_scale,
                )
            elif not (math.isfinite(loss) and math.isfinite(norm)):
                warnings.append(Fallback(p.step, loss, norm))
        self.events.write_many(records)
        for w in warnings:
            self._warn_obj(w.to_event_fields(), step=w.step)
        return [w for w in warnings if w.is_anomaly]

    # ----------------------------------------------------------------- responses

    def _respond(self, warning: Any) -> None:
        """Apply train.on_anomaly (halt or rollback) to an anomaly found at the last read-back."""
        where = (
            f"checkpoints/last.pt from step {self.last_ckpt_step} is from before the problem"
            if self.last_ckpt_step is not None
            else "no checkpoint was written before the problem"
        )
        if self.t.on_anomaly == "halt":
            raise HaltTraining(f"{warning.message}; halted (train.on_anomaly=halt); {where}")
        if self.rollbacks >= self.t.max_rollbacks:
            raise HaltTraining(
                f"{warning.message}; halted after {self.rollbacks} rollbacks (train.max_rollbacks={self.t.max_rollbacks}); {where}"
            )
        try:
            loaded = ckpt.load_latest(self.ckpt_dir)
        except ckpt.CheckpointError as exc:
            raise HaltTraining(f"{warning.message}; cannot roll back ({exc})") from None
        bad_step, sampler_state = self.step, self.train_sampler.state_dict()
        self._restore(loaded.state, counters=False)
        self.train_sampler.load_state_dict(
            sampler_state
        )  # keep going past the batches that caused it
        if self.scaler.is_enabled():
            self.last_scale = float(self.scaler.get_scale())
        self.rollbacks += 1
        self.lr_scale *= self.t.rollback_lr_factor
        skipped = bad_step - self.step
        lr_note = (
            f"; lr x{self.t.rollback_lr_factor:g} (now x{self.lr_scale:g})"
            if self.t.rollback_lr_factor != 1.0
            else ""
        )
        self._warn(
            "rollback",
            "warning",
            f"rolled back from step {bad_step} to step {self.step} ({loaded.path.name}) after: {warning.message}; "
            f"skipping the {skipped} steps of batches since{lr_note}; rollback {self.rollbacks}/{self.t.max_rollbacks}",
            "Rollbacks that repeat mean the run itself is unstable: lower train.lr or raise train.warmup_steps.",
            evidence={
                "from_step": bad_step,
                "to_step": self.step,
                "cause": warning.rule,
                "skipped_steps": skipped,
                "skipped_sequences": skipped * self.n_seq,
                "lr_scale": self.lr_scale,
                "rollbacks": self.rollbacks,
            },
        )
        self.interval_start = time.perf_counter()

    # ----------------------------------------------------------------- eval, sample, checkpoint

    @torch.no_grad()
    def _mean_loss(self, tokens: Any, seed: int) -> float:
        sampler = self._sampler_cls(tokens, self.preset.model.block_size, seed, self.device)
        losses = torch.zeros(self.t.eval_steps, device=self.device)
        for k in range(self.t.eval_steps):
            x, y = sampler.sample(self.micro_batch)
            with self.autocast:
                loss = self.model(x, y)[1]
            losses[k] = loss.float()
        return losses.mean().item()

    def _evaluate(self) -> None:
        """Val and train loss on eval_steps random batches each, a sample, and the best-so-far bookkeeping."""
        self.model.eval()
        try:
            # Fresh batches at each eval, as nanoGPT's estimate_loss (one fixed set would bias every
            # eval the same way), from a seed of the step: a resumed run evaluates on the same batches.
            seed = (self.t.seed + 1_000_003) * 1_000_033 + 2 * self.step
            val_loss = self._mean_loss(self.data.val, seed)
            train_loss = self._mean_loss(self.data.train, seed + 1)
            text = self._sample() if self.t.sample_tokens > 0 and self.master else None
        finally:
            self.model.train()
        self.last_eval_step = self.step
        improved = math.isfinite(val_loss) and (
            self.best_val_loss is None or val_loss < self.best_val_loss
        )
        if improved:
            self.best_val_loss = val_loss
        bpb = val_loss / LN2 * self.tokens_per_byte if self.tokens_per_byte else None
        self.events.emit(
            "eval",
            self.step,
            val_loss=val_loss,
            train_loss=train_loss,
            val_bpb=bpb,
            best_val_loss=self.best_val_loss,
            improved=improved,
        )
        if text is not None:
            self.events.emit("sample", self.step, text=text)
        self._improved = improved
        if self.monitor is not None:
            for w in self.monitor.observe_eval(self.step, val_loss, train_loss):
                self._warn_obj(w.to_event_fields(), step=w.step)
        if self.write_run_info:
            runs.update_run_info(self.run_dir, step=self.step, best_val_loss=self.best_val_loss)

    def _sample(self) -> str:
        """Generated text from a newline (or the first validation token); the training RNG streams are left untouched."""
        try:
            start_ids = list(self.tokenizer.encode("\n")) or [int(self.data.val[0])]
        except ValueError:  # a char vocabulary without a newline, or ids-only data
            start_ids = [int(self.data.val[0])]
        idx = torch.tensor([start_ids], dtype=torch.long, device=self.device)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), self.autocast:
            torch.manual_seed(self.t.seed + self.step)
            out = self.raw_model.generate(
                idx,
                self.t.sample_tokens,
                temperature=0.8,
                top_k=200,
                vocab_limit=self.tokenizer.vocab_size or None,
            )
        return self.tokenizer.decode(out[0, len(start_ids) :].tolist())

    def _checkpoint(self) -> None:
        """last.pt (previous kept as last.prev.pt) and, after an improving eval, best.pt."""
        self.last_ckpt_step = self.step
        if not self.write_checkpoints:
            return
        state = self.state_dict()
        t0 = time.perf_counter()
        path, nbytes = ckpt.save_last(self.ckpt_dir, state)
        self._checkpoint_event(path, "last", nbytes, time.perf_counter() - t0)
        if self._improved:
            self._improved = False
            t0 = time.perf_counter()
            best = self.ckpt_dir / ckpt.BEST
            nbytes = ckpt.save_checkpoint(best, state)
            self._checkpoint_event(best, "best", nbytes, time.perf_counter() - t0)
        self.events.sync()

    def _checkpoint_event(self, path: Path, kind: str, nbytes: int, seconds: float) -> None:
        self.events.emit(
            "checkpoint",
            self.step,
            path=str(path.relative_to(self.run_dir)),
            kind=kind,
            bytes=nbytes,
            seconds=round(seconds, 4),
        )

    # ----------------------------------------------------------------- warnings and the end

    def _warn(
        self,
        rule: str,
        severity: str,
        message: str,
        tip: str,
        evidence: dict[str, Any] | None = None,
    ) -> None:
        self._warn_obj(
            {
                "rule": rule,
                "severity": severity,
                "message": message,
                "tip": tip,
                "evidence": evidence or {},
            }
        )

    def _warn_obj(self, fields: dict[str, Any], step: int | None = None) -> None:
        fields = dict(fields)
        at = fields.pop("step", None)
        at = step if step is not None else at
        self.events.emit("warning", self.step if at is None else int(at), **fields)

    def finish(self, reason: str, message: str) -> None:
        """Log any steps still on the device (best effort), then the `end` event and run.json's final status."""
        if self.pending and reason in ("crashed", "error"):
            with contextlib.suppress(Exception):
                self._readback()
        finish_run(
            self.run_dir,
            self.events,
            reason,
            message,
            self.step,
            self.best_val_loss,
            write_run_info=self.write_run_info,
        )
        if self.dist.world_size > 1:
            with contextlib.suppress(Exception):
                import torch.distributed as tdist

                tdist.destroy_process_group()
