"""The trainer's lock on its run directory: one training process per run, for its whole life.

The training child takes an exclusive flock on `<run>/train.lock` before it reads or
writes anything and holds it until it exits (the kernel drops it when the process
dies, however it dies). It writes its pid into the file, so a reader can say who
holds the run. A second trainer, or a resume of a live run, finds the lock held and
is refused with one line. While it holds the lock its every update of run.json
rewrites the whole record from its own state (rundir.info.own_run_info).

Readers only probe: they open the file read-only (never creating it) and try a
shared lock without waiting. The trainer retries its own lock for a moment, so a
reader's probe at the instant it starts never refuses a legitimate trainer.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from cockpit.rundir.info import own_run_info
from cockpit.rundir.layout import TRAIN_LOCK, RunError

ACQUIRE_WAIT_S = 1.0  # how long a trainer retries a lock that a reader may be probing


def busy_message(run_dir: str | os.PathLike[str], pid: int) -> str:
    """The one line that refuses a second trainer (or a resume) of a run that `pid` trains."""
    who = f"pid {pid}" if pid else "another process"
    return (
        f"{Path(run_dir).name} is already being trained by {who}; "
        "stop it first (`gpt-cockpit stop`) or attach to it"
    )


class RunBusy(RunError):
    """Another process trains this run; `pid` is its pid (0 when the lock file does not say)."""

    def __init__(self, message: str, pid: int) -> None:
        super().__init__(message)
        self.pid = pid


def _pid_in(fd: int) -> int:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").split()
        return int(text[0]) if text else 0
    except (OSError, ValueError):
        return 0


class TrainLock:
    """The exclusive lock a training process holds on its run (released by `release` or by exiting)."""

    def __init__(self, run_dir: str | os.PathLike[str], *, wait_s: float = ACQUIRE_WAIT_S) -> None:
        self.path = Path(run_dir) / TRAIN_LOCK
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    pid = _pid_in(fd)
                    os.close(fd)
                    raise RunBusy(busy_message(run_dir, pid), pid) from None
                time.sleep(0.02)
        self.fd: int | None = fd
        self.run_dir = Path(run_dir)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        own_run_info(self.run_dir)  # the holder's writes rewrite the whole record from its state

    def release(self) -> None:
        if self.fd is not None:
            own_run_info(self.run_dir, owned=False)
            os.close(self.fd)  # closing drops the flock
            self.fd = None


def lock_holder(run_dir: str | os.PathLike[str]) -> int | None:
    """The pid of the process that trains the run now (0 if it does not say), or None when none does.

    Read-only: a run without a lock file has no trainer holding it, and nothing is created.
    """
    try:
        fd = os.open(Path(run_dir) / TRAIN_LOCK, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _pid_in(fd)
        except OSError:
            return None
        return None  # nobody held it (closing drops our probe)
    finally:
        os.close(fd)
