"""A per-user index of every run launched here, so runs are found from any directory.

Runs live where they were created (./runs by default, or --runs-dir / $GPT_COCKPIT_RUNS);
this index only remembers where: one absolute run-directory path a line, in
$GPT_COCKPIT_STATE/runs.index, else the platform's user state folder. Recording is
best-effort (an unwritable index never stops a launch). An entry whose folder was moved
or deleted is dropped from the file when it is read, and the reader is told so in one
note: never an error.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from cockpit.common.format import counted
from cockpit.rundir.layout import EVENTS_JSONL, PRESET_JSON, RUN_JSON

INDEX_NAME = "runs.index"
RUN_FILES = (RUN_JSON, PRESET_JSON, EVENTS_JSONL)  # any one of them: a run, if maybe a damaged one


def state_dir() -> Path:
    """$GPT_COCKPIT_STATE, else the platform's user state folder for gpt-cockpit."""
    env = os.environ.get("GPT_COCKPIT_STATE")
    if env:
        return Path(env)
    from platformdirs import user_state_dir

    return Path(user_state_dir("gpt-cockpit"))


def index_path() -> Path:
    return state_dir() / INDEX_NAME


def _absolute(run_dir: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(os.fspath(run_dir)))


def record(run_dir: str | os.PathLike[str]) -> bool:
    """Remember `run_dir` (once); False when the index cannot be written (nothing else happens)."""
    path = _absolute(run_dir)
    try:
        if path in _read(index_path()):
            return True
        index_path().parent.mkdir(parents=True, exist_ok=True)
        with open(index_path(), "a", encoding="utf-8") as f:  # one short append: atomic enough
            f.write(f"{path}\n")
    except OSError:
        return False
    return True


def _read(index: Path) -> list[Path]:
    """The index's entries in order, each once; none when there is no index."""
    try:
        text = index.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return []
    seen: dict[Path, None] = {}
    for line in text.splitlines():
        if line.strip() and "\0" not in line:
            seen.setdefault(Path(line.strip()), None)
    return list(seen)


def known_runs(note: Callable[[str], None] | None = None) -> list[Path]:
    """Every indexed run folder that still holds a run; gone ones are dropped with one note."""
    index = index_path()
    try:
        entries = _read(index)
    except OSError as exc:
        if note:
            note(f"cannot read the run index {index}: {exc.strerror or exc}")
        return []
    alive = [p for p in entries if _holds_a_run(p)]
    gone = [p for p in entries if p not in alive]
    if gone:
        _rewrite(index, alive)
        if note:
            shown = ", ".join(str(p) for p in gone[:3]) + (" ..." if len(gone) > 3 else "")
            note(
                f"dropped {counted(len(gone), 'run')} moved or deleted since launch from the index: {shown}"
            )
    return alive


def _holds_a_run(path: Path) -> bool:
    """The folder still holds a run, even a damaged one (listed as such, not dropped)."""
    return holds_a_run(path)


def holds_a_run(path: Path) -> bool:
    """One of a run's files is in the folder; a folder we may not look into (another user's
    private run) counts too: it is listed as unreadable, never dropped or passed over."""
    for name in RUN_FILES:  # os.stat, not Path.is_file: whether that raises varies by Python
        try:
            if stat.S_ISREG(os.stat(path / name).st_mode):
                return True
        except PermissionError:
            return True
        except (OSError, ValueError):
            continue
    return False


def _rewrite(index: Path, entries: list[Path]) -> None:
    """Replace the index with `entries` (atomically); a failure leaves it as it was."""
    from cockpit.common.fsutil import atomic_write_text

    try:
        atomic_write_text(index, "".join(f"{p}\n" for p in entries))
    except OSError:
        pass
