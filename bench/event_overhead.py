"""Monitoring overhead: the same training loop with events and health rules off versus on.

Each trial trains the nanoGPT CPU shape (4 layers, n_embd 128, block 64, batch
12) for --steps steps in this process, either with a NullEventWriter and no
health monitor ("off") or with the real events.jsonl writer and HealthMonitor
("on"). Trials alternate off/on so drift in machine load hits both alike; the
figure is the median over trials of tokens/s(on) / tokens/s(off). Goal >= 0.98.

    python bench/event_overhead.py [--data PATH] [--steps 200] [--trials 5] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cockpit import runs  # noqa: E402
from cockpit.events import EventWriter, NullEventWriter  # noqa: E402
from cockpit.presets import apply_overrides, preset_from_dict  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
GOAL = 0.98


def make_preset(data: Path | None, steps: int, batch: int, extra: list[str]):
    raw = {
        "name": "overhead",
        "model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "vocab_size": 256, "dropout": 0.0},
        "train": {
            "batch_size": batch,
            "max_steps": steps,
            "warmup_steps": 10,
            "eval_interval": 0,
            "eval_steps": 1,
            "log_interval": 10,
            "sample_tokens": 0,
            "dtype": "auto",
        },
        "data": {"source": str(data) if data else "default", "tokenizer": "char"},
    }
    return apply_overrides(preset_from_dict(raw), extra)


def trial(preset, device: str, events_on: bool, root: Path, n: int) -> float:
    """Tokens/s of one training run in this process."""
    from cockpit.train.loop import Trainer

    run_dir = runs.create_run_dir(preset, root / f"trial{n}-{'on' if events_on else 'off'}")
    events = EventWriter(run_dir / runs.EVENTS_JSONL) if events_on else NullEventWriter()
    trainer = Trainer(run_dir, device=device, events=events, write_checkpoints=False)
    trainer.setup()
    if not events_on:
        trainer.monitor = None  # "off" means no health rules either
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    events.close()
    return trainer.step * trainer.tokens_per_step / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--trials", type=int, default=5, help="off/on pairs")
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    data = args.data if args.data.is_file() else None
    preset = make_preset(data, args.steps, args.batch_size, args.overrides)
    root = Path(tempfile.mkdtemp(prefix="event_overhead_"))
    print(f"{args.steps} steps per trial, {args.trials} off/on pairs, device {args.device}, data {data or 'default corpus'}")
    trial(preset, args.device, False, root, -1)  # warm-up: caches, allocator, lazy imports
    ratios, offs, ons = [], [], []
    for n in range(args.trials):
        first_on = n % 2 == 1  # alternate which goes first within a pair too
        order = (True, False) if first_on else (False, True)
        result = {}
        for on in order:
            result[on] = trial(preset, args.device, on, root, n)
        offs.append(result[False])
        ons.append(result[True])
        ratios.append(result[True] / result[False])
        print(f"  pair {n + 1}: off {result[False]:,.0f} tok/s   on {result[True]:,.0f} tok/s   ratio {ratios[-1]:.4f}", flush=True)
    ratio = statistics.median(ratios)
    print(f"median tokens/s      off {statistics.median(offs):,.0f}   on {statistics.median(ons):,.0f}")
    print(f"median ratio on/off  {ratio:.4f}   (goal >= {GOAL}: {ratio >= GOAL})")
    print(f"load average         {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
