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
from cockpit.campaign.forecast import forecast
from cockpit.campaign.locations import queue_db_path, scheduler_lock_path, scheduler_log_path
from cockpit.campaign.money import (
    LimitError,
    Limits,
    parse_deadline,
    parse_money,
    resolve_price,
)
from cockpit.campaign.store import LIVE_STATES, Entry, NewEntry, Queue, QueueError
from cockpit.cli import queue_show as show
from cockpit.cli.queue_slurm import (
    backend_for,
    cluster_device,
    job_states,
    on_slurm,
    print_job_scripts,
)
from cockpit.common.diagnostics import EXIT_FAILED, EXIT_OK, EXIT_USAGE, error, info
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
        new = [
            NewEntry(
                preset=_preset_ref(args.preset),
                overrides={**sets, **combo},
                device=device,
                gpus=gpus,
                priority=args.priority,
                after=args.after,
                name=_label("{group}", combo, preset.name) if sweeps else (args.name or ""),
                workdir=os.getcwd(),
                runs_root=runs_root,
            )
            for combo in combos
        ]
        if sweeps:
            added = queue.add(new, group=args.name or None, group_base=preset.name)
        else:
            added = queue.add(new)
    group = added[0].group
    for entry in added:
        print(f"#{entry.id} {entry.label}")
    what = f"{len(added)} entries in group {group}" if group else f"entry #{added[0].id}"
    info(f"queued {what}; `gpt-cockpit queue run` starts the scheduler")
    return EXIT_OK


# --------------------------------------------------------------------------- list


def _limits_of(record: dict[str, Any] | None, option: str | None = None) -> Limits:
    price = record.get("price_per_gpu_hour") if record else None
    if price is None:
        try:
            price, _ = resolve_price(option)
        except LimitError:
            price = None
    return Limits(price_per_gpu_hour=price)


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
    rows = [show.entry_row(e, fc, limits, now) for e in entries]
    jobs = job_states(entries)  # a Slurm entry's job id and state, from one squeue call
    for e, row in zip(entries, rows, strict=True):
        row["backend"], row["backend_job"], row["job"] = e.backend, e.backend_job, jobs.get(e.id)
        if e.backend == "slurm" and row["device"]:  # which GPUs is the cluster's choice
            row["device"] = cluster_device(row["device"])
    if getattr(args, "json", False):
        for row in rows:
            print(json.dumps(row))
        return EXIT_OK
    if not rows:
        info(f"the queue is empty ({queue_db_path()}); `gpt-cockpit queue add PRESET` adds a run")
        return EXIT_OK
    show.print_table(rows, now)
    show.print_totals(rows, record, limits)
    return EXIT_OK


def _live_record(queue: Queue) -> dict[str, Any] | None:
    """The scheduler's record when a scheduler holds the lock (a killed one leaves a stale one)."""
    from cockpit.campaign.lock import holder_pid

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


# --------------------------------------------------------------------------- rm, stop


def _cmd_rm(args: argparse.Namespace) -> int:
    from cockpit.campaign.local import LocalBackend
    from cockpit.campaign.lock import holder_pid

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
    from cockpit.campaign.lock import holder_pid

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
    from cockpit.campaign.lock import SchedulerBusy, holder_pid

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
    from cockpit.campaign.lock import holder_pid

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
        print(json.dumps(show.plan_json(fc, entries, limits)))
        return EXIT_OK
    show.print_plan(fc, entries, limits, now)
    return EXIT_OK
