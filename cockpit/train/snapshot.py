"""The checkpointer: what a checkpoint holds, writing last.pt and best.pt, and taking one back.

The file format (atomic writes, safe loading, the fallback to last.prev.pt) is
cockpit/train/checkpoint.py's; the `Checkpointer` decides what goes into the dict
(`state_dict`, the one place that lists it) and how the run takes it back: all of it
on a resume, and on a rollback all but the data position and the run's counters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cockpit import rundir
from cockpit.health import HealthMonitor
from cockpit.plan.presets import Preset
from cockpit.rundir import CheckpointEvent, EventWriter, WarningEvent
from cockpit.runs.compare import flatten
from cockpit.train import checkpoint as ckpt
from cockpit.train.runtime import Dist, EngineError, one_line, versions
from cockpit.train.state import TrainState

# Preset fields a resume must keep: each changes what a step trains on or how it is split.
EXACT_FIELDS = ("train.batch_size", "train.grad_accum", "model.block_size", "train.parallel")


@dataclass
class Checkpointer:
    """Saves and restores the run's state: model, optimizer, scaler, RNG, data position, health, counters.

    Under torchrun every rank calls `save` and `restore`: each gives and takes its own
    data position and RNG streams; rank 0 (`write_files`) writes the file.
    """

    run_dir: Path
    preset: Preset
    dist: Dist
    device: torch.device
    raw_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    sampler: Any  # the training BatchSampler (state_dict/load_state_dict)
    tokenizer: Any  # the data's tokenizer (state_dict)
    monitor: HealthMonitor | None
    events: EventWriter
    write_files: bool = True  # this rank writes checkpoint files
    fsdp: bool = False  # model and optimizer are sharded: they go to shard folders (sharded.py)
    last_step: int | None = None  # the step of the last checkpoint written or restored

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / rundir.CHECKPOINTS

    def rank_state(self) -> dict[str, Any]:
        """What is this rank's own: its data position and its RNG streams."""
        return {
            "sampler": ckpt.plain(self.sampler.state_dict()),
            "rng": ckpt.rng_state(self.device),
        }

    def state_dict(
        self,
        state: TrainState,
        ranks: list[dict[str, Any]] | None = None,
        shards: str | None = None,
    ) -> dict[str, Any]:
        """Everything a resume or rollback needs, as weights_only-safe values.

        `ranks` (under torchrun) holds every rank's `rank_state`, gathered to rank 0;
        `shards` (FSDP) names the folder of the model and optimizer shards, which then
        are not in the file.
        """
        counters = state.state_dict()
        return {
            "world_size": self.dist.world_size,
            "ranks": ranks,
            "shards": shards,
            "format": ckpt.FORMAT_VERSION,
            "step": counters["step"],
            "model": None if shards else self.raw_model.state_dict(),
            "optimizer": None if shards else self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "schedule": counters["schedule"],
            "micro_batch": counters["micro_batch"],
            "grad_accum": counters["grad_accum"],
            **self.rank_state(),
            "health": ckpt.plain(self.monitor.state_dict()) if self.monitor is not None else None,
            "tokenizer": ckpt.plain(self.tokenizer.state_dict()),
            "best_val_loss": counters["best_val_loss"],
            "tokens": counters["tokens"],
            "preset": self.preset.to_dict(),
            "versions": versions(),
            "time": time.time(),
        }

    def save(self, state: TrainState, *, best: bool = False) -> None:
        """last.pt (previous kept as last.prev.pt) and, after an improving eval (`best`), best.pt."""
        self.last_step = state.step
        ranks, shards = None, None
        if self.dist.world_size > 1:
            from cockpit.train.dist import all_gather

            ranks = all_gather(self.rank_state(), self.dist)
        if self.fsdp:
            from cockpit.train.sharded import save_shards

            shards = save_shards(
                self.ckpt_dir, state.step, self.dist, self.raw_model, self.optimizer
            )
        if not self.write_files:
            return
        saved = self.state_dict(state, ranks, shards)
        t0 = time.perf_counter()
        path, nbytes = ckpt.save_last(self.ckpt_dir, saved)
        self._written(state.step, path, "last", nbytes, time.perf_counter() - t0)
        if best:
            t0 = time.perf_counter()
            path = self.ckpt_dir / ckpt.BEST
            nbytes = ckpt.save_checkpoint(path, saved)
            self._written(state.step, path, "best", nbytes, time.perf_counter() - t0)
        if shards:
            from cockpit.train.sharded import prune

            prune(self.ckpt_dir)
        self.events.sync()

    def resume(self, state: TrainState) -> int:
        """Restore the latest usable checkpoint (saying why an unusable one was skipped); its step.

        A file that loads but does not fit this run (another model's shape) is skipped like a
        corrupt one: the previous checkpoint is tried. When none fits, the first refusal is the
        error (it says what changed).
        """
        if self.write_files:
            ckpt.remove_stale_temps(self.ckpt_dir)
        refused: EngineError | None = None
        try:
            for loaded in ckpt.loadable(self.ckpt_dir):
                try:
                    self._check_same_preset(state.step, loaded.state)
                    self._check_same_world(loaded.state)
                    mine = self._restore(state, loaded.state)
                except EngineError as exc:
                    if exc.kind != "checkpoint":
                        raise
                    refused = refused or exc
                    loaded.problems.append(f"{loaded.path}: {exc}")
                    continue
                for problem in loaded.problems:
                    self._warn(
                        state.step,
                        "checkpoint",
                        f"{problem}; resuming from {loaded.path.name} instead",
                    )
                state.load_state_dict(loaded.state)
                self.sampler.load_state_dict(mine["sampler"])  # each rank its own position
                self.last_step = state.step
                return state.step
        except ckpt.CheckpointError:
            if refused is not None:
                raise refused from None
            raise
        raise AssertionError("unreachable: loadable() ends in CheckpointError")  # pragma: no cover

    def roll_back(self, state: TrainState) -> Path:
        """Restore the latest checkpoint but keep the data position and counters; the file restored.

        Raises ckpt.CheckpointError when there is none to restore.
        """
        loaded = ckpt.load_latest(self.ckpt_dir)
        self._restore(state, loaded.state)
        state.rewind(loaded.state)
        return loaded.path

    def _restore(self, state: TrainState, saved: dict[str, Any]) -> dict[str, Any]:
        """Load model, optimizer, scaler, RNG and health; this rank's own part of `saved`."""
        mine = self._own_rank_state(saved)
        try:
            if saved.get("shards"):  # FSDP: each rank loads its shards (train/sharded.py)
                from cockpit.train.sharded import load_shards

                load_shards(self.ckpt_dir, saved["shards"], self.raw_model, self.optimizer)
            else:
                self.raw_model.load_state_dict(saved["model"])
                self.optimizer.load_state_dict(saved["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise EngineError(
                f"the checkpoint does not fit this preset's model ({one_line(str(exc), 200)}); "
                "was preset.json changed after the run started?",
                kind="checkpoint",
            ) from None
        if self.scaler.is_enabled() and saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        ckpt.set_rng_state(mine["rng"], self.device)
        if self.monitor is not None and saved.get("health") is not None:
            self.monitor.load_state_dict(saved["health"])
        return mine

    def _check_same_preset(self, step: int, saved: dict[str, Any]) -> None:
        """Refuse a resume whose preset changed a field exact resume needs; say what else changed."""
        changes = preset_changes(saved.get("preset"), self.preset.to_dict())
        for key, was, now in changes:
            if key in EXACT_FIELDS:
                raise EngineError(
                    f"preset.json's {key} is {now} but the checkpoint was trained with {was}; "
                    "a resume must keep it (put it back, or start a new run with this preset)",
                    kind="checkpoint",
                )
        if changes:
            listed = ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in changes[:5])
            self._warn(
                step,
                "preset_changed",
                f"preset.json differs from the checkpoint's preset ({listed}); "
                "the resumed run is not an exact continuation",
            )

    def _check_same_world(self, saved: dict[str, Any]) -> None:
        """Refuse, in one line, a resume on another number of ranks than the checkpoint's."""
        was = int(saved.get("world_size") or 1)
        if was != self.dist.world_size:
            raise EngineError(
                f"the checkpoint was written by {was} rank(s) and this resume runs "
                f"{self.dist.world_size}; an exact resume needs the same world size: "
                f"resume with --nproc {was}",
                kind="checkpoint",
            )

    def _own_rank_state(self, saved: dict[str, Any]) -> dict[str, Any]:
        """This rank's data position and RNG from the checkpoint (rank 0's fields in a 1-process one)."""
        ranks = saved.get("ranks")
        if ranks and self.dist.rank < len(ranks):
            return dict(ranks[self.dist.rank])
        return {"sampler": saved["sampler"], "rng": saved["rng"]}

    def _written(self, step: int, path: Path, kind: str, nbytes: int, seconds: float) -> None:
        self.events.emit(
            CheckpointEvent(
                step=step,
                path=str(path.relative_to(self.run_dir)),
                kind=kind,
                bytes=nbytes,
                seconds=round(seconds, 4),
            )
        )

    def _warn(self, step: int, rule: str, message: str) -> None:
        self.events.emit(WarningEvent(step=step, rule=rule, severity="warning", message=message))


def preset_changes(saved: Any, current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, checkpoint's value, preset.json's value) for each field that differs, but max_steps."""
    if not isinstance(saved, dict):
        return []
    old, new = flatten(saved), flatten(current)  # "train.lr" -> value
    keys = sorted((set(old) | set(new)) - {"train.max_steps", "name", "description"})
    return [(k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)]
