"""The response to an anomaly found at a read-back: halt, or roll back to the last checkpoint.

train.on_anomaly=halt ends the run (HaltTraining, end reason `halted`). rollback
restores checkpoints/last.pt (model, optimizer, RNG, health) but keeps the data
position, so training goes on past the batches that caused the problem, with the
learning rate scaled by train.rollback_lr_factor; after train.max_rollbacks it halts.
"""

from __future__ import annotations

from dataclasses import dataclass

from cockpit.health import HealthWarning
from cockpit.plan.presets import TrainConfig
from cockpit.rundir import EventWriter, WarningEvent
from cockpit.train import checkpoint as ckpt
from cockpit.train.readback import MetricsReader
from cockpit.train.runtime import HaltTraining
from cockpit.train.snapshot import Checkpointer
from cockpit.train.state import TrainState

ROLLBACK_TIP = (
    "Rollbacks that repeat mean the run itself is unstable: lower train.lr or raise "
    "train.warmup_steps."
)


@dataclass
class Responder:
    """Applies train.on_anomaly to the anomalies a read-back finds."""

    train: TrainConfig  # on_anomaly, max_rollbacks, rollback_lr_factor
    checkpointer: Checkpointer  # what a rollback restores
    metrics: MetricsReader  # its interval and scale start again after a rollback
    events: EventWriter

    @property
    def active(self) -> bool:
        """False under train.on_anomaly=warn: the warnings are all the response."""
        return self.train.on_anomaly != "warn"

    def respond(self, warning: HealthWarning, state: TrainState) -> None:
        """Halt (HaltTraining) or roll back, for an anomaly found at the last read-back."""
        t, last = self.train, self.checkpointer.last_step
        where = (
            f"checkpoints/last.pt from step {last} is from before the problem"
            if last is not None
            else "no checkpoint was written before the problem"
        )
        if t.on_anomaly == "halt":
            raise HaltTraining(f"{warning.message}; halted (train.on_anomaly=halt); {where}")
        if state.rollbacks >= t.max_rollbacks:
            raise HaltTraining(
                f"{warning.message}; halted after {state.rollbacks} rollbacks "
                f"(train.max_rollbacks={t.max_rollbacks}); {where}"
            )
        self.roll_back(warning, state)

    def roll_back(self, warning: HealthWarning, state: TrainState) -> None:
        """Restore the latest checkpoint but keep the data position; scale the lr; say so."""
        t = self.train
        bad_step = state.step
        try:
            path = self.checkpointer.roll_back(state)
        except ckpt.CheckpointError as exc:
            raise HaltTraining(f"{warning.message}; cannot roll back ({exc})") from None
        self.metrics.restart(self.checkpointer.scaler)
        state.rollbacks += 1
        state.lr_scale *= t.rollback_lr_factor
        skipped = bad_step - state.step
        lr_note = (
            f"; lr x{t.rollback_lr_factor:g} (now x{state.lr_scale:g})"
            if t.rollback_lr_factor != 1.0
            else ""
        )
        self.events.emit(
            WarningEvent(
                step=state.step,
                rule="rollback",
                severity="warning",
                message=f"rolled back from step {bad_step} to step {state.step} ({path.name}) "
                f"after: {warning.message}; skipping the {skipped} steps of batches since"
                f"{lr_note}; rollback {state.rollbacks}/{t.max_rollbacks}",
                tip=ROLLBACK_TIP,
                evidence={
                    "from_step": bad_step,
                    "to_step": state.step,
                    "cause": warning.rule,
                    "skipped_steps": skipped,
                    "skipped_sequences": skipped * state.n_seq,
                    "lr_scale": state.lr_scale,
                    "rollbacks": state.rollbacks,
                },
            )
        )
