"""The child's CPU thread policy, decided before torch loads (this module imports no torch).

A CPU run on torch's defaults uses a thread per core whose idle workers spin;
a step waits for its slowest thread, so any neighbour on one core (the app, a
`runs` loop, a busy loop) stalls every step: 5 ms steps became 488 ms on a busy
machine. Where there are cores to spare (SPARE_FROM or more) the child therefore
uses one core fewer than it may run on and lets idle workers sleep
(OMP_WAIT_POLICY=PASSIVE). On fewer cores a core left idle costs more than a
neighbour does (nanoGPT's CPU recipe on 2 cores: 50 ms a step on one thread,
31 ms on torch's two), so torch's thread count stands there, but its idle workers
spin only briefly (GOMP_SPINCOUNT=SHORT_SPIN) before they sleep: on nanoGPT's recipe
that keeps the two-thread speed of a quiet machine (32.0 ms against 31.5 ms spinning;
sleeping at once, PASSIVE, costs 53-60 ms), and on a crowded one it cuts the
1.5-3.9 s steps of spinning workers to 0.12-0.22 s
(bench/results/cpu-neighbour-2026-11-22-kinds.md).
$GPT_COCKPIT_CPU_THREADS overrides the count (1 on a small shared machine);
"torch" keeps torch's own defaults (for comparison: bench/cpu_neighbour.py).
"""

from __future__ import annotations

import os

THREADS_ENV = "GPT_COCKPIT_CPU_THREADS"
SPARE_FROM = 4  # usable cores from which one is left to the neighbours
SHORT_SPIN = "10000"  # GOMP_SPINCOUNT below SPARE_FROM cores: spin a little, then sleep


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def chosen_threads() -> int | None:
    """Intra-op threads for the child: $GPT_COCKPIT_CPU_THREADS, else one core fewer than it may
    use when it may use SPARE_FROM or more; None leaves torch's default (the variable says
    "torch", the user set OMP_NUM_THREADS, or there is no core to spare)."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw == "torch" or (not raw and os.environ.get("OMP_NUM_THREADS")):
        return None
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    cores = usable_cores()
    return cores - 1 if cores >= SPARE_FROM else None


def wait_politely() -> None:
    """Idle OpenMP workers sleep instead of spinning when the child picks the thread count;
    at torch's count on a small machine they spin only briefly (GOMP_SPINCOUNT) unless
    $GPT_COCKPIT_CPU_THREADS says "torch" or the user set OMP_NUM_THREADS or a wait policy;
    must run before torch is imported."""
    if chosen_threads() is not None:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        return
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw == "torch" or os.environ.get("OMP_NUM_THREADS") or os.environ.get("OMP_WAIT_POLICY"):
        return
    os.environ.setdefault("GOMP_SPINCOUNT", SHORT_SPIN)
