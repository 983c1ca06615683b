"""What the queue will do: when and where each entry would run, what is left, what it costs.

`queue plan` and the `queue` list both ask `forecast`: the live entries keep their places with
the time they still need (their measured pace where they have one), and the queued ones are
packed after them in queue order, on this machine or on what-if GPUs. On GPUs of several
kinds each entry's need is its plan on the GPUs it is packed on (the time, and so the cost, of
the card it will run on).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from cockpit.campaign import planning
from cockpit.campaign.backend import Placement
from cockpit.campaign.packing import Ledger, Machine, Need, Slot, busy_gpu_hours, simulate
from cockpit.campaign.progress import RunProgress, read_progress
from cockpit.campaign.store import LIVE_STATES, Entry
from cockpit.plan.gpu import GpuSpec


def remaining_seconds(
    entry: Entry, now: float, progress: RunProgress | None = None
) -> float | None:
    """Seconds a live or queued entry still needs: its measured pace where it ran, else its plan.

    `progress` is the run's, when the caller has read it already (else it is read here)."""
    if progress is None and entry.run_dir and Path(entry.run_dir).is_dir():
        progress = read_progress(entry.run_dir)
    if progress is not None and progress.left_s is not None:
        return progress.left_s
    if entry.planned_seconds is None:
        return None
    if entry.attempt_started:
        return max(0.0, entry.planned_seconds - (now - entry.attempt_started))
    return entry.planned_seconds


@dataclass
class Forecast:
    """Each entry's slot (seconds from now) and need, and the GPU-hours packed and one at a time."""

    machine: Machine
    needs: dict[int, Need]
    slots: dict[int, Slot]
    packed_gpu_hours: float
    serial_gpu_hours: float


def forecast(
    entries: list[Entry],
    machine: Machine,
    specs: dict[int, GpuSpec],
    *,
    whatif: bool = False,
    check_launch: bool = False,
    now: float | None = None,
) -> Forecast:
    """Pack the queued entries after the live ones (on a what-if machine, all from the start)."""
    now = time.time() if now is None else now
    todo = [e for e in entries if e.state == "queued" or (whatif and e.state in LIVE_STATES)]
    live = [] if whatif else [e for e in entries if e.state in LIVE_STATES]
    ids = {e.id for e in todo} | {e.id for e in live}
    needs = {
        e.id: planning.need_for(e, machine, specs, check_launch=check_launch and e in todo)
        for e in todo + live
    }
    running = []
    ledger = Ledger()
    for e in live:
        placement = Placement.parse(e.planned_device)
        placement = Placement(placement.gpus, e.threads, e.planned_bytes)
        needs[e.id] = needs[e.id].placed_on(placement.gpus)  # its plan on the GPUs it holds
        left = remaining_seconds(e, now)
        running.append((needs[e.id], placement, left if left is not None else 3600.0))
        ledger.take(
            e.id,
            placement,
            0 if placement.gpus else (e.planned_bytes or 0),
            share=needs[e.id].share,
        )
    # an entry after one outside this plan: done means no wait, anything else waits forever
    after = {e.id: e.after for e in todo if e.after is not None and e.after in ids}
    blocked = {
        e.id
        for e in todo
        if e.after is not None and e.after not in ids and not _done(entries, e.after)
    }
    plan_needs = [needs[e.id] for e in todo if e.id not in blocked]
    slots = {
        s.entry_id: s
        for s in simulate(plan_needs, machine, after=after, running=running, ledger=ledger)
    }
    for slot in slots.values():  # on GPUs of several kinds: its plan on the ones it gets
        if slot.placement is not None and slot.placement.gpus:
            needs[slot.entry_id] = needs[slot.entry_id].placed_on(slot.placement.gpus)
    for entry_id in blocked:
        waited = next(e.after for e in todo if e.id == entry_id)
        slots[entry_id] = Slot(
            entry_id, None, None, None, f"waits for #{waited}, which ended undone"
        )
    serial = simulate(plan_needs, machine, after=after, one_at_a_time=True)
    return Forecast(
        machine,
        needs,
        slots,
        busy_gpu_hours(slots.values()),
        busy_gpu_hours(serial),
    )


def _done(entries: list[Entry], entry_id: int) -> bool:
    return any(e.id == entry_id and e.state == "done" for e in entries)
