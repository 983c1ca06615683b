"""The machine's one scheduler: an flock on a file beside the queue database, holding its pid.

The kernel lets the lock go with the process, however it ends (kill -9 included), so a
scheduler started after a killed one finds the lock free; `holder_pid` tells the commands
whether one runs, and which.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from cockpit.campaign.store import QueueError


class SchedulerBusy(QueueError):
    """Another scheduler holds this queue's lock."""


class SchedulerLock:
    """The machine's one scheduler: an flock on a file beside the queue, holding our pid."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = holder_pid(path)
            os.close(self._fd)
            who = f" (pid {holder})" if holder else ""
            raise SchedulerBusy(
                f"another scheduler{who} is running this queue; `gpt-cockpit queue stop` stops it"
            ) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        """Let the lock go (a killed process's lock goes with it)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def holder_pid(path: Path) -> int | None:
    """The pid of the scheduler holding the lock at `path`, or None when nobody holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None  # we could take it: nobody holds it
        except OSError:
            pass
        text = os.read(fd, 32).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    finally:
        os.close(fd)
