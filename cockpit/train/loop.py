"""The training loop: `Trainer.train()` runs optimizer steps and calls the run's named parts.

`Trainer` owns one run directory and the state its parts share. The parts:

    setup.py     device, dtype, seeds, data, model, resume, the start event (Trainer.setup)
    optim.py     the optimizer, GradScaler and autocast
    step.py      one optimizer step, and its out-of-memory retry
    readback.py  metrics read back once per log interval -> step events and health warnings
    respond.py   train.on_anomaly: halt, or roll back to the last checkpoint
    evaluate.py  evals and samples
    snapshot.py  what a checkpoint holds; writing last.pt and best.pt

No metric is read back per step: each step's loss and grad norm stay on the device
and are read back together every `train.log_interval` steps (one host sync per
interval). Health warnings and anomaly responses happen at those read-backs.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import torch

from cockpit import rundir
from cockpit.health import HealthMonitor
from cockpit.plan.estimate import flops_per_token
from cockpit.plan.presets import Preset
from cockpit.plan.schedule import lr_at_time
from cockpit.rundir import EventWriter, NullEventWriter
from cockpit.train import bpb, evaluate, optim, priming, readback, respond, snapshot
from cockpit.train import setup as setup_steps
from cockpit.train.clock import TrainClock
from cockpit.train.dist import accum_per_rank, destroy_group, from_master, seed_rank
from cockpit.train.faults import Faults, faults_from_env
from cockpit.train.readback import PendingStep
from cockpit.train.runtime import Dist, dist_from_env, finish_run
from cockpit.train.step import Split, run_with_oom_retry


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
        self.ckpt_dir = self.run_dir / rundir.CHECKPOINTS
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
        self.preset: Preset = rundir.load_run_preset(self.run_dir)
        self.t = self.preset.train
        self.step = 0
        self.best_val_loss: float | None = None
        self.last_ckpt_step: int | None = None
        self.last_eval_step: int | None = None
        self.lr_scale = 1.0
        self.rollbacks = 0
        self.tokens_seen = 0
        self.micro_batch = self.t.batch_size
        self.fsdp = self.dist.world_size > 1 and self.t.parallel == "fsdp"  # train/sharded.py
        # train.keep_global_batch (golf): accumulation divided by the world size
        self.grad_accum = accum_per_rank(
            self.t.grad_accum, self.dist.world_size, self.t.keep_global_batch
        )
        self.n_seq = self.t.batch_size * self.grad_accum  # this rank's sequences per step (fixed)
        self.stop_requested = False  # the stop every rank agreed on
        self.stop_local = False  # this process was asked to stop
        self.time_up = False  # max_time_s passed (agreed between ranks under torchrun)
        self.stop_reason = ""
        self.pending: list[PendingStep] = []
        self.last_scale: float | None = None
        self.monitor: HealthMonitor | None = None
        self.improved = False  # the last eval set a new best (best.pt is due)
        self.loggers: Any = None  # train.loggers (cockpit.train.loggers), rank 0 only
        self.clock = TrainClock()  # training time: evals, checkpoints and samples left out
        self.start_step = 0  # the step this process's training began at
        self.device_byte_table: Any = None  # per-token bytes for bits per byte on shards (bpb.py)

    @property
    def takes_checkpoints(self) -> bool:
        """This rank takes part in writing checkpoints (under torchrun every rank gives its state)."""
        return self.write_checkpoints or self.dist.world_size > 1

    def request_stop(self, why: str = "stop requested") -> None:
        """Finish the current step, checkpoint, and end with reason `stopped` (signal-safe)."""
        self.stop_local = True
        self.stop_reason = why
        if self.dist.world_size == 1:
            self.stop_requested = True  # under torchrun the ranks agree on it at the next read-back

    # ----------------------------------------------------------------- setup

    def setup(self) -> None:
        """Device, dtype, seeds, data, model, optimizer, health; restore a checkpoint on resume."""
        t = self.t
        setup_steps.check_trainable(self.preset)
        self.device, self.dtype = setup_steps.init_device(self.requested_device, t.dtype, self.dist)
        setup_steps.seed_everything(t.seed)
        self.data, self.train_sampler = setup_steps.load_training_data(
            self.preset, self.device, self.dist.rank, self.dist.world_size
        )
        self.tokenizer = self.data.tokenizer
        self.raw_model, self.model = setup_steps.build_models(
            self.preset, self.device, self.dist, self.warn
        )
        seed_rank(
            t.seed, self.dist
        )  # dropout differs between ranks; rank 0 keeps the seed's stream
        self.params = sum(p.numel() for p in self.raw_model.parameters())
        self.runner = optim.build_runner(
            self.model,
            self.raw_model,
            t,
            self.device,
            self.dtype,
            ddp=self.dist.world_size > 1 and not self.fsdp,
            fsdp=self.fsdp,
            faults=self.faults,
        )
        runner = self.runner  # the trainer's optimizer, scaler and autocast are its runner's
        self.optimizer, self.scaler, self.autocast = (
            runner.optimizer,
            runner.scaler,
            runner.autocast,
        )
        self.gpu_name, gpu_memory, self.peak_flops = setup_steps.gpu_facts(self.device, self.dtype)
        self.flops_per_token = float(flops_per_token(self.preset.model))
        self.monitor = HealthMonitor(
            self.preset, gpu_memory_bytes=gpu_memory, device=str(self.device)
        )
        # the global batch: every rank's sequences of a step
        self.tokens_per_step = self.n_seq * self.preset.model.block_size * self.dist.world_size
        self.tokens_per_byte = setup_steps.tokens_per_byte(self.data)
        if self.preset.data.tokenizer_model:  # token shards: bytes from the SentencePiece model
            table = bpb.load_byte_table(
                self.preset.data.tokenizer_model, self.preset.model.vocab_size
            )
            self.device_byte_table = table.to(self.device)
            self.tokens_per_byte = bpb.tokens_per_byte(table, self.data.val)
        resumed_from = setup_steps.resume(self) if self.resume else None
        priming.prime(self)  # train.priming_steps, undone: a fresh run only
        if self.scaler.is_enabled():
            self.last_scale = float(self.scaler.get_scale())  # so a skip at step 1 is seen too
        setup_steps.announce_start(self, resumed_from)
        if self.master and resumed_from is None:
            setup_steps.cpu_dtype_tip(self)
        if self.master and t.loggers:
            from cockpit.train.loggers import open_loggers

            self.loggers = open_loggers(self.preset, self.run_dir, self.warn)
        if t.on_anomaly == "rollback" and self.step == 0 and self.takes_checkpoints:
            snapshot.write(self)  # something to roll back to before the first eval

    # ----------------------------------------------------------------- the loop

    def train(self) -> tuple[str, str]:
        """Train until max_steps, max_time_s, a stop request or a halt; returns (end reason, message)."""
        t = self.t
        self.train_start = self.interval_start = time.perf_counter()
        self.clock.start()
        self.start_step = self.step
        while True:
            ending = self._end_condition()
            if ending is not None:
                if self._read_back_and_respond():
                    continue  # rolled back: not at the end after all
                break
            self._train_step()
            if self.step % t.log_interval == 0 or self.step >= t.max_steps or self.stop_requested:
                if self._read_back_and_respond():
                    continue
            if t.eval_interval and self.step % t.eval_interval == 0 and self.step < t.max_steps:
                # steps queued before the eval are read back now: their interval ends here, so
                # the next read-back divides its own time by its own steps (tokens/s, MFU)
                if self.pending and self._read_back_and_respond():
                    continue
                with self.clock.paused():  # not training time: max_time_s does not count it
                    evaluate.run_eval(self)
                    snapshot.write(self)
                self.interval_start = time.perf_counter()  # eval time is not step time
        reason, message = ending
        if reason in ("finished", "max-time") and self.last_eval_step != self.step:
            evaluate.run_eval(self)
        if self.last_ckpt_step != self.step:
            snapshot.write(self)
        return reason, message

    def _train_step(self) -> None:
        """One optimizer step at the schedule's lr; its metrics wait on the device for the read-back."""
        t0 = time.perf_counter()
        lr = lr_at_time(
            self.step, self.t, self.clock.elapsed(), self.step - self.start_step, self.lr_scale
        )
        optim.apply_schedule(self.optimizer, self.step, lr, self.t)
        x, y = self.train_sampler.sample(self.n_seq)
        loss, norm = self._optimizer_step(x, y, self.faults.loss_factor(self.step + 1))
        self.step += 1
        self.tokens_seen += self.tokens_per_step
        scale = self.runner.scale()
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

    def _optimizer_step(
        self, x: torch.Tensor, y: torch.Tensor, loss_factor: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on (x, y); on out-of-memory, a smaller micro-batch from then on."""
        loss, norm, split = run_with_oom_retry(
            self.runner,
            x,
            y,
            Split(self.micro_batch, self.grad_accum),
            loss_factor,
            oom_retry=self.t.oom_retry,
            step=self.step + 1,
            warn=self.emit_warning,
        )
        self.micro_batch, self.grad_accum = split.micro_batch, split.grad_accum
        return loss, norm

    def _read_back_and_respond(self) -> bool:
        """Read the pending steps back and apply train.on_anomaly; True if the run rolled back."""
        anomalies = readback.read_back(self)
        if self.t.on_anomaly != "warn" and self.dist.world_size > 1:
            anomalies = from_master(anomalies, self.dist)  # every rank responds as rank 0 does
        if anomalies and self.t.on_anomaly != "warn":
            respond.respond(self, anomalies[0])
            return True
        return False

    def _end_condition(self) -> tuple[str, str] | None:
        """(reason, message) when the run should end before the next step, else None."""
        t = self.t
        if self.step >= t.max_steps:
            return "finished", f"reached max_steps={t.max_steps}"
        if self.stop_requested:
            return "stopped", self.stop_reason or "stop requested"
        if self.time_up or (self.dist.world_size == 1 and self.past_max_time()):
            return "max-time", f"reached max_time_s={t.max_time_s:g} at step {self.step}"
        return None

    def past_max_time(self) -> bool:
        """True once train.max_time_s (if set) has passed since training started."""
        return bool(self.t.max_time_s) and self.clock.elapsed() >= self.t.max_time_s

    # ----------------------------------------------------------------- warnings and the end

    def warn(
        self,
        rule: str,
        severity: str,
        message: str,
        tip: str,
        evidence: dict[str, Any] | None = None,
    ) -> None:
        """A `warning` event of the engine's own, at the current step."""
        self.events.emit(
            "warning",
            self.step,
            rule=rule,
            severity=severity,
            message=message,
            tip=tip,
            evidence=evidence or {},
        )

    def emit_warning(self, warning: Any) -> None:
        """A health warning (cockpit.health's HealthWarning) as a `warning` event at its step."""
        fields = warning.to_event_fields()
        fields.pop("step", None)
        self.events.emit("warning", int(warning.step), **fields)

    def finish(self, reason: str, message: str) -> None:
        """Log any steps still on the device (best effort), then the `end` event and run.json's final status."""
        if self.pending and reason in ("crashed", "error"):
            with contextlib.suppress(Exception):
                readback.read_back(self)
        if self.loggers is not None:
            self.loggers.close()
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
            destroy_group()
