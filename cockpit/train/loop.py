"""The training loop: `Trainer.train()` runs optimizer steps and calls the run's named parts.

`Trainer` owns one run directory; `setup` builds the parts, each with its own state
and explicit inputs (none of them imports the trainer):

    setup.py     device, dtype, seeds, data, model, the start event (functions, in order)
    optim.py     the optimizer, GradScaler and autocast (a StepRunner, step.py)
    state.py     TrainState: step, tokens, lr scale, rollbacks, micro-batch split, best val loss
    readback.py  MetricsReader: metrics read back once per log interval -> step events, health
    respond.py   Responder: train.on_anomaly, halt or roll back to the last checkpoint
    evaluate.py  Evaluator: evals and samples
    snapshot.py  Checkpointer: what a checkpoint holds; last.pt and best.pt; resume and rollback
    priming.py   Primer: train.priming_steps, undone

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
from cockpit.health import HealthMonitor, HealthWarning
from cockpit.plan.estimate import flops_per_token
from cockpit.plan.presets import Preset
from cockpit.plan.schedule import lr_at_time
from cockpit.rundir import EventWriter, NullEventWriter, StartEvent, WarningEvent
from cockpit.train import bpb, optim
from cockpit.train import setup as setup_steps
from cockpit.train.clock import TrainClock
from cockpit.train.dist import accum_per_rank, destroy_group, from_master, seed_rank
from cockpit.train.evaluate import Evaluator
from cockpit.train.faults import Faults, faults_from_env
from cockpit.train.priming import Primer
from cockpit.train.readback import MetricsReader, PendingStep
from cockpit.train.respond import Responder
from cockpit.train.runtime import Dist, dist_from_env, finish_run, warning_event
from cockpit.train.snapshot import Checkpointer
from cockpit.train.state import TrainState
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
        self.fsdp = self.dist.world_size > 1 and self.t.parallel == "fsdp"  # train/sharded.py
        # train.keep_global_batch (golf): accumulation divided by the world size
        accum = accum_per_rank(self.t.grad_accum, self.dist.world_size, self.t.keep_global_batch)
        self.state = TrainState(batch_size=self.t.batch_size, grad_accum=accum)
        self.stop_requested = False  # the stop every rank agreed on
        self.stop_local = False  # this process was asked to stop
        self.time_up = False  # max_time_s passed (agreed between ranks under torchrun)
        self.stop_reason = ""
        self.loggers: Any = None  # train.loggers (cockpit.train.loggers), rank 0 only
        self.clock = TrainClock()  # training time: evals, checkpoints and samples left out
        self.start_step = 0  # the step this process's training began at

    @property
    def step(self) -> int:
        return self.state.step

    @property
    def n_seq(self) -> int:
        """This rank's sequences per step."""
        return self.state.n_seq

    def request_stop(self, why: str = "stop requested") -> None:
        """Finish the current step, checkpoint, and end with reason `stopped` (signal-safe)."""
        self.stop_local = True
        self.stop_reason = why
        if self.dist.world_size == 1:
            self.stop_requested = True  # under torchrun the ranks agree on it at the next read-back

    # ----------------------------------------------------------------- setup

    def setup(self) -> None:
        """Device, dtype, seeds, data, model, optimizer, health, the parts; restore a checkpoint on resume."""
        preset, t, dist = self.preset, self.t, self.dist
        setup_steps.check_trainable(preset)
        if self.resume:
            setup_steps.check_model_file(self.run_dir)
        self.device, self.dtype = setup_steps.init_device(self.requested_device, t.dtype, dist)
        setup_steps.seed_everything(t.seed)
        self.data, self.train_sampler = setup_steps.load_training_data(
            preset, self.device, dist.rank, dist.world_size
        )
        self.raw_model, self.model = setup_steps.build_models(preset, self.device, dist, self.warn)
        seed_rank(t.seed, dist)  # dropout differs between ranks; rank 0 keeps the seed's stream
        self.runner = optim.build_runner(
            self.model,
            self.raw_model,
            t,
            self.device,
            self.dtype,
            ddp=dist.world_size > 1 and not self.fsdp,
            fsdp=self.fsdp,
            faults=self.faults,
        )
        gpu_name, gpu_memory, peak_flops = setup_steps.gpu_facts(self.device, self.dtype)
        monitor = HealthMonitor(preset, gpu_memory_bytes=gpu_memory, device=str(self.device))
        # the global batch: every rank's sequences of a step
        self.tokens_per_step = self.n_seq * preset.model.block_size * dist.world_size
        self._build_parts(monitor, peak_flops)
        resumed_from = self.checkpointer.resume(self.state) if self.resume else None
        if self.step == 0:  # train.priming_steps, undone: a fresh run only
            primer = Primer(
                self.runner, self.train_sampler, self.device, t.oom_retry, self._health_warning
            )
            split = Split(self.state.micro_batch, self.state.grad_accum)
            split = primer.prime(t.priming_steps, self.n_seq, split)
            self.state.micro_batch, self.state.grad_accum = split.micro_batch, split.grad_accum
        self.metrics.restart(self.runner.scaler)  # so a skip at step 1 is seen too
        setup_steps.announce_start(
            self.events,
            self.run_dir,
            StartEvent(
                step=self.step,
                preset=preset.name,
                device=str(self.device),
                gpu=gpu_name,
                gpu_uuid=setup_steps.gpu_uuid(self.device),
                dtype=self.dtype,
                params=sum(p.numel() for p in self.raw_model.parameters()),
                tokens_per_step=self.tokens_per_step,
                data=str(getattr(self.data, "description", "")),
                resumed_from=resumed_from,
                max_steps=t.max_steps,
                micro_batch=self.state.micro_batch,
                grad_accum=self.state.grad_accum,
                world_size=dist.world_size,
                compile=t.compile,
                pid=os.getpid(),
            ),
            write_run_info=self.write_run_info,
        )
        tip = setup_steps.cpu_dtype_tip(self.step, self.device, self.dtype)
        if self.master and resumed_from is None and tip is not None:
            self.events.emit(tip)
        if self.master and t.loggers:
            from cockpit.train.loggers import open_loggers

            self.loggers = open_loggers(preset, self.run_dir, self.warn)
            self.metrics.loggers = self.evaluator.loggers = self.loggers
        if t.on_anomaly == "rollback" and self.step == 0 and self.takes_checkpoints:
            self.checkpointer.save(self.state)  # something to roll back to before the first eval

    def _build_parts(self, monitor: HealthMonitor, peak_flops: float | None) -> None:
        """The checkpointer, evaluator, metrics reader and responder, over the built model and data."""
        preset, runner = self.preset, self.runner
        self.checkpointer = Checkpointer(
            self.run_dir,
            preset,
            self.dist,
            self.device,
            self.raw_model,
            runner.optimizer,
            runner.scaler,
            self.train_sampler,
            self.data.tokenizer,
            monitor,
            self.events,
            write_files=self.write_checkpoints,
            fsdp=self.fsdp,
        )
        self.evaluator = Evaluator(
            preset,
            self.model,
            self.raw_model,
            self.data,
            self.data.tokenizer,
            self.device,
            self.dist,
            runner.autocast,
            self.events,
            monitor=monitor,
            fsdp=self.fsdp,
            tokens_per_byte=setup_steps.tokens_per_byte(self.data),
            run_dir=self.run_dir if self.write_run_info else None,
        )
        if preset.data.tokenizer_model:  # token shards: bytes from the SentencePiece model
            table = bpb.load_byte_table(preset.data.tokenizer_model, preset.model.vocab_size)
            self.evaluator.byte_table = table.to(self.device)
            self.evaluator.tokens_per_byte = bpb.tokens_per_byte(table, self.data.val)
        self.metrics = MetricsReader(
            self.device,
            self.dist,
            self.tokens_per_step,
            self.events,
            monitor=monitor,
            flops_per_token=float(flops_per_token(preset.model)),
            peak_flops=peak_flops,
        )
        self.responder = Responder(self.t, self.checkpointer, self.metrics, self.events)

    @property
    def takes_checkpoints(self) -> bool:
        """This rank takes part in writing checkpoints (under torchrun every rank gives its state)."""
        return self.write_checkpoints or self.dist.world_size > 1

    # ----------------------------------------------------------------- the loop

    def train(self) -> tuple[str, str]:
        """Train until max_steps, max_time_s, a stop request or a halt; returns (end reason, message)."""
        t, state = self.t, self.state
        self.metrics.restart()
        self.clock.start()
        self.start_step = state.step
        while True:
            ending = self._end_condition()
            if ending is not None:
                if self._read_back_and_respond():
                    continue  # rolled back: not at the end after all
                break
            self._train_step()
            if state.step % t.log_interval == 0 or state.step >= t.max_steps or self.stop_requested:
                if self._read_back_and_respond():
                    continue
            if t.eval_interval and state.step % t.eval_interval == 0 and state.step < t.max_steps:
                # steps queued before the eval are read back now: their interval ends here, so
                # the next read-back divides its own time by its own steps (tokens/s, MFU)
                if self.metrics.pending and self._read_back_and_respond():
                    continue
                with self.clock.paused():  # not training time: max_time_s does not count it
                    improved = self.evaluator.run(state)
                    self.checkpointer.save(state, best=improved)
                self.metrics.restart()  # eval time is not step time
            if self.faults.holds_after(state.step):
                self._hold()
        reason, message = ending
        improved = False
        if reason in ("finished", "max-time") and self.evaluator.last_step != state.step:
            improved = self.evaluator.run(state)
        if self.checkpointer.last_step != state.step:
            self.checkpointer.save(state, best=improved)
        return reason, message

    def _hold(self) -> None:
        """The hold_at_step fault: the held step's records on disk, then wait for a stop request."""
        if self.metrics.pending and self._read_back_and_respond():
            return  # rolled back: the step is trained again
        with self.clock.paused():  # not training time, as an eval
            self.faults.hold(lambda: self.stop_local, lambda done: from_master(done, self.dist))
        self.metrics.restart()  # the wait is not step time

    def _train_step(self) -> None:
        """One optimizer step at the schedule's lr; its metrics wait on the device for the read-back."""
        state, t0 = self.state, time.perf_counter()
        elapsed = self.clock.elapsed()
        lr = lr_at_time(state.step, self.t, elapsed, state.step - self.start_step, state.lr_scale)
        optim.apply_schedule(self.runner.optimizer, state.step, lr, self.t)
        x, y = self.train_sampler.sample(state.n_seq)
        loss, norm = self._optimizer_step(x, y, self.faults.loss_factor(state.step + 1))
        state.step += 1
        state.tokens_seen += self.tokens_per_step
        scale = self.runner.scale()
        if self.faults.active:
            self.faults.after_step(state.step)
            if self.faults.stop_at_step is not None and state.step == self.faults.stop_at_step:
                self.request_stop(f"stop_at_step={state.step} fault")
        host_ms = (time.perf_counter() - t0) * 1000.0
        self.metrics.add(
            PendingStep(
                state.step,
                lr,
                loss,
                norm,
                scale,
                host_ms,
                time.time(),
                state.micro_batch,
                state.grad_accum,
            )
        )

    def _optimizer_step(
        self, x: torch.Tensor, y: torch.Tensor, loss_factor: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on (x, y); on out-of-memory, a smaller micro-batch from then on."""
        state = self.state
        loss, norm, split = run_with_oom_retry(
            self.runner,
            x,
            y,
            Split(state.micro_batch, state.grad_accum),
            loss_factor,
            oom_retry=self.t.oom_retry,
            step=state.step + 1,
            warn=self._health_warning,
        )
        state.micro_batch, state.grad_accum = split.micro_batch, split.grad_accum
        return loss, norm

    def _read_back_and_respond(self) -> bool:
        """Read the pending steps back and apply train.on_anomaly; True if the run rolled back."""
        found = self.metrics.read_back(self.state, self.stop_local, self.past_max_time())
        self.stop_requested = self.stop_requested or found.stop
        self.time_up = self.time_up or found.time_up
        anomalies = found.anomalies
        if self.responder.active and self.dist.world_size > 1:
            anomalies = from_master(anomalies, self.dist)  # every rank responds as rank 0 does
        if anomalies and self.responder.active:
            self.responder.respond(anomalies[0], self.state)
            return True
        return False

    def _end_condition(self) -> tuple[str, str] | None:
        """(reason, message) when the run should end before the next step, else None."""
        t, step = self.t, self.state.step
        if step >= t.max_steps:
            return "finished", f"reached max_steps={t.max_steps}"
        if self.stop_requested:
            return "stopped", self.stop_reason or "stop requested"
        if self.time_up or (self.dist.world_size == 1 and self.past_max_time()):
            return "max-time", f"reached max_time_s={t.max_time_s:g} at step {step}"
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
            WarningEvent(
                step=self.step,
                rule=rule,
                severity=severity,
                message=message,
                tip=tip,
                evidence=evidence or {},
            )
        )

    def _health_warning(self, warning: HealthWarning) -> None:
        self.events.emit(warning_event(warning))

    def finish(self, reason: str, message: str) -> None:
        """Log any steps still on the device (best effort), then the `end` event and run.json's final status."""
        metrics: MetricsReader | None = getattr(self, "metrics", None)
        if metrics is not None and metrics.pending and reason in ("crashed", "error"):
            with contextlib.suppress(Exception):
                metrics.read_back(self.state)
        if self.loggers is not None:
            self.loggers.close()
        finish_run(
            self.run_dir,
            self.events,
            reason,
            message,
            self.step,
            self.state.best_val_loss,
            write_run_info=self.write_run_info,
        )
        if self.dist.world_size > 1:
            destroy_group()
