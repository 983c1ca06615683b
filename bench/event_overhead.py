"""Monitoring overhead: the same training loop with events and health rules off versus on.

One in-process Trainer (the nanoGPT CPU shape: 4 layers, n_embd 128, block 64,
batch 12) trains in blocks of --block steps, alternating "off" (a NullEventWriter
and no health monitor) and "on" (the real events.jsonl writer and HealthMonitor).
Neighbouring blocks share the machine's load of the moment, so the figure is the
median over pairs of tokens/s(on) / tokens/s(off). Goal >= 0.98.

With --loggers tensorboard[,wandb] both blocks keep events and health on, and "on"
adds the train.loggers (cockpit.train.loggers, fed from the same read-back): the
figure is then the loggers' own overhead.

    python bench/event_overhead.py [--data PATH] [--block 50] [--pairs 10] [--device cpu|cuda]
                                   [--loggers tensorboard]
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

from cockpit import rundir  # noqa: E402
from cockpit.plan.presets import apply_overrides, preset_from_dict  # noqa: E402
from cockpit.rundir import EventWriter, NullEventWriter  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
GOAL = 0.98


def make_preset(data: Path | None, steps: int, batch: int, extra: list[str]):
    raw = {
        "name": "overhead",
        "model": {
            "n_layer": 4,
            "n_head": 4,
            "n_embd": 128,
            "block_size": 64,
            "vocab_size": 256,
            "dropout": 0.0,
        },
        "train": {
            "batch_size": batch,
            "max_steps": steps,
            "warmup_steps": 0,
            "eval_interval": 0,
            "eval_steps": 1,
            "log_interval": 10,
            "sample_tokens": 0,
            "dtype": "auto",
        },
        "data": {"source": str(data) if data else "default", "tokenizer": "char"},
    }
    return apply_overrides(preset_from_dict(raw), extra)


def run_block(trainer, steps: int, on: bool, writer: EventWriter, monitor, loggers=None) -> float:
    """Train `steps` more steps with monitoring (or, given `loggers`, the loggers) on or off; tokens/s."""
    parts = (trainer.metrics, trainer.evaluator, trainer.checkpointer, trainer.responder)
    if loggers is None:
        events = writer if on else NullEventWriter()
        trainer.events = events
        for part in parts:
            part.events = events
        trainer.metrics.monitor = trainer.evaluator.monitor = monitor if on else None
    else:  # events and health on in both: only the loggers differ
        trainer.loggers = trainer.metrics.loggers = trainer.evaluator.loggers = (
            loggers if on else None
        )
    trainer.t.max_steps = trainer.step + steps
    first = trainer.step
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    return (trainer.step - first) * trainer.tokens_per_step / seconds


def direct_cost(loggers, step_s: float, records: int = 2000) -> None:
    """The loggers' own time per step, timed alone (robust on a loaded machine), against a step."""
    batch = [
        {"step": 10**6 + i, "loss": 2.0, "lr": 1e-3, "grad_norm": 0.5, "tokens_per_s": 1e4}
        for i in range(records)
    ]
    times = []
    for _ in range(5):
        for r in batch:
            r["step"] += records
        t0 = time.perf_counter()
        for i in range(0, records, 10):  # as the trainer calls it: one log interval at a time
            loggers.log_steps(batch[i : i + 10])
        times.append((time.perf_counter() - t0) / records)
    per_step = statistics.median(times)
    print(
        f"loggers alone        {per_step * 1e6:.1f} us per step against a {step_s * 1e3:.1f} ms step: "
        f"implied ratio {step_s / (step_s + per_step):.4f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--block", type=int, default=50, help="steps per block")
    parser.add_argument("--pairs", type=int, default=10, help="off/on pairs of blocks")
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument(
        "--loggers", default="", metavar="NAMES", help="compare train.loggers on/off instead"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    from cockpit.train.loop import Trainer

    data = args.data if args.data.is_file() else None
    total = args.block * (2 * args.pairs + 1)
    preset = make_preset(data, total, args.batch_size, args.overrides)
    run_dir = rundir.create_run_dir(
        preset, Path(tempfile.mkdtemp(prefix="event_overhead_")) / "run"
    )
    writer = EventWriter(run_dir / rundir.EVENTS_JSONL)
    trainer = Trainer(run_dir, device=args.device, events=writer, write_checkpoints=False)
    trainer.setup()
    monitor = trainer.metrics.monitor
    loggers = None
    if args.loggers:
        from cockpit.train.loggers import open_loggers

        trainer.preset.train.loggers = args.loggers
        loggers = open_loggers(trainer.preset, run_dir, trainer.warn)
        if loggers is None or not loggers.active:
            print(f"no logger could start: see {run_dir / rundir.EVENTS_JSONL}")
            return 1
    what = f"loggers {args.loggers}" if loggers else "events and health"
    print(
        f"{what} off/on: blocks of {args.block} steps, {args.pairs} pairs, device {trainer.device}, "
        f"data {data or 'default corpus'}"
    )
    run_block(
        trainer, args.block, True, writer, monitor, loggers
    )  # warm-up: allocator, caches, lazy imports
    ratios, offs, ons = [], [], []
    for n in range(args.pairs):
        order = (False, True) if n % 2 == 0 else (True, False)  # alternate which goes first
        result = {on: run_block(trainer, args.block, on, writer, monitor, loggers) for on in order}
        offs.append(result[False])
        ons.append(result[True])
        ratios.append(result[True] / result[False])
        print(
            f"  pair {n + 1:2d}: off {result[False]:9,.0f} tok/s   on {result[True]:9,.0f} tok/s   ratio {ratios[-1]:.4f}",
            flush=True,
        )
    if loggers is not None:
        direct_cost(
            loggers, statistics.median(offs) and trainer.tokens_per_step / statistics.median(offs)
        )
        loggers.close()
    writer.close()
    ratio = statistics.median(ratios)
    print(
        f"median tokens/s      off {statistics.median(offs):,.0f}   on {statistics.median(ons):,.0f}"
    )
    print(f"median ratio on/off  {ratio:.4f}   (goal >= {GOAL}: {ratio >= GOAL})")
    print(f"load average         {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
