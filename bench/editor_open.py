"""Time from Enter on the presets screen to the first repaint that shows the preset editor.

The key is sent through the driver as a terminal keypress would be; the time to the first
paint whose screen is the editor (every field filled, the live panel computed) is one
opening. Esc goes back between openings. Goal: under 300 ms.

    python bench/editor_open.py [--times 10] [--size 120x40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


async def bench(times: int, size: tuple[int, int]) -> list[float]:
    from textual import events

    from cockpit.tui.app import make_app
    from cockpit.tui.screens.editor import EditorScreen
    from cockpit.tui.screens.presets import PresetsScreen

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GPT_COCKPIT_CONFIG"] = str(Path(tmp) / "config")
        app = make_app(gpu_query=lambda: [])
        opened: list[float] = []
        async with app.run_test(size=size, headless=True) as pilot:
            while not isinstance(app.screen, PresetsScreen) or app.local_gpus is None:
                await pilot.pause(0.05)
            await pilot.pause(0.3)
            painted: list[tuple[float, type]] = []
            app.post_display_hook = lambda: painted.append((time.perf_counter(), type(app.screen)))  # type: ignore[method-assign]
            for _ in range(times):
                painted.clear()
                sent = time.perf_counter()
                app._driver.send_message(events.Key("enter", "\r"))  # as a terminal keypress
                while not any(kind is EditorScreen for _, kind in painted):
                    if time.perf_counter() - sent > 20:
                        raise RuntimeError("the editor never showed")
                    await asyncio.sleep(0.001)
                shown = next(t for t, kind in painted if kind is EditorScreen)
                opened.append((shown - sent) * 1000.0)
                await pilot.pause(0.3)
                await pilot.press("escape")
                while not isinstance(app.screen, PresetsScreen):
                    await pilot.pause(0.05)
                await pilot.pause(0.2)
        return opened


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=10, help="openings to time (default 10)")
    parser.add_argument("--size", default="120x40", help="terminal size (default 120x40)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    load = os.getloadavg()
    opened = asyncio.run(bench(args.times, (width, height)))
    print(f"load average before  {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"openings             {len(opened)}")
    print(f"first ms             {opened[0]:.0f}")
    print(f"median ms            {statistics.median(opened):.0f}")
    print(f"max ms               {max(opened):.0f}")
    ok = statistics.median(opened) < 300
    print("goal (median opening < 300 ms):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
