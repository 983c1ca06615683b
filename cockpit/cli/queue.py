"""`gpt-cockpit queue`: add, list, remove, run, stop and plan a night of runs.

Every bad input is one line on stderr and exit 2, with the queue unchanged: the whole
request is checked (presets, overrides, every sweep combination, the device request, the
limits) before the one transaction that changes the queue.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cockpit import rundir
from cockpit.campaign import adding, planning, view
from cockpit.campaign.forecast import forecast
from cockpit.campaign.locations import queue_db_path, scheduler_lock_path, scheduler_log_path
from cockpit.campaign.money import (
    LimitError,
    Limits,
    parse_deadline,
    parse_money,
    resolve_price,
)
from cockpit.campaign.notify import NotifyConfigError, notifier_from_config
from cockpit.campaign.prune import GroupPolicies
from cockpit.campaign.store import LIVE_STATES, Queue, QueueError
from cockpit.cli import queue_show as show
from cockpit.cli.queue_slurm import (
    backend_for,
    on_slurm,
    print_job_scripts,
)
from cockpit.common.diagnostics import EXIT_FAILED, EXIT_OK, EXIT_USAGE, error, info
from cockpit.plan.presets import (
    PresetError,
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
        "notify": _cmd_notify,
    }[sub]
    try:
        return handler(args)
    except (QueueError, LimitError, planning.PlanError, NotifyConfigError) as exc:
        error(str(exc))
        return EXIT_USAGE


# --------------------------------------------------------------------------- add


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


def _cmd_add(args: argparse.Namespace) -> int:
    try:
        request = adding.Request(
            preset=args.preset,
            sets=adding.parse_sets(getattr(args, "overrides", None) or []),
            sweeps=adding.parse_sweeps(args.sweep or []),
            priority=args.priority,
            after=args.after,
            name=args.name or "",
            workdir=os.getcwd(),
            runs_root=str(rundir.runs_root(getattr(args, "runs_dir", None)).resolve()),
            prune=args.prune or "",
        )
        if request.prune and not request.sweeps:
            raise QueueError("--prune stops the losers of a sweep: give --sweep too")
        request.device, request.gpus = _device_request(args)
        with Queue() as queue:
            added = adding.add(queue, request)
    except PresetError as exc:
        error(str(exc))
        return EXIT_USAGE
    for entry in added:
        print(f"#{entry.id} {entry.label}")
    group = added[0].group
    what = f"{len(added)} entries in group {group}" if group else f"entry #{added[0].id}"
    if request.prune:
        what += f", pruned by {request.prune} stopping"
    info(f"queued {what}; `gpt-cockpit queue run` starts the scheduler")
    return EXIT_OK


# --------------------------------------------------------------------------- list


def _cmd_list(args: argparse.Namespace) -> int:
    with Queue() as queue:
        shown = view.build_view(queue, gpus=[])  # the list needs no GPU bars: NVML is not asked
    if shown.forecast_problem:
        info(shown.forecast_problem)
    rows, record, limits = shown.rows, shown.record, shown.limits
    if getattr(args, "json", False):
        for row in rows:
            print(json.dumps(row))
        return EXIT_OK
    if not rows:
        info(f"the queue is empty ({queue_db_path()}); `gpt-cockpit queue add PRESET` adds a run")
        return EXIT_OK
    show.print_table(rows, shown.now)
    show.print_totals(rows, record, limits)
    return EXIT_OK


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
    tick = getattr(args, "tick", None)
    if tick is not None and not (math.isfinite(tick) and tick > 0):
        raise QueueError(f"--tick must be a number of seconds above 0, not {tick:g}")
    _check_notify()  # a bad URL is said now, not found at 3 a.m. by a detached scheduler
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
    notifier = notifier_from_config(on_error=_log_to_queue(queue_db_path()))
    with Queue() as queue:
        scheduler = Scheduler(
            queue,
            backend,
            limits=limits,
            notifiers=[notifier],
            pruning=GroupPolicies(lambda: adding.prune_policies(queue)),
            say=say,
        )
        if args.tick is not None:
            scheduler.tick_s = args.tick
        if machine is not None:  # a cluster: its own scheduler places the jobs
            scheduler.machine = machine
        try:
            return scheduler.run()
        except KeyboardInterrupt:
            info(
                "scheduler stopped; the runs it started train on (`gpt-cockpit queue run` adopts them)"
            )
            return EXIT_OK


def _check_notify() -> None:
    """NotifyConfigError (one line) when the configured notifications cannot be sent."""
    from cockpit.campaign.notify import check_urls, load_config

    config = load_config()
    if config.enabled:
        problem = check_urls(config.urls)
        if problem:
            raise NotifyConfigError(problem)


def _cmd_notify(args: argparse.Namespace) -> int:
    """Where notices are pushed, and with --test a test message to each destination."""
    from cockpit.campaign.locations import queue_config_path
    from cockpit.campaign.notify import NOTIFY_ENV, load_config, redacted, send_now

    config = load_config()
    if not config.enabled:
        info(
            f"no notifications configured: put Apprise URLs in ${NOTIFY_ENV} or in "
            f'{queue_config_path()} as {{"notify": {{"urls": ["ntfy://my-topic"]}}}}'
        )
        return EXIT_FAILED if args.test else EXIT_OK
    _check_notify()
    for url in config.urls:
        print(redacted(url))
    info(f"pushed on: {', '.join(config.kinds)}")
    if not args.test:
        return EXIT_OK
    failed = send_now(
        config.urls, "gpt-cockpit: test", "a test notification from gpt-cockpit queue notify"
    )
    if failed:
        error(f"not sent to {', '.join(failed)}")
        return EXIT_FAILED
    info(f"sent a test message to {len(config.urls)} destination(s)")
    return EXIT_OK


def _log_to_queue(path: Path) -> Callable[[str], None]:
    """A line for the queue's log from the notifier's thread (its own connection)."""

    def log(line: str) -> None:
        try:
            with Queue(path) as queue:
                queue.log("notify", line)
        except QueueError:
            pass  # the scheduler's own log line is all there is then

    return log


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
    if args.tick is not None:
        argv += ["--tick", repr(args.tick)]
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
        record = view.scheduler_record(queue)
    if on_slurm(args):
        return print_job_scripts(entries, args)
    if args.gpu:
        machine, specs = planning.whatif_machine(args.gpu)
    else:
        machine, specs = planning.local_machine(*view.ours(entries))
    todo = [e for e in entries if e.state == "queued" or e.state in LIVE_STATES]
    if not todo:
        info("nothing queued to plan; `gpt-cockpit queue add PRESET` adds a run")
        return EXIT_OK
    now = time.time()
    fc = forecast(entries, machine, specs, whatif=bool(args.gpu), check_launch=True, now=now)
    try:
        limits = view.limits_of(record, args.price_per_gpu_hour)
    except LimitError as exc:
        error(str(exc))
        return EXIT_USAGE
    if getattr(args, "json", False):
        print(json.dumps(show.plan_json(fc, entries, limits)))
        return EXIT_OK
    show.print_plan(fc, entries, limits, now)
    return EXIT_OK
