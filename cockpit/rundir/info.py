"""run.json as a typed record, the one function that changes it, and the effective preset.

Every writer (the launcher, the training child, `resume`; readers never write)
goes through `update_run_info`: it takes an exclusive flock on run.json.lock, reads run.json, applies the changes and replaces the file
atomically (temp file, fsync, rename), so two writers never lose each other's
fields and a reader never sees a torn file. Readers use `read_run_info`.

preset.json is written once, by `create_run_dir`, as launched. A later change
(`gpt-cockpit resume --max-steps N`) is recorded in run.json's `overrides`, and
`load_run_preset` returns preset.json with those overrides applied.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import platform
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cockpit import __version__
from cockpit.common.fsutil import atomic_writer
from cockpit.plan.measure import absolute, model_file_record
from cockpit.plan.presets import Preset, PresetError, apply_overrides, preset_from_dict
from cockpit.rundir._coerce import BY_ANNOTATION
from cockpit.rundir.layout import (
    CHECKPOINTS,
    EVENTS_JSONL,
    PRESET_JSON,
    RUN_JSON,
    RUN_LOCK,
    RunError,
    fresh_run_path,
    unreadable,
)

RUN_SCHEMA_VERSION = 3  # 2: world_size, nnodes (torchrun runs); 3: model_file (your own model)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Run files are readable as the umask allows (0644 usually), not 0600 as a bare temp file is:
# another user listing the runs folder must see the run.
SHARED_FILE_MODE = 0o666 & ~_umask()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` atomically (temp file, fsync, rename) with SHARED_FILE_MODE permissions."""
    with atomic_writer(path, "w") as handle:
        os.fchmod(handle.fileno(), SHARED_FILE_MODE)
        handle.write(text)


@dataclass
class RunInfo:
    """run.json: one attribute per documented field (docs/run-directory.md).

    A field that is None is left out of the file. Keys this version does not know
    are kept in `extra` and written back, so a newer or older writer's fields survive.
    """

    schema: int = RUN_SCHEMA_VERSION
    run_id: str | None = None
    preset_name: str | None = None
    created: float = 0.0
    host: str | None = None
    status: str = "unknown"
    pid: int | None = None
    pid_start_time: float | None = None
    command: list[str] | None = None
    device_requested: str | None = None
    detached: bool | None = None
    world_size: int | None = None
    nnodes: int | None = None
    device: str | None = None
    gpu_name: str | None = None
    dtype: str | None = None
    versions: dict[str, Any] | None = None
    params: int | None = None
    max_steps: int | None = None
    overrides: dict[str, Any] | None = None
    model_file: dict[str, Any] | None = None  # your own model's {"path", "sha256"} at launch
    step: int = 0
    best_val_loss: float | None = None
    started: float | None = None
    ended: float | None = None
    end_reason: str | None = None
    end_message: str | None = None
    updated: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RunInfo:
        """run.json's object; a field of the wrong type reads as its default, unknown keys go to `extra`."""
        values: dict[str, Any] = {}
        for name, read, default in _READERS:
            if name in raw:
                values[name] = read(raw[name], default)
        values["extra"] = {k: v for k, v in raw.items() if k not in _FIELD_NAMES}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The object run.json holds: the known fields that are set, then the unknown ones as read."""
        out = {name: getattr(self, name) for name in _FIELD_NAMES}
        out = {k: v for k, v in out.items() if v is not None}
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


_FIELDS = [f for f in dataclasses.fields(RunInfo) if f.name != "extra"]
_FIELD_NAMES = tuple(f.name for f in _FIELDS)
_READERS = tuple(
    (
        f.name,
        BY_ANNOTATION[str(f.type)],
        f.default if f.default is not dataclasses.MISSING else None,
    )
    for f in _FIELDS
)
RUN_INFO_FIELDS = frozenset(_FIELD_NAMES)


def read_run_info(run_dir: str | os.PathLike[str]) -> RunInfo:
    """run.json of `run_dir`; RunError if it is missing, unreadable or not a JSON object."""
    path = Path(run_dir) / RUN_JSON
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{run_dir} is not a run directory (no {RUN_JSON})") from None
    except PermissionError:
        raise unreadable(run_dir, path) from None
    except (OSError, ValueError, RecursionError) as exc:
        raise RunError(f"cannot read {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise RunError(f"{path} is not a JSON object")
    return RunInfo.from_dict(raw)


def _check_names(changes: Mapping[str, Any]) -> None:
    unknown = sorted(set(changes) - RUN_INFO_FIELDS)
    if unknown:
        raise TypeError(
            f"run.json has no field {', '.join(map(repr, unknown))} (docs/run-directory.md lists them)"
        )


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive flock on the run's lock file (writers of run.json only; readers never wait)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / RUN_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# The record the trainer of a run keeps, for runs this process holds the train lock of
# (rundir.lock.TrainLock): run dir (resolved) -> its known fields that are set.
_OWNED: dict[Path, dict[str, Any]] = {}


def own_run_info(run_dir: str | os.PathLike[str], owned: bool = True) -> None:
    """Make this process the owner of the run's record (its trainer), or stop being it.

    The owner's every update rewrites the whole record from its own state: what it
    last wrote, over whatever the file holds now. So a run.json overwritten or cut
    down while the trainer runs is whole again at its next write.
    """
    key = Path(run_dir).resolve()
    if not owned:
        _OWNED.pop(key, None)
        return
    try:
        current = read_run_info(run_dir)
    except RunError:
        current = RunInfo(run_id=Path(run_dir).name)
    _OWNED[key] = _set_fields(current)


def _set_fields(info: RunInfo) -> dict[str, Any]:
    owned = {
        name: getattr(info, name) for name in _FIELD_NAMES if name not in ("schema", "updated")
    }
    return {k: v for k, v in owned.items() if v is not None}


def update_run_info(
    run_dir: str | os.PathLike[str],
    change: Callable[[RunInfo], Mapping[str, Any]] | None = None,
    /,
    **changes: Any,
) -> RunInfo:
    """Change run.json under its lock and return what it holds now: the one way to write it.

    `changes` are field values (None removes a field). `change`, when given, is called
    with the current contents under the lock and returns more changes, so a value that
    depends on the current one (keep a live status, extend `overrides`) is decided
    without a race; no changes at all leave the file as it is. A name that is not a
    run.json field is a TypeError. A missing or unreadable run.json starts over from
    the run id. `schema` and `updated` are stamped.
    """
    _check_names(changes)
    path = Path(run_dir)
    with _locked(path):
        try:
            info = read_run_info(path)
        except RunError:
            info = RunInfo(run_id=path.name)
        owned = _OWNED.get(path.resolve())
        if owned is not None:  # the trainer: its own record over whatever the file holds now
            info = dataclasses.replace(info, **owned)
        if change is not None:
            computed = dict(change(info))
            _check_names(computed)
            changes = {**computed, **changes}
        if not changes:
            return info  # nothing to change: the file stays as it is
        info = dataclasses.replace(info, **changes)
        info.schema = RUN_SCHEMA_VERSION
        info.updated = time.time()
        text = json.dumps(info.to_dict(), indent=2, default=str) + "\n"
        atomic_write_text(path / RUN_JSON, text)
        if owned is not None:
            _OWNED[path.resolve()] = _set_fields(info)
    return info


def create_run_dir(
    preset: Preset,
    run_dir: str | os.PathLike[str] | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
) -> Path:
    """Make a fresh run directory: checkpoints/, preset.json (once, as launched), a 'starting' run.json.

    An explicit `run_dir` must be missing or an empty folder (RunError naming what is there
    otherwise), so no file of the user's is replaced. Claiming the directory is atomic: run.json is linked into place, which fails if it
    exists, so of two creations racing for one directory exactly one succeeds.
    """
    info = RunInfo(
        status="starting",
        preset_name=preset.name,
        created=time.time(),
        host=platform.node(),
        versions={"cockpit": __version__, "python": platform.python_version()},
        model_file=model_file_record(preset),  # a resume refuses the file once it has changed
    )
    if run_dir is None:
        path = fresh_run_path(preset.name, root)
        while not _claim(path, info):
            path = fresh_run_path(preset.name, root)  # taken between the look and the claim
    else:
        path = Path(run_dir)
        _check_fresh(path)
        if not _claim(path, info):  # another creation took it between the look and the claim
            raise RunError(_holds_a_run(path))
    (path / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    # your own model's file as an absolute path: the child and a later resume find it from anywhere
    launched = absolute(preset).to_dict()
    atomic_write_text(path / PRESET_JSON, json.dumps(launched, indent=2) + "\n")
    return path


def _holds_a_run(path: Path) -> str:
    return f"{path} already holds a run; use `gpt-cockpit resume {path}` or pick another --run-dir"


def _check_fresh(path: Path) -> None:
    """RunError unless `path` is missing or an empty folder: a new run writes preset.json,
    train.lock, console.log and checkpoints there, so a user's files would be replaced."""
    try:
        names = sorted(os.listdir(path))
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise RunError(
            f"{path} is a file, not a folder; a new run goes only into an empty or missing folder"
        ) from None
    if not names:
        return
    claiming = any(n.startswith(f".{RUN_JSON}.") and n.endswith(".new") for n in names)
    if RUN_JSON in names or EVENTS_JSONL in names or claiming:  # a run, or one being created
        raise RunError(_holds_a_run(path))
    shown = [f"{n}/" if (path / n).is_dir() else n for n in names[:5]]
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    raise RunError(
        f"{path} is not empty (it holds {', '.join(shown)}{more}); a new run goes only into "
        "an empty or missing folder: pick another --run-dir, or leave it out for a fresh one"
    )


def _claim(path: Path, info: RunInfo) -> bool:
    """Put a first run.json into `path` unless one is there (False then): write a temp file, link it."""
    path.mkdir(parents=True, exist_ok=True)
    info = dataclasses.replace(info, run_id=path.name, updated=time.time())
    tmp = path / f".{RUN_JSON}.{os.getpid()}.{time.monotonic_ns()}.new"
    atomic_write_text(tmp, json.dumps(info.to_dict(), indent=2, default=str) + "\n")
    try:
        os.link(tmp, path / RUN_JSON)  # atomic, and never replaces an existing run.json
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def rebuild_run_info(run_dir: str | os.PathLike[str], why: str) -> RunInfo:
    """A new run.json for a run whose own is missing or unreadable, from preset.json and its files.

    The damaged file is kept beside it as run.json.damaged. The status is `stopped`,
    so the run can be resumed; the step is the last one its event log records (the
    child reads the checkpoint itself). RunError if preset.json cannot be read either.
    """
    path = Path(run_dir)
    preset = _read_preset_json(path)
    from cockpit.rundir.events import read_last_records  # events imports nothing of this module

    steps = [r["step"] for r in read_last_records(path / EVENTS_JSONL)]
    damaged = path / RUN_JSON
    if damaged.exists():
        os.replace(damaged, path / f"{RUN_JSON}.damaged")
    try:
        created = (path / PRESET_JSON).stat().st_mtime
    except OSError:
        created = time.time()
    return update_run_info(
        path,
        run_id=path.name,
        status="stopped",
        preset_name=preset.name,
        created=created,
        max_steps=preset.train.max_steps,
        step=max(steps, default=0),
        end_reason="stopped",
        end_message=f"run.json rebuilt ({why})",
    )


def _read_preset_json(run_dir: Path) -> Preset:
    path = run_dir / PRESET_JSON
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise RunError(f"cannot read {path}: {exc}") from None
    try:
        return preset_from_dict(raw)
    except PresetError as exc:
        raise RunError(f"{path}: {exc}") from None


def load_run_preset(run_dir: str | os.PathLike[str]) -> Preset:
    """The preset the run trains: preset.json with run.json's `overrides` applied over it."""
    preset = _read_preset_json(Path(run_dir))
    try:
        overrides = read_run_info(run_dir).overrides
    except RunError:
        overrides = None  # no run.json (yet): preset.json as it is
    if not overrides:
        return preset
    try:
        return apply_overrides(preset, overrides)
    except PresetError as exc:
        raise RunError(f"{Path(run_dir) / RUN_JSON} overrides: {exc}") from None
