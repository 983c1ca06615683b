"""The queue as a face shows it: one row per entry, the totals, the scheduler, each GPU's share.

`gpt-cockpit queue` (a table, or JSON lines) and the app's queue screen both read a
`QueueView`; neither writes anything. Building one reads the database, each live entry's run
directory and the memory plans of what waits: a face builds it off its UI thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cockpit.campaign import planning, slurm
from cockpit.campaign.backend import Placement
from cockpit.campaign.forecast import Forecast, forecast, remaining_seconds
from cockpit.campaign.locations import scheduler_lock_path
from cockpit.campaign.lock import holder_pid
from cockpit.campaign.money import LimitError, Limits, fmt_dollars, resolve_price
from cockpit.campaign.progress import read_progress
from cockpit.campaign.store import ENDED_STATES, LIVE_STATES, Entry, Queue
from cockpit.common.format import counted, human_bytes


def scheduler_record(queue: Queue) -> dict[str, Any] | None:
    """The scheduler's record when a scheduler holds the lock (a killed one leaves a stale one)."""
    record = queue.get_meta("scheduler")
    return record if record and holder_pid(scheduler_lock_path(queue.path)) else None


def limits_of(record: dict[str, Any] | None, option: str | None = None) -> Limits:
    """The running scheduler's price, else the configured one (no price: no dollars)."""
    price = record.get("price_per_gpu_hour") if record else None
    if price is None:
        try:
            price, _ = resolve_price(option)
        except LimitError:
            price = None
    return Limits(price_per_gpu_hour=price)


def ours(entries: list[Entry]) -> tuple[dict[int, int], int]:
    """Planned bytes per GPU and RAM of the live entries (other processes' share is the rest)."""
    per_gpu: dict[int, int] = {}
    ram = 0
    for e in entries:
        if e.state not in LIVE_STATES:
            continue
        placement = Placement.parse(e.planned_device)
        for g in placement.gpus:
            per_gpu[g] = per_gpu.get(g, 0) + (e.planned_bytes or 0)
        if not placement.gpus:
            ram += e.planned_bytes or 0
    return per_gpu, ram


def entry_row(e: Entry, fc: Forecast | None, limits: Limits, now: float) -> dict[str, Any]:
    """One entry as the list shows it (and `queue --json` prints it)."""
    progress = read_progress(e.run_dir) if e.run_dir and Path(e.run_dir).is_dir() else None
    slot = fc.slots.get(e.id) if fc else None
    need = fc.needs.get(e.id) if fc else None
    left = remaining_seconds(e, now, progress) if e.state in LIVE_STATES else None
    eta = None
    if e.state in LIVE_STATES and left is not None:
        eta = now + left
    elif slot is not None and slot.end_s is not None:
        eta = now + slot.end_s
    planned = e.planned_bytes or (need.gpu_bytes or need.ram_bytes if need else None)
    device = e.planned_device if e.state != "queued" else None
    if device is None and slot is not None and slot.placement is not None:
        device = slot.placement.device
    to_finish_s = None
    if e.state in LIVE_STATES and left is not None:
        to_finish_s = left * e.device_count
    elif e.state == "queued" and need is not None and need.seconds is not None and need.gpu_bytes:
        to_finish_s = need.seconds * max(1, need.gpus)
    return {
        "id": e.id,
        "state": e.state,
        "name": e.label,
        "group": e.group,
        "preset": e.preset,
        "overrides": e.overrides,
        "priority": e.priority,
        "after": e.after,
        "device_request": e.device if e.device != "gpu" else f"{e.gpus} GPU",
        "device": device,
        "planned_bytes": planned,
        "threads": e.threads,
        "step": progress.step if progress else None,
        "max_steps": progress.max_steps if progress else None,
        "eta": eta,
        "gpu_hours": e.gpu_seconds / 3600.0,
        "spent": limits.dollars(e.gpu_seconds),
        "to_finish": limits.dollars(to_finish_s) if to_finish_s is not None else None,
        "attempts": e.attempts,
        "retries": e.retries,
        "run_dir": e.run_dir,
        "reason": e.reason or (slot.reason if slot else ""),
        "request": e.request,
    }


def cluster_device(device: str) -> str:
    """A Slurm entry's device as the list shows it: `2 GPUs` (Slurm picks which) or `cpu`."""
    gpus = Placement.parse(device).gpus
    return counted(len(gpus), "GPU") if gpus else device


def job_states(entries: list[Entry]) -> dict[int, str]:
    """`job 12 PENDING (Resources)` for each live Slurm entry, from one squeue call; `job 12`
    alone when Slurm cannot be asked from here."""
    jobs = {
        e.id: e.backend_job
        for e in entries
        if e.backend == "slurm" and e.backend_job and e.state in LIVE_STATES
    }
    if not jobs:
        return {}
    try:
        found = slurm.read_jobs([j for j in jobs.values() if j])
    except slurm.SlurmError:
        found = {}
    out = {}
    for entry_id, job_id in jobs.items():
        state = found.get(str(job_id))
        out[entry_id] = f"job {job_id} {state.describe()}" if state else f"job {job_id}"
    return out


def add_jobs(entries: list[Entry], rows: list[dict[str, Any]]) -> None:
    """Each row's backend and, for a live Slurm entry, its job id and state (one squeue call)."""
    jobs = job_states(entries)
    for e, row in zip(entries, rows, strict=True):
        row["backend"], row["backend_job"], row["job"] = e.backend, e.backend_job, jobs.get(e.id)
        if e.backend == "slurm" and row["device"]:  # which GPUs is the cluster's choice
            row["device"] = cluster_device(row["device"])


def state_text(row: dict[str, Any]) -> str:
    """The state with its retries and a pending request: "running (retry 1) (stopping)"."""
    state = str(row["state"])
    if row["retries"]:
        state += f" (retry {len(row['retries'])})"
    if row["request"] and row["state"] in LIVE_STATES:
        state += f" ({row['request']}ing)" if row["request"] != "stop" else " (stopping)"
    return state


def clock(epoch: float | None, now: float) -> str:
    """An ETA as a wall-clock time ("06:40"; a day name when it is not within 20 hours)."""
    if epoch is None:
        return "-"
    text = time.strftime("%H:%M", time.localtime(epoch))
    return text if epoch - now < 20 * 3600 else time.strftime("%a %H:%M", time.localtime(epoch))


def row_texts(r: dict[str, Any], now: float) -> tuple[str, ...]:
    """One entry as plain text: id, state, name, device, memory, step, ETA, cost, run or why
    (the CLI's table and the app's queue screen show the same words)."""
    step = f"{r['step']}/{r['max_steps']}" if r["step"] is not None and r["max_steps"] else "-"
    memory = human_bytes(r["planned_bytes"]) if r["planned_bytes"] else "-"
    device = r["device"] or r["device_request"]
    if r["threads"] and device == "cpu":
        device = f"cpu x{r['threads']}"
    cost = fmt_dollars(r["spent"]) if r["spent"] is not None else f"{r['gpu_hours']:.2f} GPU-h"
    if r["to_finish"] is not None and r["state"] not in ENDED_STATES:
        cost += f" +{fmt_dollars(r['to_finish'])}"
    where = Path(r["run_dir"]).name if r["run_dir"] else ""
    why = r["reason"] if r["reason"] and r["state"] != "done" else ""
    last = " - ".join(x for x in (where, r.get("job"), why) if x) or "-"  # job: Slurm's id, state
    eta = clock(r["eta"], now) if r["state"] not in ENDED_STATES else "-"
    return (str(r["id"]), state_text(r), r["name"], device, memory, step, eta, cost, last)


@dataclass
class GpuShare:
    """One GPU of this machine: the planned bytes of the entries running on it."""

    index: int
    name: str
    total_bytes: int
    planned_bytes: int = 0
    entries: list[int] = field(default_factory=list)


@dataclass
class QueueView:
    """Everything a face shows of the queue at one moment."""

    path: Path
    rows: list[dict[str, Any]]
    record: dict[str, Any] | None  # the live scheduler's record, None when none runs
    limits: Limits
    gpus: list[GpuShare]
    log: list[dict[str, Any]]
    now: float
    paused: bool = False  # a `queue stop` (or the app's pause) asked it to launch nothing more
    forecast_problem: str = ""  # why no ETA could be planned for what waits

    def counts(self) -> dict[str, int]:
        """Entries per state, in the order states first appear."""
        out: dict[str, int] = {}
        for r in self.rows:
            out[r["state"]] = out.get(r["state"], 0) + 1
        return out

    def totals_line(self) -> str:
        """ "2 running, 3 queued; spent $4.10, ~$12.30 to finish; scheduler pid 812, budget $25"."""
        spent = sum(r["gpu_hours"] for r in self.rows)
        to_finish = [
            r["to_finish"]
            for r in self.rows
            if r["to_finish"] is not None and r["state"] not in ENDED_STATES
        ]
        parts = [f"{n} {state}" for state, n in self.counts().items()] or ["empty"]
        money = (
            f"spent {fmt_dollars(self.limits.dollars(spent * 3600))}"
            if self.limits.price_per_gpu_hour is not None
            else f"{spent:.2f} GPU-hours used"
        )
        if to_finish:
            money += f", ~{fmt_dollars(sum(to_finish))} to finish"
        who = "no scheduler running"
        if self.record:
            bits = [f"scheduler pid {self.record.get('pid')}"]
            if self.record.get("budget") is not None:
                bits.append(f"budget {fmt_dollars(self.record['budget'])}")
            if self.record.get("until") is not None:
                bits.append(f"until {time.strftime('%H:%M', time.localtime(self.record['until']))}")
            if self.paused:
                bits.append("launching paused")
            who = ", ".join(bits)
        return f"{', '.join(parts)}; {money}; {who}"


def build_view(
    queue: Queue,
    *,
    gpus: list[tuple[int, str, int]] | None = None,
    now: float | None = None,
    log_lines: int = 50,
) -> QueueView:
    """Read the queue once into a view. `gpus` is this machine's (index, name, total bytes),
    as the face already knows them (None: asked of NVML through the planner)."""
    now = time.time() if now is None else now
    entries = queue.entries()
    record = scheduler_record(queue)
    limits = limits_of(record)
    fc = None
    problem = ""
    per_gpu, ram = ours(entries)
    if any(e.state in ("queued", *LIVE_STATES) for e in entries):
        try:
            machine, specs = planning.local_machine(per_gpu, ram)
            fc = forecast(entries, machine, specs, now=now)
        except Exception as exc:  # noqa: BLE001 - the list must show even when no plan can be made
            problem = f"no forecast: {exc}"
    rows = [entry_row(e, fc, limits, now) for e in entries]
    add_jobs(entries, rows)
    if gpus is None:
        gpus = _local_gpus()
    shares = [GpuShare(index, name, total) for index, name, total in gpus]
    by_index = {s.index: s for s in shares}
    for e in entries:
        if e.state not in LIVE_STATES:
            continue
        for g in Placement.parse(e.planned_device).gpus:
            if g in by_index:
                by_index[g].planned_bytes += e.planned_bytes or 0
                by_index[g].entries.append(e.id)
    stop = queue.get_meta("stop")
    return QueueView(
        path=queue.path,
        rows=rows,
        record=record,
        limits=limits,
        gpus=shares,
        log=queue.log_lines(limit=log_lines),
        now=now,
        paused=bool(record) and stop == "launching",
        forecast_problem=problem,
    )


def _local_gpus() -> list[tuple[int, str, int]]:
    from cockpit.plan.gpu import query_gpus

    return [(g.index, g.name, g.memory_total) for g in query_gpus()]
