"""Checkpoints: atomic writes of last.pt / best.pt and safe loading with a fallback.

A checkpoint is one `torch.save` of a plain dict (tensors, lists, dicts, strings,
numbers) so it loads with `torch.load(weights_only=True)`: nothing is unpickled
but tensors and containers. Writes go through a temp file, fsync and rename, so a
kill at any moment leaves either the old file or the new one, never a torn one
under the real name. Before last.pt is replaced, the old one is kept as
last.prev.pt; a truncated or corrupt last.pt is reported and the previous one used.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cockpit.fsutil import atomic_write_with, fsync_dir

FORMAT_VERSION = 1
LAST = "last.pt"
LAST_PREV = "last.prev.pt"
BEST = "best.pt"
REQUIRED_KEYS = ("format", "step", "model", "optimizer", "preset")


class CheckpointError(RuntimeError):
    """No usable checkpoint; the message says which file and why."""


@dataclass
class LoadedCheckpoint:
    """A checkpoint that loaded, where it came from, and the problems met on the way."""

    state: dict[str, Any]
    path: Path
    problems: list[str] = field(default_factory=list)


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> int:
    """Write `state` atomically to `path`; returns its size in bytes."""
    target = Path(path)
    atomic_write_with(target, lambda handle: torch.save(state, handle))
    return target.stat().st_size


def save_last(ckpt_dir: str | os.PathLike[str], state: dict[str, Any]) -> tuple[Path, int]:
    """Keep the current last.pt as last.prev.pt, then write the new last.pt atomically."""
    folder = Path(ckpt_dir)
    folder.mkdir(parents=True, exist_ok=True)
    last, prev = folder / LAST, folder / LAST_PREV
    if last.exists():
        # A hard link renamed over last.prev.pt: last.pt is never missing, even for a moment.
        tmp = folder / f".{LAST_PREV}.link"
        try:
            if tmp.exists():
                tmp.unlink()
            os.link(last, tmp)
        except OSError:
            shutil.copyfile(last, tmp)
        os.replace(tmp, prev)
        fsync_dir(folder)
    return last, save_checkpoint(last, state)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and check one checkpoint file; CheckpointError says which file and why it cannot be used."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: the file is empty (a write that never finished)")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except (
        Exception
    ) as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for bad files
        text = str(exc).strip()
        refused = [line.strip() for line in text.splitlines() if "WeightsUnpickler error" in line]
        if refused:
            raise CheckpointError(
                f"{p}: holds objects that safe loading (weights_only) refuses to build ({refused[0][:200]})"
            ) from None
        why = text.splitlines()[0] if text else type(exc).__name__
        raise CheckpointError(f"{p}: truncated or corrupt, cannot be read ({why[:200]})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{p}: not a gpt-cockpit checkpoint (holds a {type(state).__name__})")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{p}: not a gpt-cockpit checkpoint (missing {', '.join(missing)})")
    if state["format"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{p}: checkpoint format {state['format']} is not the format this version reads ({FORMAT_VERSION})"
        )
    return state


def load_latest(ckpt_dir: str | os.PathLike[str]) -> LoadedCheckpoint:
    """last.pt, else last.prev.pt; CheckpointError naming both files when neither loads."""
    folder = Path(ckpt_dir)
    problems: list[str] = []
    for name in (LAST, LAST_PREV):
        try:
            return LoadedCheckpoint(load_checkpoint(folder / name), folder / name, problems)
        except CheckpointError as exc:
            problems.append(str(exc))
    raise CheckpointError("no usable checkpoint: " + "; ".join(problems))


def remove_stale_temps(ckpt_dir: str | os.PathLike[str]) -> list[str]:
    """Delete temp files a killed writer left behind (one writer per run, so none is live); returns their names."""
    folder = Path(ckpt_dir)
    stale = [*folder.glob(".*.tmp"), *folder.glob(f".{LAST_PREV}.link")]
    for path in stale:
        with contextlib.suppress(OSError):
            path.unlink()
    return [p.name for p in stale]


# --------------------------------------------------------------------------- RNG state


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states, as weights_only-safe values."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": _to_lists(random.getstate()),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": [],
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore what rng_state() captured."""
    random.setstate(_to_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if device is not None and device.type == "cuda" and state.get("cuda"):
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_lists(v) for v in value]
    return value


def _to_tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_to_tuples(v) for v in value)
    return value


def plain(value: Any) -> Any:
    """A value made weights_only-safe: NumPy arrays and scalars become tensors and numbers."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value
