"""The child's CPU thread policy, decided before torch loads (this module imports no torch).

A CPU run on torch's defaults uses a thread per core whose idle workers spin;
a step waits for its slowest thread, so any neighbour on one core (the app, a
`runs` loop, a busy loop) stalled every step: 5 ms steps became 488 ms. The
child therefore uses one core fewer than it may run on and lets idle workers
sleep (OMP_WAIT_POLICY=PASSIVE). $GPT_COCKPIT_CPU_THREADS overrides the count;
"torch" keeps torch's own defaults (for comparison: bench/cpu_neighbour.py).
"""

from __future__ import annotations

import os

THREADS_ENV = "GPT_COCKPIT_CPU_THREADS"


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def chosen_threads() -> int | None:
    """Intra-op threads for the child: $GPT_COCKPIT_CPU_THREADS, else one core fewer than it may
    use; None leaves torch's default (the variable says "torch", or the user set OMP_NUM_THREADS)."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw == "torch" or (not raw and os.environ.get("OMP_NUM_THREADS")):
        return None
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return max(1, usable_cores() - 1)


def wait_politely() -> None:
    """Idle OpenMP workers sleep instead of spinning; must run before torch is imported."""
    if os.environ.get(THREADS_ENV, "").strip() != "torch":
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
