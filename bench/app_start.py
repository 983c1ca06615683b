"""CPU seconds of the app's start to the presets screen, two cursor moves and a what-if GPU.

Each round starts a fresh app (headless, no GPU), waits for the GPU query, presses down, down,
g and G, and closes it; the first round (imports, caches) is not counted. Every app test pays
the start, and a person pays it each time they open the cockpit.

    python bench/app_start.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cpu_s() -> float:
    """CPU seconds (user + system) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_round() -> None:
    from cockpit.tui.app import make_app

    app = make_app(gpu_query=lambda: [])
    async with app.run_test(size=(120, 40), headless=True) as pilot:
        while app.local_gpus is None:
            await pilot.pause(0.05)
        await pilot.press("down", "down", "g", "G")
        await pilot.pause()


def main() -> int:
    parser = argparse.ArgumentParser(description="CPU of an app start and a few keys.")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for var in ("GPT_COCKPIT_CONFIG", "GPT_COCKPIT_RUNS", "GPT_COCKPIT_STATE"):
            os.environ[var] = str(Path(tmp) / var.lower())
        asyncio.run(one_round())  # imports and caches: not counted
        started = cpu_s()
        for _ in range(args.rounds):
            asyncio.run(one_round())
        per_round = (cpu_s() - started) / args.rounds
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{per_round:.3f} s CPU per start + down, down, g, G ({args.rounds} rounds, load {load})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
