"""GPU-hours a sample night takes packed by the memory plan, against one run at a time.

The night is a queue of mixed built-in presets (sweeps of the small ones, a few big runs)
planned on a what-if GPU from the catalog, exactly as `gpt-cockpit queue plan --gpu` plans
it: each entry's memory is the estimate's reserved bytes plus the suggestion's headroom plus
its own CUDA context; its time alone is the FLOPs at the estimate's MFU, or the floor of
launching its kernels where that is longer, plus its start (cockpit/campaign/planning.py);
runs on one GPU share its compute (processor sharing: together they slow down only when
their shares sum past the whole GPU). It prints each entry's slot, every GPU's peak planned
memory against its capacity (packing must never plan an OOM), and the GPU-hours packed and
one at a time, with the time model's launch cost halved and doubled beside it.

    python bench/queue_packing.py [--gpu H100] [--out bench/results/queue-packing.md]

No GPU is used: this measures the packing, not a device; the time model is the planner's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cockpit.campaign import planning  # noqa: E402
from cockpit.campaign.packing import busy_gpu_hours, simulate  # noqa: E402
from cockpit.campaign.store import NewEntry, Queue  # noqa: E402
from cockpit.common.format import human_bytes, human_duration  # noqa: E402

# (preset, overrides, sweep values of train.lr or None): nights a person might queue.
# "sweeps" is the case packing is for (Unsloth #7059: many small runs, one big card);
# "mixed" adds big runs that keep a GPU busy alone, where packing can save little.
NIGHTS: dict[str, list[tuple[str, dict[str, object], list[float] | None]]] = {
    "sweeps": [
        ("shakespeare_char", {"train.max_steps": 50000}, [1e-3, 6e-4, 3e-4, 1e-4]),
        ("tiny_char", {"train.max_steps": 50000}, [3e-3, 1e-3, 3e-4]),
        ("small_char", {"train.max_steps": 20000}, [1e-3, 6e-4, 3e-4, 1e-4]),
        ("bdh_8gb", {"train.max_steps": 20000}, [1e-3, 3e-4]),
        ("tiny", {"train.max_steps": 50000}, [1e-3, 3e-4]),
    ],
    "mixed": [
        ("shakespeare_char", {"train.max_steps": 100000}, [1e-3, 6e-4, 3e-4]),
        ("small_char", {"train.max_steps": 100000}, [1e-3, 6e-4, 3e-4, 1e-4]),
        ("bdh_8gb", {"train.max_steps": 100000}, None),
        ("small", {"train.max_steps": 100000}, [6e-4, 3e-4]),
        ("150M", {"train.max_steps": 20000}, [6e-4, 3e-4]),
        ("gpt2_124m", {"train.max_steps": 20000}, None),
        ("tiny_gpt_50m", {}, None),
    ],
}


def night_entries(queue: Queue, night: str) -> list:
    new = []
    for preset, sets, lrs in NIGHTS[night]:
        for lr in lrs or [None]:
            overrides = dict(sets, **({"train.lr": lr} if lr is not None else {}))
            new.append(NewEntry(preset, overrides=overrides, group=preset if lrs else None))
    return queue.add(new)


def plan(entries: list, gpu: str) -> tuple:
    machine, specs = planning.whatif_machine(gpu)
    needs = [planning.need_for(e, machine, specs, check_launch=False) for e in entries]
    return machine, needs, simulate(needs, machine), simulate(needs, machine, one_at_a_time=True)


def peak_bytes(slots: list, gpu_index: int) -> tuple[int, int]:
    """The largest planned load on one GPU at any moment, and the most runs at once."""
    events = []
    for s in slots:
        if s.placement and gpu_index in s.placement.gpus and s.end_s is not None:
            events += [
                (s.start_s, 1, s.placement.planned_bytes),
                (s.end_s, -1, -s.placement.planned_bytes),
            ]
    load = runs = peak = most = 0
    for _, dn, db in sorted(events, key=lambda x: (x[0], x[1])):
        load, runs = load + db, runs + dn
        peak, most = max(peak, load), max(most, runs)
    return peak, most


def report(say, night: str, entries: list, gpu: str) -> None:
    """One night's table, peaks and GPU-hours."""
    machine, needs, packed, serial = plan(entries, gpu)
    say(f"## Night {night!r} on {machine.label}: packed by the memory plan vs one at a time")
    say()
    mixed = len({g.name for g in machine.gpus}) > 1  # GPUs of several kinds: say which card
    where = " on |" if mixed else ""
    say(f"| # | entry |{where} planned memory | alone | GPU share | start | end |")
    say("|---|---|---|---|---|---|---|" + ("---|" if mixed else ""))
    by_id = {s.entry_id: s for s in packed}
    for e, n in zip(entries, needs, strict=True):
        s = by_id[e.id]
        if s.placement is not None:  # its plan on the card it got (one kind: the same)
            n = n.placed_on(s.placement.gpus)
        card = ""
        if mixed:
            card = f" {s.placement.device if s.placement else '-'} |"
        start = human_duration(s.start_s) if s.start_s else "0s"
        end = human_duration(s.end_s) if s.end_s is not None else "never"
        say(
            f"| {e.id} | {e.label} |{card} {human_bytes(n.gpu_bytes)} | {human_duration(n.seconds)} "
            f"| {n.share:.2f} | {start} | {end} |"
        )
    say()
    for g in machine.gpus:
        peak, most = peak_bytes(packed, g.index)
        over = "OVER" if peak > g.capacity_bytes else "within"
        say(
            f"GPU {g.index}: peak planned {human_bytes(peak)} of {human_bytes(g.capacity_bytes)} "
            f"({100 * peak / g.capacity_bytes:.0f}%, {over} its memory), at most {most} runs at once"
        )
    hours_packed, hours_serial = busy_gpu_hours(packed), busy_gpu_hours(serial)
    say()
    say(
        f"GPU-hours: {hours_packed:.2f} packed, {hours_serial:.2f} one at a time: "
        f"{hours_serial - hours_packed:.2f} saved, {hours_serial / hours_packed:.2f}x fewer"
    )
    base = planning.KERNEL_LAUNCH_S
    for factor in (0.5, 2.0):
        planning.KERNEL_LAUNCH_S = base * factor
        _, _, p2, s2 = plan(entries, gpu)
        say(
            f"with the launch cost x{factor}: {busy_gpu_hours(p2):.2f} packed, "
            f"{busy_gpu_hours(s2):.2f} one at a time, {busy_gpu_hours(s2) / busy_gpu_hours(p2):.2f}x"
        )
    planning.KERNEL_LAUNCH_S = base


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--gpu", default="H100", help="catalog GPU(s), e.g. H100, 4xA100-80GB or H100,T4"
    )
    parser.add_argument("--out", help="also write the report (markdown) here")
    args = parser.parse_args()
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text)
        lines.append(text)

    say("# Sample nights: GPU-hours packed by the memory plan vs one run at a time")
    say()

    say(f"command: python bench/queue_packing.py --gpu {args.gpu}")
    say(
        f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f}"
    )
    for night in NIGHTS:
        with tempfile.TemporaryDirectory() as tmp, Queue(Path(tmp) / "q.sqlite3") as queue:
            entries = night_entries(queue, night)
            say()
            report(say, night, entries, args.gpu)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
