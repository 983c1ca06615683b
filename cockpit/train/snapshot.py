"""What a checkpoint of the trainer holds: its state as a dict, restoring it, writing last/best.

The file format (atomic writes, safe loading, the fallback to last.prev.pt) is
cockpit/train/checkpoint.py's; this module decides what goes into the dict and how
a trainer takes it back (on resume, and on a rollback).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cockpit.runs.compare import flatten
from cockpit.train import checkpoint as ckpt
from cockpit.train.runtime import EngineError, one_line, versions

if TYPE_CHECKING:
    from cockpit.train.loop import Trainer


def rank_state(tr: Trainer) -> dict[str, Any]:
    """What is this rank's own: its data position and its RNG streams."""
    return {
        "sampler": ckpt.plain(tr.train_sampler.state_dict()),
        "rng": ckpt.rng_state(tr.device),
    }


def state_dict(
    tr: Trainer, ranks: list[dict[str, Any]] | None = None, shards: str | None = None
) -> dict[str, Any]:
    """Everything a resume or rollback needs, as weights_only-safe values.

    `ranks` (under torchrun) holds every rank's `rank_state`, gathered to rank 0;
    `shards` (FSDP) names the folder of the model and optimizer shards, which then
    are not in the file.
    """
    return {
        "world_size": tr.dist.world_size,
        "ranks": ranks,
        "shards": shards,
        "format": ckpt.FORMAT_VERSION,
        "step": tr.step,
        "model": None if shards else tr.raw_model.state_dict(),
        "optimizer": None if shards else tr.optimizer.state_dict(),
        "scaler": tr.scaler.state_dict() if tr.scaler.is_enabled() else {},
        "schedule": {"step": tr.step, "lr_scale": tr.lr_scale, "rollbacks": tr.rollbacks},
        "micro_batch": tr.micro_batch,
        "grad_accum": tr.grad_accum,
        "rng": ckpt.rng_state(tr.device),
        "sampler": ckpt.plain(tr.train_sampler.state_dict()),
        "health": ckpt.plain(tr.monitor.state_dict()) if tr.monitor is not None else None,
        "tokenizer": ckpt.plain(tr.tokenizer.state_dict()),
        "best_val_loss": tr.best_val_loss,
        "tokens": tr.tokens_seen,
        "preset": tr.preset.to_dict(),
        "versions": versions(),
        "time": time.time(),
    }


# Preset fields a resume must keep: each changes what a step trains on or how it is split.
EXACT_FIELDS = ("train.batch_size", "train.grad_accum", "model.block_size", "train.parallel")


def preset_changes(saved: Any, current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, checkpoint's value, preset.json's value) for each field that differs, but max_steps."""
    if not isinstance(saved, dict):
        return []
    old, new = flatten(saved), flatten(current)  # "train.lr" -> value
    keys = sorted((set(old) | set(new)) - {"train.max_steps", "name", "description"})
    return [(k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)]


def check_same_preset(tr: Trainer, state: dict[str, Any]) -> None:
    """Refuse a resume whose preset changed a field exact resume needs; say what else changed."""
    changes = preset_changes(state.get("preset"), tr.preset.to_dict())
    for key, saved, now in changes:
        if key in EXACT_FIELDS:
            raise EngineError(
                f"preset.json's {key} is {now} but the checkpoint was trained with {saved}; "
                "a resume must keep it (put it back, or start a new run with this preset)",
                kind="checkpoint",
            )
    if changes:
        listed = ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in changes[:5])
        tr.warn(
            "preset_changed",
            "warning",
            f"preset.json differs from the checkpoint's preset ({listed}); "
            "the resumed run is not an exact continuation",
            "",
        )


def restore(tr: Trainer, state: dict[str, Any], *, counters: bool) -> None:
    """Load model, optimizer, scaler, step, RNG, health; with `counters` also sampler and run counters.

    A resume (`counters`) first checks that the preset did not change under the checkpoint.
    """
    if counters:
        check_same_preset(tr, state)
        check_same_world(tr, state)
    mine = _own_rank_state(tr, state)
    try:
        if state.get("shards"):  # FSDP: each rank loads its shards (train/sharded.py)
            from cockpit.train.sharded import load_shards

            load_shards(tr, state["shards"])
        else:
            tr.raw_model.load_state_dict(state["model"])
            tr.optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise EngineError(
            f"the checkpoint does not fit this preset's model ({one_line(str(exc), 200)}); "
            "was preset.json changed after the run started?",
            kind="checkpoint",
        ) from None
    if tr.scaler.is_enabled() and state.get("scaler"):
        tr.scaler.load_state_dict(state["scaler"])
    tr.step = int(state["step"])
    ckpt.set_rng_state(mine["rng"], tr.device)
    if tr.monitor is not None and state.get("health") is not None:
        tr.monitor.load_state_dict(state["health"])
    tr.best_val_loss = state.get("best_val_loss")
    if counters:
        _restore_counters(tr, state, mine)


def check_same_world(tr: Trainer, state: dict[str, Any]) -> None:
    """Refuse, in one line, a resume on another number of ranks than the checkpoint's."""
    saved = int(state.get("world_size") or 1)
    if saved != tr.dist.world_size:
        raise EngineError(
            f"the checkpoint was written by {saved} rank(s) and this resume runs {tr.dist.world_size}; "
            f"an exact resume needs the same world size: resume with --nproc {saved}",
            kind="checkpoint",
        )


def _own_rank_state(tr: Trainer, state: dict[str, Any]) -> dict[str, Any]:
    """This rank's data position and RNG from the checkpoint (rank 0's fields in a 1-process one)."""
    ranks = state.get("ranks")
    if ranks and tr.dist.rank < len(ranks):
        return ranks[tr.dist.rank]
    return {"sampler": state["sampler"], "rng": state["rng"]}


def _restore_counters(tr: Trainer, state: dict[str, Any], mine: dict[str, Any]) -> None:
    """The data position, lr scale, rollbacks, tokens and micro-batch split of a resumed run."""
    tr.train_sampler.load_state_dict(mine["sampler"])  # each rank its own position
    sched = state.get("schedule", {})
    tr.lr_scale = float(sched.get("lr_scale", 1.0))
    tr.rollbacks = int(sched.get("rollbacks", 0))
    tr.tokens_seen = int(state.get("tokens", 0))
    tr.micro_batch = int(state.get("micro_batch", tr.micro_batch))
    tr.grad_accum = int(state.get("grad_accum", tr.grad_accum))
    if tr.micro_batch * tr.grad_accum < tr.n_seq:  # the preset changed
        tr.micro_batch, tr.grad_accum = tr.t.batch_size, tr.t.grad_accum


def write(tr: Trainer) -> None:
    """last.pt (previous kept as last.prev.pt) and, after an improving eval, best.pt.

    Under torchrun every rank calls it: each gives its own state, rank 0 writes the file.
    """
    tr.last_ckpt_step = tr.step
    ranks, shards = None, None
    if tr.dist.world_size > 1:
        from cockpit.train.dist import all_gather

        ranks = all_gather(rank_state(tr), tr.dist)
    if tr.fsdp:
        from cockpit.train.sharded import save_shards

        shards = save_shards(tr)
    if not tr.write_checkpoints:
        return
    state = state_dict(tr, ranks, shards)
    t0 = time.perf_counter()
    path, nbytes = ckpt.save_last(tr.ckpt_dir, state)
    _checkpoint_event(tr, path, "last", nbytes, time.perf_counter() - t0)
    if tr.improved:
        tr.improved = False
        t0 = time.perf_counter()
        best = tr.ckpt_dir / ckpt.BEST
        nbytes = ckpt.save_checkpoint(best, state)
        _checkpoint_event(tr, best, "best", nbytes, time.perf_counter() - t0)
    if shards:
        from cockpit.train.sharded import prune

        prune(tr.ckpt_dir)
    tr.events.sync()


def _checkpoint_event(tr: Trainer, path: Path, kind: str, nbytes: int, seconds: float) -> None:
    tr.events.emit(
        "checkpoint",
        tr.step,
        path=str(path.relative_to(tr.run_dir)),
        kind=kind,
        bytes=nbytes,
        seconds=round(seconds, 4),
    )
