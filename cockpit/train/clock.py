"""The training clock: wall time spent training, with evals, checkpoints and samples left out.

`train.max_time_s` and the wall-clock warmdown count this time, as the parameter-golf
reference does (its cap excludes validation): a run with frequent evals still trains
for its full budget.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


def now() -> float:
    """The clock's time source (a module function, so a test can drive it)."""
    return time.perf_counter()


class TrainClock:
    """Seconds since start(), less the seconds spent inside paused()."""

    def __init__(self) -> None:
        self.started = now()
        self.paused_s = 0.0

    def start(self) -> None:
        self.started = now()
        self.paused_s = 0.0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time inside this block does not count as training time."""
        t0 = now()
        try:
            yield
        finally:
            self.paused_s += now() - t0

    def elapsed(self) -> float:
        return now() - self.started - self.paused_s
