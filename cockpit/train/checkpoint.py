"""Checkpoints: atomic writes of last.pt / best.pt and safe loading with a fallback.

A checkpoint is one `torch.save` of a plain dict (tensors, lists, dicts, strings,
numbers) so it loads with `torch.load(weights_only=True)`: nothing is unpickled
but tensors and containers. Writes go through a temp file, fsync and rename, so a
kill at any moment leaves either the old file or the new one, never a torn one
under the real name. Before last.pt is replaced, the old one is kept as
last.prev.pt; a truncated or corrupt last.pt is reported and the previous one used.

Each file ends with a checksum of everything before it (FOOTER: a newline,
"cockpit-sha256 ", 64 hex digits, a newline), computed while the bytes are
written and verified before the file is loaded, so a flipped bit is caught rather
than trained on. The footer follows the zip archive torch.save writes, which zip
readers (and so `torch.load` itself) skip. A file without one (written before
checksums) loads unverified.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import torch

from cockpit.common.diagnostics import first_line
from cockpit.common.fsutil import atomic_write_with, fsync_dir
from cockpit.rundir.info import SHARED_FILE_MODE

FORMAT_VERSION = 1
LAST = "last.pt"
LAST_PREV = "last.prev.pt"
BEST = "best.pt"
REQUIRED_KEYS = ("format", "step", "model", "optimizer", "preset")
FOOTER_TAG = b"\ncockpit-sha256 "
FOOTER_SIZE = len(FOOTER_TAG) + 64 + 1


class CheckpointError(RuntimeError):
    """No usable checkpoint; the message says which file and why."""


@dataclass
class LoadedCheckpoint:
    """A checkpoint that loaded, where it came from, and the problems met on the way."""

    state: dict[str, Any]
    path: Path
    problems: list[str] = field(default_factory=list)


class _HashingWriter:
    """A binary file that hashes what passes through it (torch.save writes sequentially).

    An OSError from the file is kept in `error`: torch re-raises it as a RuntimeError
    that no longer says what happened ("[enforce fail at inline_container.cc] ...").
    """

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        self.digest.update(data)
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def _write_with_footer(state: dict[str, Any], handle: Any) -> None:
    os.fchmod(handle.fileno(), SHARED_FILE_MODE)  # as the umask allows, like the run's other files
    hashing = _HashingWriter(handle)
    try:
        torch.save(state, cast(IO[bytes], hashing))  # a file as torch.save uses one
    except Exception:
        if hashing.error is not None:
            raise hashing.error from None  # the file's own error, not torch's rewording of it
        raise
    handle.write(FOOTER_TAG + hashing.digest.hexdigest().encode("ascii") + b"\n")


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full_message(path: str | os.PathLike[str]) -> str:
    """'no space left on <folder> (N bytes free)', for a write that ran out of room."""
    folder = Path(path)
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return f"no space left on {folder}"
    return f"no space left on {folder} ({free} bytes free)"


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> int:
    """Write `state` atomically to `path`, its checksum at the end; returns its size in bytes.

    A full disk is a CheckpointError saying so; the file under `path` is left as it was.
    """
    target = Path(path)
    try:
        atomic_write_with(target, lambda handle: _write_with_footer(state, handle))
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise CheckpointError(
                f"cannot write {target.name}: {disk_full_message(target.parent)}; "
                + _kept_after_a_full_disk(target)
            ) from None
        raise
    return target.stat().st_size


def _kept_after_a_full_disk(target: Path) -> str:
    """What a failed write leaves to resume from: the previous file, or nothing at all."""
    kept = [n for n in (target.name, LAST, LAST_PREV) if (target.parent / n).is_file()]
    if kept:
        return f"the previous checkpoint is kept ({kept[0]})"
    return "no checkpoint has fit on this disk yet, so there is none to resume from"


def verify_checksum(path: str | os.PathLike[str]) -> bool | None:
    """True if the file's bytes match its checksum footer, False if not, None if it has no footer."""
    p = Path(path)
    size = p.stat().st_size
    if size < FOOTER_SIZE:
        return None
    digest = hashlib.sha256()
    with open(p, "rb") as handle:
        handle.seek(size - FOOTER_SIZE)
        footer = handle.read(FOOTER_SIZE)
        if not footer.startswith(FOOTER_TAG) or not footer.endswith(b"\n"):
            return None
        handle.seek(0)
        left = size - FOOTER_SIZE
        while left:
            chunk = handle.read(min(left, 1 << 22))
            if not chunk:
                return False
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest().encode("ascii") == footer[len(FOOTER_TAG) : -1]


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
    if verify_checksum(p) is False:
        raise CheckpointError(
            f"{p}: checksum mismatch: the file changed after it was written (bit rot or an edit)"
        )
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except (
        Exception
    ) as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for bad files
        raise CheckpointError(_why_unloadable(p, exc)) from None
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


# Modules whose globals run code when unpickled: a file naming one asks to run code.
CODE_MODULES = frozenset(
    "os posix nt subprocess builtins __builtin__ sys shutil socket importlib runpy pty "
    "commands code ctypes pickle marshal webbrowser platform".split()
)


def _why_unloadable(path: Path, exc: Exception) -> str:
    """Why torch.load failed, read from the file itself (torch's wording varies between runs)."""
    found = pickle_globals(path)
    foreign = [g for g in found if not g.startswith(("torch.", "collections.", "_codecs."))]
    if foreign:
        if foreign[0].split(".")[0] in CODE_MODULES:
            return f"{path}: refused: the file asks to run code (GLOBAL {foreign[0]})"
        return (
            f"{path}: holds objects that safe loading (weights_only) refuses to build "
            f"(GLOBAL {foreign[0]})"
        )
    return f"{path}: truncated or corrupt, cannot be read ({_first_sentence(exc)})"


def _first_sentence(exc: Exception, limit: int = 200) -> str:
    """torch's reason up to its first full stop ("PytorchStreamReader failed reading zip
    archive: failed finding central directory"), never cut mid-word; its advice is dropped."""
    text = first_line(exc, limit=100_000)
    sentence = text.split(". ", 1)[0].rstrip(".")
    if len(sentence) <= limit:
        return sentence
    return sentence[:limit].rsplit(" ", 1)[0] + " ..."


def pickle_globals(path: Path) -> list[str]:
    """The `module.name` globals the file's pickle names, in order (empty if it is no readable pickle).

    Only reads opcodes (pickletools), never unpickles: torch's zip holds the pickle as
    `<archive>/data.pkl`; a legacy file is a pickle itself.
    """
    import pickletools
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("data.pkl")]
            data = archive.read(names[0]) if names else b""
    except (OSError, zipfile.BadZipFile, KeyError, RuntimeError, ValueError):
        data = path.read_bytes()[: 1 << 20]
    found: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _pos in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # noqa: BLE001 - a damaged stream: what was read so far is the answer
        pass
    return found


def load_latest(ckpt_dir: str | os.PathLike[str]) -> LoadedCheckpoint:
    """last.pt, else last.prev.pt; CheckpointError naming both files when neither loads."""
    return next(iter(loadable(ckpt_dir)))


def loadable(ckpt_dir: str | os.PathLike[str]) -> Iterator[LoadedCheckpoint]:
    """last.pt, then last.prev.pt, each that loads (with the problems met before it), for a
    caller that may find one unusable (another model's shape) and take the next; after the
    last, CheckpointError naming every file and why.

    A caller's problem with a file it was given goes into `problems` (it is the same list for
    every file), so the error at the end names that file too.
    """
    folder = Path(ckpt_dir)
    problems: list[str] = []
    for name in (LAST, LAST_PREV):
        try:
            state = load_checkpoint(folder / name)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        yield LoadedCheckpoint(state, folder / name, problems)
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
        # This run's own GPU only: a list of every visible GPU's state cannot be put back
        # when the resume sees fewer of them (8 GPUs rented, then one card).
        state["cuda"] = [torch.cuda.get_rng_state(_cuda_index(device))]
    return state


def _cuda_index(device: torch.device) -> int:
    """The CUDA index `device` names ("cuda" alone is the current device)."""
    return device.index if device.index is not None else torch.cuda.current_device()


def own_cuda_state(states: list[Any], device: torch.device) -> Any | None:
    """This device's generator state from a checkpoint's "cuda" list, None if it holds none.

    A list of one is this run's own device (what rng_state writes). A longer list is an
    older checkpoint's every visible GPU, read at this device's index; an index past its
    end (fewer GPUs then than now) takes the first, which is a seeded stream like any other.
    """
    if not states:
        return None
    index = _cuda_index(device)
    return states[index] if len(states) > 1 and index < len(states) else states[0]


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
    if device is not None and device.type == "cuda":
        own = own_cuda_state(state.get("cuda") or [], device)
        if own is not None:
            torch.cuda.set_rng_state(own, _cuda_index(device))


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
