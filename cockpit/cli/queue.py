"""`gpt-cockpit queue`: add, list, remove, run, stop and plan a night of runs.

Every bad input is one line on stderr and exit 2, with the queue unchanged: the whole
request is checked (presets, overrides, every sweep combination, the device request, the
limits) before the one transaction that changes the queue.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cockpit import rundir
from cockpit.campaign import hooks, planning
from cockpit.campaign.forecast import Forecast, forecast, remaining_seconds
from cockpit.campaign.locations import queue_db_path, scheduler_lock_path, scheduler_log_path
from cockpit.campaign.money import (
    LimitError,
    Limits,
    fmt_dollars,
    parse_deadline,
    parse_money,
    resolve_price,
)
from cockpit.campaign.progress import read_progress
from cockpit.campaign.store import ENDED_STATES, LIVE_STATES, Entry, NewEntry, Queue, QueueError
from cockpit.cli.queue_slurm import backend_for, job_states, on_slurm, print_job_scripts
from cockpit.common.diagnostics import EXIT_FAILED, EXIT_OK, EXIT_USAGE, error, info
from cockpit.common.format import human_bytes, human_duration
from cockpit.plan.presets import (
    PresetError,
    apply_overrides,
    load_preset,
    parse_override,
    resolve_field_path,
)

DETACH_WAIT_S = 15.0  # how long `queue run` waits to see its detached scheduler take the lock


def cmd_queue(args: argparse.Namespace) -> int:
    """Dispatch `queue SUBCOMMAND`; with none, the list."""
    sub = getattr(args, "queue_command", None) or "list"
    handler = {
        "list": _cmd_list,
        "add": _cmd_add,
        "rm": _cmd_rm,
        "run": _cmd_run,
        "stop": _cmd_stop,
        "retry": _cmd_retry,
        "plan": _cmd_plan,
    }[sub]
    try:
        return handler(args)
    except (QueueError, LimitError, planning.PlanError) as exc:
        error(str(exc))
        return EXIT_USAGE


# --------------------------------------------------------------------------- add


def _parse_sets(texts: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for text in texts:
        key, value = parse_override(text)
        out[resolve_field_path(key)] = value
    return out


def _parse_sweeps(texts: list[str]) -> list[tuple[str, list[Any]]]:
    """--sweep K=V1,V2,...: the field and its values (each read as --set reads one)."""
    out = []
    for text in texts:
        if "=" not in text:
            raise PresetError(text, "a sweep is written key=v1,v2,..., e.g. train.lr=1e-3,3e-4")
        key, _, values = text.partition("=")
        path = resolve_field_path(key.strip())
        items = [v.strip() for v in values.split(",")]
        if not items or any(not v for v in items):
            raise PresetError(path, f"--sweep {text}: an empty value in the list")
        out.append((path, [parse_override(f"{path}={v}")[1] for v in items]))
        if len({json.dumps(v) for v in out[-1][1]}) != len(items):
            raise PresetError(path, f"--sweep {text}: a value is listed twice")
    if len({k for k, _ in out}) != len(out):
        raise PresetError(out[0][0], "a field is swept twice; give all its values in one --sweep")
    return out


def _device_request(args: argparse.Namespace) -> tuple[str, int]:
    """(device, gpus) from --gpus / --device; --gpus more than this machine has is refused."""
    device = getattr(args, "queue_device", None) or "any"
    gpus = getattr(args, "gpus", None)
    if gpus is not None:
        if gpus < 1:
            raise QueueError(f"--gpus must be 1 or more, not {gpus}")
        from cockpit.plan.gpu import NVML_NOT_INSTALLED, nvml_problem, query_gpus

        have = len(query_gpus())
        cluster = getattr(args, "on", "local") == "slurm"  # the cluster's GPUs, not this machine's
        if have < gpus and nvml_problem() != NVML_NOT_INSTALLED and not cluster:
            where = f"{have} GPU" + ("s" if have != 1 else "") if have else "no GPU"
            raise QueueError(f"--gpus {gpus}: this machine has {where}")
        return "gpu", gpus
    return device, 0 if device == "cpu" else 1


def _preset_ref(name: str) -> str:
    """How an entry names its preset: a file by its absolute path, a name as typed."""
    path = Path(name)
    if name.endswith(".json") or path.is_file():
        return str(path.resolve())
    return name


def _label(name: str, combo: dict[str, Any], base: str) -> str:
    sets = ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in combo.items())
    return f"{name or base}[{sets}]" if sets else (name or "")


def _cmd_add(args: argparse.Namespace) -> int:
    from cockpit.runs.prelaunch import launch_problem

    try:
        preset = load_preset(args.preset)
        sets = _parse_sets(getattr(args, "overrides", None) or [])
        sweeps = _parse_sweeps(args.sweep or [])
        base = apply_overrides(preset, sets) if sets else preset
    except PresetError as exc:
        error(str(exc))
        return EXIT_USAGE
    device, gpus = _device_request(args)
    combos = [
        dict(zip([k for k, _ in sweeps], values, strict=True))
        for values in itertools.product(*[v for _, v in sweeps])
    ]
    if not combos:
        combos = [{}]
    for combo in combos:  # every combination validates before any is added
        try:
            resolved = apply_overrides(base, combo) if combo else base
        except PresetError as exc:
            shown = " ".join(f"{k}={v}" for k, v in combo.items())
            error(f"{shown}: {exc}" if shown else str(exc))
            return EXIT_USAGE
        problem = launch_problem(resolved)
        if problem:
            error(problem)
            return EXIT_USAGE
    runs_root = str(rundir.runs_root(getattr(args, "runs_dir", None)).resolve())
    with Queue() as queue:
        group = None
        if sweeps:
            group = args.name or _sweep_name(queue, preset.name)
            if group in queue.groups():
                raise QueueError(f"--name {group}: a group of that name exists; pick another")
        new = [
            NewEntry(
                preset=_preset_ref(args.preset),
                overrides={**sets, **combo},
                device=device,
                gpus=gpus,
                priority=args.priority,
                after=args.after,
                group=group,
                name=_label(group or "", combo, preset.name) if group else (args.name or ""),
                workdir=os.getcwd(),
                runs_root=runs_root,
            )
            for combo in combos
        ]
        added = queue.add(new)
    for entry in added:
        print(f"#{entry.id} {entry.label}")
    what = f"{len(added)} entries in group {group}" if group else f"entry #{added[0].id}"
    info(f"queued {what}; `gpt-cockpit queue run` starts the scheduler")
    return EXIT_OK


def _sweep_name(queue: Queue, preset_name: str) -> str:
    taken = set(queue.groups())
    for n in range(1, 10_000):
        name = f"{preset_name}-sweep{n}"
        if name not in taken:
            return name
    return f"{preset_name}-sweep-{int(time.time())}"


# --------------------------------------------------------------------------- list


def _limits_of(record: dict[str, Any] | None, option: str | None = None) -> Limits:
    price = record.get("price_per_gpu_hour") if record else None
    if price is None:
        try:
            price, _ = resolve_price(option)
        except LimitError:
            price = None
    return Limits(price_per_gpu_hour=price)


def _entry_row(e: Entry, fc: Forecast | None, limits: Limits, now: float) -> dict[str, Any]:
    progress = read_progress(e.run_dir) if e.run_dir and Path(e.run_dir).is_dir() else None
    slot = fc.slots.get(e.id) if fc else None
    need = fc.needs.get(e.id) if fc else None
    left = remaining_seconds(e, now) if e.state in LIVE_STATES else None
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


def _clock(epoch: float | None, now: float) -> str:
    if epoch is None:
        return "-"
    text = time.strftime("%H:%M", time.localtime(epoch))
    return text if epoch - now < 20 * 3600 else time.strftime("%a %H:%M", time.localtime(epoch))


def _state_text(row: dict[str, Any]) -> str:
    state = row["state"]
    if row["retries"]:
        state += f" (retry {len(row['retries'])})"
    if row["request"] and row["state"] in LIVE_STATES:
        state += f" ({row['request']}ing)" if row["request"] != "stop" else " (stopping)"
    return state


def _cmd_list(args: argparse.Namespace) -> int:
    with Queue() as queue:
        entries = queue.entries()
        record = _live_record(queue)
    now = time.time()
    limits = _limits_of(record)
    fc = None
    if any(e.state in ("queued", *LIVE_STATES) for e in entries):
        try:
            machine, specs = planning.local_machine(*_ours(entries))
            fc = forecast(entries, machine, specs, now=now)
        except Exception as exc:  # the list must show even when a plan cannot be made
            info(f"no forecast: {exc}")
    rows = [_entry_row(e, fc, limits, now) for e in entries]
    jobs = job_states(entries)  # a Slurm entry's job id and state, from one squeue call
    for e, row in zip(entries, rows, strict=True):
        row["backend"], row["backend_job"], row["job"] = e.backend, e.backend_job, jobs.get(e.id)
    if getattr(args, "json", False):
        for row in rows:
            print(json.dumps(row))
        return EXIT_OK
    if not rows:
        info(f"the queue is empty ({queue_db_path()}); `gpt-cockpit queue add PRESET` adds a run")
        return EXIT_OK
    _print_table(rows, now)
    _print_totals(rows, record, limits)
    return EXIT_OK


def _live_record(queue: Queue) -> dict[str, Any] | None:
    """The scheduler's record when a scheduler holds the lock (a killed one leaves a stale one)."""
    from cockpit.campaign.scheduler import holder_pid

    record = queue.get_meta("scheduler")
    return record if record and holder_pid(scheduler_lock_path(queue.path)) else None


def _ours(entries: list[Entry]) -> tuple[dict[int, int], int]:
    """Planned bytes per GPU and RAM of the live entries (other processes' share is the rest)."""
    from cockpit.campaign.backend import Placement

    ours: dict[int, int] = {}
    ram = 0
    for e in entries:
        if e.state not in LIVE_STATES:
            continue
        p = Placement.parse(e.planned_device)
        for g in p.gpus:
            ours[g] = ours.get(g, 0) + (e.planned_bytes or 0)
        if not p.gpus:
            ram += e.planned_bytes or 0
    return ours, ram


LIST_COLUMNS = ("id", "state", "name", "device", "memory", "step", "eta", "cost", "run / why")


def _print_table(rows: list[dict[str, Any]], now: float) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(soft_wrap=True, highlight=False)
    if not console.is_terminal:
        console = Console(width=1000, highlight=False)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in LIST_COLUMNS:
        table.add_column(
            name,
            justify="right" if name in ("id", "memory", "step") else "left",
            no_wrap=name != "run / why",
        )
    for r in rows:
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
        last = " - ".join(x for x in (where, r.get("job"), why) if x) or "-"
        eta = _clock(r["eta"], now) if r["state"] not in ENDED_STATES else "-"
        cells = (str(r["id"]), _state_text(r), r["name"], device, memory, step, eta, cost, last)
        table.add_row(*(escape(c) for c in cells))
    console.print(table)


def _print_totals(
    rows: list[dict[str, Any]], record: dict[str, Any] | None, limits: Limits
) -> None:
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


# --------------------------------------------------------------------------- rm, stop


def _cmd_rm(args: argparse.Namespace) -> int:
    from cockpit.campaign.local import LocalBackend
    from cockpit.campaign.scheduler import holder_pid

    with Queue() as queue:
        targets = queue.cancel(args.ref)
    if holder_pid(scheduler_lock_path()) is None:  # no scheduler to pass the request on: stop here
        for e in targets:
            if e.state in LIVE_STATES and e.backend in (None, "local"):
                LocalBackend().stop(e, checkpoint=True)
            elif e.state in LIVE_STATES and e.backend == "slurm":
                from cockpit.campaign.slurm_backend import SlurmBackend

                SlurmBackend().stop(e, checkpoint=True)  # its batch script checkpoints the run
    for e in targets:
        if e.state == "queued":
            print(f"#{e.id} {e.label}: cancelled")
        elif e.state in LIVE_STATES:
            print(f"#{e.id} {e.label}: stopping with a checkpoint, then cancelled")
        else:
            print(f"#{e.id} {e.label}: removed from the list (its run directory stays)")
    return EXIT_OK


def _cmd_retry(args: argparse.Namespace) -> int:
    """Put stopped, failed or cancelled entries back in the queue: they resume from their checkpoint."""
    with Queue() as queue:
        targets = queue.resolve(args.ref)
        again = [e for e in targets if e.state in ("failed", "stopped", "cancelled")]
        if not again:
            states = ", ".join(sorted({e.state for e in targets}))
            raise QueueError(
                f"{args.ref} is {states}: only stopped, failed or cancelled entries go back"
            )
        for e in again:
            queue.requeue(e.id, f"queued again after it was {e.state}", retry=False)
    for e in again:
        how = "resumes from its checkpoint" if e.run_dir else "starts afresh"
        print(f"#{e.id} {e.label}: queued again ({how})")
    return EXIT_OK


def _cmd_stop(args: argparse.Namespace) -> int:
    from cockpit.campaign.scheduler import holder_pid

    holder = holder_pid(scheduler_lock_path())
    if holder is None:
        info("no scheduler is running this queue; nothing to stop")
        return EXIT_FAILED
    with Queue() as queue:
        queue.set_meta("stop", "now" if args.now else "launching")
    if args.now:
        info(f"asked the scheduler (pid {holder}) to stop its runs with a checkpoint and exit")
    else:
        info(
            f"asked the scheduler (pid {holder}) to start nothing more; it exits when its runs end"
        )
    return EXIT_OK


# --------------------------------------------------------------------------- run


def _limits(args: argparse.Namespace) -> Limits:
    price, _ = resolve_price(args.price_per_gpu_hour)
    budget = parse_money(args.budget, "--budget") if args.budget is not None else None
    until = parse_deadline(args.until, time.time()) if args.until else None
    limits = Limits(price_per_gpu_hour=price, budget=budget, until=until)
    limits.check()
    return limits


def _cmd_run(args: argparse.Namespace) -> int:
    from cockpit.campaign.scheduler import SchedulerBusy, holder_pid

    limits = _limits(args)
    backend_for(args)  # `--on slurm` without Slurm here: one line, before anything starts
    with Queue() as queue:  # a database that cannot be opened says so here, before anything starts
        todo = queue.entries(states=("queued", *LIVE_STATES))
    if not todo:
        info("nothing queued to run; `gpt-cockpit queue add PRESET` adds a run")
        return EXIT_OK
    holder = holder_pid(scheduler_lock_path())
    if holder is not None:
        raise SchedulerBusy(
            f"another scheduler (pid {holder}) is running this queue; `gpt-cockpit queue stop` stops it"
        )
    if args.foreground:
        return _run_foreground(limits, args)
    return _run_detached(args, limits)


def _run_foreground(limits: Limits, args: argparse.Namespace) -> int:
    from cockpit.campaign.scheduler import Scheduler

    backend, machine, _ = backend_for(args)

    def say(line: str) -> None:
        print(line, flush=True)

    def leave(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # the scheduler lets go of its lock; its runs train on

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, leave)
    with Queue() as queue:
        scheduler = Scheduler(
            queue,
            backend,
            limits=limits,
            notifiers=hooks.configured_notifiers(),
            pruning=hooks.configured_pruning(),
            say=say,
        )
        if machine is not None:  # a cluster: its own scheduler places the jobs
            scheduler.machine = machine
        try:
            return scheduler.run()
        except KeyboardInterrupt:
            info(
                "scheduler stopped; the runs it started train on (`gpt-cockpit queue run` adopts them)"
            )
            return EXIT_OK


def _run_detached(args: argparse.Namespace, limits: Limits) -> int:
    """Start `queue run --foreground` in its own session (it outlives this shell and the app)."""
    from cockpit.campaign.scheduler import holder_pid

    argv = [sys.executable, "-m", "cockpit", "queue", "run", "--foreground"]
    argv += backend_for(args)[2]  # --on slurm and its options
    if limits.price_per_gpu_hour is not None:
        argv += ["--price-per-gpu-hour", repr(limits.price_per_gpu_hour)]
    if limits.budget is not None:
        argv += ["--budget", repr(limits.budget)]
    if limits.until is not None:
        argv += ["--until", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(limits.until))]
    log_path = scheduler_log_path()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["GPT_COCKPIT_QUEUE_DB"] = str(queue_db_path())  # the same queue whatever the state dir
    env.setdefault("PYTHONUNBUFFERED", "1")
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    deadline = time.monotonic() + DETACH_WAIT_S
    while time.monotonic() < deadline:
        code = child.poll()
        if holder_pid(scheduler_lock_path()) == child.pid:
            info(
                f"scheduler started (pid {child.pid}); its log: {log_path}; `gpt-cockpit queue` shows the queue"
            )
            return EXIT_OK
        if code is not None:
            last = _last_line(log_path)
            if code == 0:
                info(
                    f"the scheduler had nothing to do and exited ({last})"
                    if last
                    else "nothing to run"
                )
                return EXIT_OK
            error(last or f"the scheduler exited with code {code}; see {log_path}")
            return EXIT_USAGE if code == EXIT_USAGE else EXIT_FAILED
        time.sleep(0.1)
    info(f"scheduler starting (pid {child.pid}); its log: {log_path}")
    return EXIT_OK


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].removeprefix("gpt-cockpit: error: ") if lines else ""


# --------------------------------------------------------------------------- plan


def _cmd_plan(args: argparse.Namespace) -> int:
    with Queue() as queue:
        entries = queue.entries()
        record = _live_record(queue)
    if on_slurm(args):
        return print_job_scripts(entries, args)
    if args.gpu:
        machine, specs = planning.whatif_machine(args.gpu)
    else:
        machine, specs = planning.local_machine(*_ours(entries))
    todo = [e for e in entries if e.state == "queued" or e.state in LIVE_STATES]
    if not todo:
        info("nothing queued to plan; `gpt-cockpit queue add PRESET` adds a run")
        return EXIT_OK
    now = time.time()
    fc = forecast(entries, machine, specs, whatif=bool(args.gpu), check_launch=True, now=now)
    try:
        limits = _limits_of(record, args.price_per_gpu_hour)
    except LimitError as exc:
        error(str(exc))
        return EXIT_USAGE
    if getattr(args, "json", False):
        print(json.dumps(_plan_json(fc, entries, limits)))
        return EXIT_OK
    _print_plan(fc, entries, limits, now)
    return EXIT_OK


def _plan_rows(fc: Forecast, entries: list[Entry]) -> list[tuple[Entry, Any, Any]]:
    by_id = {e.id: e for e in entries}
    rows = [(by_id[i], slot, fc.needs.get(i)) for i, slot in fc.slots.items() if i in by_id]
    rows.sort(key=lambda r: (r[1].start_s is None, r[1].start_s or 0.0, r[0].id))
    return rows


def _plan_json(fc: Forecast, entries: list[Entry], limits: Limits) -> dict[str, Any]:
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


def _print_plan(fc: Forecast, entries: list[Entry], limits: Limits, now: float) -> None:
    m = fc.machine
    gpus = ", ".join(f"GPU {g.index} {g.name} {human_bytes(g.capacity_bytes)}" for g in m.gpus)
    print(
        f"plan for {m.label}: {gpus or 'no GPU'}; {m.cores} CPU cores, {human_bytes(m.ram_bytes)} RAM"
    )
    rows = _plan_rows(fc, entries)
    width = max(len(e.label) for e, _, _ in rows)
    for e, slot, need in rows:
        planned = need.gpu_bytes or need.ram_bytes if need else None
        memory = human_bytes(planned) if planned else "-"
        if slot.placement is None:
            print(f"  #{e.id:<4} {e.label:<{width}}  never starts: {slot.reason}")
            continue
        end = (
            f"{_rel(slot.end_s)} ({_clock(now + slot.end_s, now)})"
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
