"""train.loggers: the run's metrics also written to TensorBoard and/or Weights & Biases.

Rank 0 only, fed from the values the read-back already has on the host (the step
records of one log interval, the eval's losses): no logger adds a host sync. A
logger that fails (a missing package, a full disk, a W&B error) is reported once as
a `warning` event with rule `logger` and dropped; the run goes on without it.

TensorBoard: torch.utils.tensorboard's SummaryWriter (needs the tensorboard package)
writing to <run>/tensorboard. W&B: offline unless WANDB_MODE says otherwise (sync
later with `wandb sync`), files under <run>/wandb.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cockpit.common.diagnostics import first_line
from cockpit.common.numbers import is_number
from cockpit.plan.presets import Preset, logger_names

TENSORBOARD_DIR = "tensorboard"
INSTALL = {
    "tensorboard": "pip install tensorboard (or pip install 'gpt-cockpit[loggers]')",
    "wandb": "pip install wandb (or pip install 'gpt-cockpit[loggers]')",
}
# step record field -> the scalar's tag
STEP_SCALARS = {
    "loss": "train/loss",
    "lr": "train/lr",
    "grad_norm": "train/grad_norm",
    "tokens_per_s": "train/tokens_per_s",
    "mfu": "train/mfu",
}
EVAL_SCALARS = {"val_loss": "val/loss", "train_loss": "val/train_loss", "val_bpb": "val/bpb"}


class TensorBoardLogger:
    name = "tensorboard"

    def __init__(self, run_dir: Path, preset: Preset) -> None:
        from torch.utils.tensorboard import SummaryWriter  # ImportError without tensorboard

        self.writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR))

    def log(self, step: int, scalars: dict[str, float]) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    name = "wandb"

    def __init__(self, run_dir: Path, preset: Preset) -> None:
        import wandb

        os.environ.setdefault("WANDB_MODE", "offline")  # never the network unless the user says so
        self.wandb = wandb
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "gpt-cockpit"),
            name=run_dir.name,
            id=run_dir.name.replace(":", "-"),
            resume="allow",
            dir=str(run_dir),
            config=preset.to_dict(),
        )

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log(scalars, step=step)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.run.finish()


FACTORIES: dict[str, Callable[[Path, Preset], Any]] = {
    "tensorboard": TensorBoardLogger,
    "wandb": WandbLogger,
}


class MetricLoggers:
    """The preset's loggers; each call is guarded, and a logger that raises is dropped with one warning."""

    def __init__(self, warn: Callable[..., None]) -> None:
        self.warn = warn
        self.active: list[Any] = []

    def open(self, names: list[str], run_dir: Path, preset: Preset) -> MetricLoggers:
        for name in names:
            try:
                self.active.append(FACTORIES[name](run_dir, preset))
            except ImportError as exc:
                self._fail(
                    name, f"the {name} package is missing ({exc.name or exc}): {INSTALL[name]}"
                )
            except Exception as exc:  # noqa: BLE001 - a logger never fails the run
                self._fail(name, f"could not start: {first_line(exc)}")
        return self

    def _fail(self, name: str, why: str) -> None:
        self.warn(
            "logger",
            "warning",
            f"train.loggers: {name} {why}; training goes on without it",
            "",
        )

    def _each(self, call: Callable[[Any], object]) -> None:
        for logger in list(self.active):
            try:
                call(logger)
            except Exception as exc:  # noqa: BLE001 - a logger never fails the run
                self.active.remove(logger)
                self._fail(logger.name, f"failed: {first_line(exc)}")

    def log_steps(self, records: list[dict[str, Any]]) -> None:
        """The step records of one read-back (host values already)."""
        if not self.active:
            return
        batch = [(r["step"], _scalars(r, STEP_SCALARS)) for r in records]

        def write(logger: Any) -> None:
            for step, scalars in batch:
                logger.log(step, scalars)

        self._each(write)

    def log_eval(self, step: int, fields: dict[str, Any]) -> None:
        scalars = _scalars(fields, EVAL_SCALARS)
        self._each(lambda logger: (logger.log(step, scalars), logger.flush()))

    def close(self) -> None:
        self._each(lambda logger: logger.close())
        self.active = []


def _scalars(record: dict[str, Any], tags: dict[str, str]) -> dict[str, float]:
    out = {}
    for key, tag in tags.items():
        value = record.get(key)
        if is_number(value):
            out[tag] = float(value)
    return out


def open_loggers(preset: Preset, run_dir: Path, warn: Callable[..., None]) -> MetricLoggers | None:
    """The preset's loggers (None when it asks for none)."""
    names = logger_names(preset.train.loggers)
    return MetricLoggers(warn).open(names, run_dir, preset) if names else None
