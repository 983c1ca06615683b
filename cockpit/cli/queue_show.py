"""How `gpt-cockpit queue` and `queue plan` print: the list's rows and table, the plan's lines."""

from __future__ import annotations

import time
from typing import Any, Literal

from cockpit.campaign.forecast import Forecast
from cockpit.campaign.money import Limits, fmt_dollars
from cockpit.campaign.store import ENDED_STATES, Entry
from cockpit.campaign.view import clock, row_texts
from cockpit.common.format import human_bytes, human_duration

LIST_COLUMNS = ("id", "state", "name", "device", "memory", "step", "eta", "cost", "run / why")
GIVE_WAY = (
    "memory",
    "step",
    "cost",
    "eta",
    "device",
)  # left out in this order where space is short
WHY_MIN = 24  # the last column wraps, but keeps at least this many characters


def print_table(rows: list[dict[str, Any]], now: float) -> None:
    """id, state, name and the last column stay; the others give way in a narrow terminal."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(soft_wrap=True, highlight=False)
    if not console.is_terminal:
        console = Console(width=1000, highlight=False)  # a pipe gets every column whole
    cells = [row_texts(r, now) for r in rows]
    widths = [max(len(name), *(len(c[i]) for c in cells)) for i, name in enumerate(LIST_COLUMNS)]
    shown = list(range(len(LIST_COLUMNS)))
    for name in GIVE_WAY:
        fixed = sum(widths[i] for i in shown[:-1]) + 2 * (len(shown) - 1)
        if fixed + min(widths[-1], WHY_MIN) <= console.width:
            break
        shown.remove(LIST_COLUMNS.index(name))
    table = Table(box=None, header_style="bold", pad_edge=False)
    for i in shown:
        name = LIST_COLUMNS[i]
        last = i == len(LIST_COLUMNS) - 1
        justify: Literal["left", "right"] = "right" if name in ("id", "memory", "step") else "left"
        width = None if last else widths[i]
        table.add_column(name, justify=justify, no_wrap=not last, min_width=width)
    for c in cells:
        table.add_row(*(escape(c[i]) for i in shown))
    console.print(table)


def print_totals(rows: list[dict[str, Any]], record: dict[str, Any] | None, limits: Limits) -> None:
    spent = sum(r["gpu_hours"] for r in rows)
    to_finish = [
        r["to_finish"]
        for r in rows
        if r["to_finish"] is not None and r["state"] not in ENDED_STATES
    ]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    parts = [f"{n} {state}" for state, n in counts.items()]
    money = (
        f"spent {fmt_dollars(limits.dollars(spent * 3600))}"
        if limits.price_per_gpu_hour is not None
        else f"{spent:.2f} GPU-hours used"
    )
    if to_finish:
        money += f", ~{fmt_dollars(sum(to_finish))} to finish"
    who = "no scheduler running (`gpt-cockpit queue run` starts one)"
    if record:
        bits = [f"scheduler pid {record.get('pid')}"]
        if record.get("budget") is not None:
            bits.append(f"budget {fmt_dollars(record['budget'])}")
        if record.get("until") is not None:
            bits.append(f"until {time.strftime('%H:%M', time.localtime(record['until']))}")
        who = ", ".join(bits)
    print(f"{', '.join(parts)}; {money}; {who}")


def _plan_rows(fc: Forecast, entries: list[Entry]) -> list[tuple[Entry, Any, Any]]:
    by_id = {e.id: e for e in entries}
    rows = [(by_id[i], slot, fc.needs.get(i)) for i, slot in fc.slots.items() if i in by_id]
    rows.sort(key=lambda r: (r[1].start_s is None, r[1].start_s or 0.0, r[0].id))
    return rows


def plan_json(fc: Forecast, entries: list[Entry], limits: Limits) -> dict[str, Any]:
    out = []
    for e, slot, need in _plan_rows(fc, entries):
        out.append(
            {
                "id": e.id,
                "name": e.label,
                "device": slot.placement.device if slot.placement else None,
                "planned_bytes": need.gpu_bytes or need.ram_bytes if need else None,
                "start_s": slot.start_s,
                "end_s": slot.end_s,
                "reason": slot.reason,
            }
        )
    return {
        "machine": fc.machine.label,
        "gpus": [
            {"index": g.index, "name": g.name, "capacity_bytes": g.capacity_bytes}
            for g in fc.machine.gpus
        ],
        "entries": out,
        "packed_gpu_hours": fc.packed_gpu_hours,
        "one_at_a_time_gpu_hours": fc.serial_gpu_hours,
        "price_per_gpu_hour": limits.price_per_gpu_hour,
    }


def _rel(seconds: float | None) -> str:
    return "-" if seconds is None else ("now" if seconds < 1 else "+" + human_duration(seconds))


def print_plan(fc: Forecast, entries: list[Entry], limits: Limits, now: float) -> None:
    m = fc.machine
    gpus = ", ".join(f"GPU {g.index} {g.name} {human_bytes(g.capacity_bytes)}" for g in m.gpus)
    # a what-if or cluster machine's host RAM is no limit: a placeholder, not a figure to print
    ram = f"{human_bytes(m.ram_bytes)} RAM" if m.ram_bytes < 1 << 60 else "host RAM not planned"
    print(f"plan for {m.label}: {gpus or 'no GPU'}; {m.cores} CPU cores, {ram}")
    rows = _plan_rows(fc, entries)
    width = max(len(e.label) for e, _, _ in rows)
    for e, slot, need in rows:
        planned = need.gpu_bytes or need.ram_bytes if need else None
        memory = human_bytes(planned) if planned else "-"
        if slot.placement is None:
            print(f"  #{e.id:<4} {e.label:<{width}}  never starts: {slot.reason}")
            continue
        end = (
            f"{_rel(slot.end_s)} ({clock(now + slot.end_s, now)})"
            if slot.end_s is not None
            else "-"
        )
        device = slot.placement.device
        if slot.placement.threads:
            device += f" x{slot.placement.threads} threads"
        print(
            f"  #{e.id:<4} {e.label:<{width}}  {device:<10} {memory:>10}  start {_rel(slot.start_s):<9} end {end}"
        )
    _print_peaks(fc)
    saved = fc.serial_gpu_hours - fc.packed_gpu_hours
    cost = ""
    if limits.price_per_gpu_hour is not None:
        cost = f" ({fmt_dollars(limits.dollars(fc.packed_gpu_hours * 3600))} against {fmt_dollars(limits.dollars(fc.serial_gpu_hours * 3600))})"
    if m.gpus:
        print(
            f"GPU-hours: {fc.packed_gpu_hours:.2f} packed, {fc.serial_gpu_hours:.2f} one at a time "
            f"({saved:.2f} saved){cost}"
        )


def _print_peaks(fc: Forecast) -> None:
    """Each GPU's largest planned load over the night, against what it offers."""
    events: dict[int, list[tuple[float, int]]] = {}
    counts: dict[int, list[tuple[float, int]]] = {}
    for slot in fc.slots.values():
        if slot.placement is None or slot.start_s is None or slot.end_s is None:
            continue
        for g in slot.placement.gpus:
            b = slot.placement.planned_bytes or 0
            events.setdefault(g, []).extend([(slot.start_s, b), (slot.end_s, -b)])
            counts.setdefault(g, []).extend([(slot.start_s, 1), (slot.end_s, -1)])
    for gpu in fc.machine.gpus:
        peak = load = 0
        for _, delta in sorted(events.get(gpu.index, []), key=lambda x: (x[0], x[1])):
            load += delta
            peak = max(peak, load)
        most = n = 0
        for _, delta in sorted(counts.get(gpu.index, []), key=lambda x: (x[0], x[1])):
            n += delta
            most = max(most, n)
        share = 100 * peak / gpu.capacity_bytes if gpu.capacity_bytes else 0
        print(
            f"GPU {gpu.index}: at most {most} run(s) at once, peak {human_bytes(peak)} of "
            f"{human_bytes(gpu.capacity_bytes)} ({share:.0f}%)"
        )
