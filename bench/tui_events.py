"""Feed the run screen a fast synthetic event stream; print ingest rate, redraw rate and key latency.

A writer thread appends step records to a run's events.jsonl at --rate events/s
(with an eval every 250 steps and a warning now and then) while the app, headless,
shows that run. Meanwhile a key that opens and closes a dialog (k, then n) is
sent through the driver as a terminal keypress would be; the time from sending
it until the first repaint that shows the new screen is the keypress latency; the app
thread's CPU time over the same span (key_cpu_*) is the part a busy machine stretches.
Goal: 1000 events/s ingested with p95 < 50 ms.

    python bench/tui_events.py [--rate 2000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cockpit import rundir  # noqa: E402
from cockpit.plan.presets import load_preset  # noqa: E402
from cockpit.rundir import encode_record, make_record  # noqa: E402


def writer(path: Path, rate: float, stop: threading.Event, counter: list[int]) -> None:
    """Append step records at `rate` per second in small flushed batches, like the trainer."""
    step = 0
    started = time.perf_counter()
    with open(path, "a", encoding="utf-8") as handle:
        while not stop.is_set():
            due = int((time.perf_counter() - started) * rate)
            lines = []
            while step < due:
                step += 1
                lines.append(
                    encode_record(
                        make_record(
                            "step",
                            step,
                            loss=2.0 + math.exp(-step / 3000) + 0.05 * math.sin(step),
                            lr=6e-4,
                            grad_norm=0.8 + 0.2 * math.cos(step / 7),
                            tokens_per_s=1.9e5,
                            step_ms=4.2,
                            tokens=step * 8192,
                            mfu=0.31,
                        )
                    )
                )
                if step % 250 == 0:
                    lines.append(
                        encode_record(
                            make_record(
                                "eval", step, val_loss=2.1 + math.exp(-step / 3000), train_loss=2.0
                            )
                        )
                    )
                if step % 5000 == 0:
                    lines.append(
                        encode_record(
                            make_record(
                                "warning",
                                step,
                                rule="loss_spike",
                                severity="warning",
                                message="synthetic spike",
                                tip="reduce train.lr",
                            )
                        )
                    )
            if lines:
                handle.write("\n".join(lines) + "\n")
                handle.flush()
                counter[0] = step
            time.sleep(0.005)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def bench(rate: float, seconds: float) -> dict[str, float]:
    from textual import events

    from cockpit.tui.app import make_app
    from cockpit.tui.screens.confirm import ConfirmScreen
    from cockpit.tui.screens.run import RunScreen

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GPT_COCKPIT_CONFIG"] = str(Path(tmp) / "config")
        preset = load_preset("tiny_char")
        run_dir = rundir.create_run_dir(preset, root=Path(tmp) / "runs")
        rundir.update_run_info(
            run_dir,
            status="running",
            pid=os.getpid(),
            pid_start_time=rundir.process_start_time(os.getpid()),
            max_steps=10**7,
        )
        events_path = run_dir / rundir.EVENTS_JSONL
        events_path.write_text(
            encode_record(make_record("start", 0, preset="bench", device="cuda", max_steps=10**7))
            + "\n"
        )
        stop, counter = threading.Event(), [0]
        app = make_app(attach=run_dir, gpu_query=lambda: [])
        latencies: list[float] = []
        cpu_ms: list[float] = []  # the app thread's CPU time in the same span: what load stretches
        async with app.run_test(size=(120, 40), headless=True) as pilot:
            while not (isinstance(app.screen, RunScreen) and app.screen.loaded):
                await pilot.pause(0.05)
            screen = app.screen
            thread = threading.Thread(
                target=writer, args=(events_path, rate, stop, counter), daemon=True
            )
            thread.start()
            t0 = time.perf_counter()
            ingested0, redraws0 = screen.ingested, screen.redraws
            painted: list[tuple[float, type]] = []
            app.post_display_hook = lambda: painted.append((time.perf_counter(), type(app.screen)))  # type: ignore[method-assign]
            while time.perf_counter() - t0 < seconds:
                for key, want in (("k", ConfirmScreen), ("n", RunScreen)):
                    painted.clear()
                    sent, sent_cpu = time.perf_counter(), time.thread_time()
                    app._driver.send_message(events.Key(key, key))  # as a terminal keypress arrives
                    while not any(kind is want for _, kind in painted):
                        if time.perf_counter() - sent > 5:
                            raise RuntimeError(f"key {key!r} never reached the screen")
                        await asyncio.sleep(0.001)
                    shown = next(t for t, kind in painted if kind is want)
                    latencies.append((shown - sent) * 1000.0)
                    cpu_ms.append((time.thread_time() - sent_cpu) * 1000.0)
                    await asyncio.sleep(0.05)
            took = time.perf_counter() - t0
            stop.set()
            thread.join()
            await pilot.pause(0.5)
            lag = counter[0] - screen.history.step
            return {
                "events_written_per_s": counter[0] / took,
                "events_ingested_per_s": (screen.ingested - ingested0) / took,
                "redraws_per_s": (screen.redraws - redraws0) / took,
                "key_p50_ms": statistics.median(latencies),
                "key_p95_ms": percentile(latencies, 0.95),
                "key_cpu_p50_ms": statistics.median(cpu_ms),
                "key_cpu_p95_ms": percentile(cpu_ms, 0.95),
                "keys": float(len(latencies)),
                "final_lag_steps": float(lag),
                "bad_lines": float(screen.tailer.bad_lines),
                "loss_points_kept": float(len(screen.history.loss)),
            }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rate", type=float, default=2000.0, help="events per second to write (default 2000)"
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="how long to measure (default 10)"
    )
    args = parser.parse_args()
    load = os.getloadavg()
    result = asyncio.run(bench(args.rate, args.seconds))
    print(f"load average before      {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for key, value in result.items():
        print(f"{key:24s} {value:10.1f}")
    ok = result["events_ingested_per_s"] >= 1000 and result["key_p95_ms"] < 50
    print("goal (>= 1000 events/s ingested, key p95 < 50 ms):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
