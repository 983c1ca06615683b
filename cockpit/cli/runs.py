"""`gpt-cockpit runs`, `attach`, `resume` and `stop`: run directories from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cockpit import rundir, runs
from cockpit.common.diagnostics import EXIT_FAILED, EXIT_OK, EXIT_USAGE, error, info, warn
from cockpit.common.format import fmt_float, human_duration, status_markup
from cockpit.common.numbers import as_finite
from cockpit.plan.presets import PresetError

if TYPE_CHECKING:
    from rich.console import JustifyMethod

    from cockpit.runs.prelaunch import ModelFileChange


def _find(args: argparse.Namespace) -> Path | None:
    """The run named on the command line, or None after printing why not."""
    return runs.find_run_or_say(args.run, getattr(args, "runs_dir", None))


def cmd_runs(args: argparse.Namespace) -> int:
    """List every run: status, preset, step/max, best val loss, last loss, age, id."""
    root = rundir.runs_root(getattr(args, "runs_dir", None))
    summaries = runs.list_runs(root)
    if getattr(args, "json", False):
        for s in summaries:
            row = {
                "run_id": s.run_id,
                "path": str(s.run_dir),
                "status": s.status,
                "preset": s.preset_name,
                "step": s.step,
                "max_steps": s.max_steps,
                "best_val_loss": as_finite(s.best_val_loss),
                "last_loss": as_finite(s.last_loss),
                "age_s": round(s.age_s, 1),
                "skipped_lines": s.skipped,
            }
            if s.problem:
                row["problem"] = s.problem
            print(json.dumps(row))
        _say_skipped(summaries)
        return EXIT_OK
    if not summaries:
        info(f"no runs in {root}")
        return EXIT_OK
    _print_runs_table(summaries)
    _say_skipped(summaries)
    return EXIT_OK


RUNS_COLUMNS: tuple[tuple[str, JustifyMethod], ...] = (
    ("status", "left"),
    ("preset", "left"),
    ("step", "right"),
    ("best val", "right"),
    ("last loss", "right"),
    ("age", "right"),
    ("run", "left"),
)
GIVE_WAY = ("last loss", "best val", "age", "step")  # left out in this order where space is short


def _runs_console() -> Any:
    """The terminal's width; a pipe gets whole lines (a script reads every column)."""
    from rich.console import Console

    console = Console(soft_wrap=True, highlight=False)
    return console if console.is_terminal else Console(width=1000, highlight=False)


def _print_runs_table(summaries: list[runs.RunSummary]) -> None:
    """status, preset and run id stay whole; the other columns are left out where they do not fit."""
    from rich.table import Table
    from rich.text import Text

    rows = []
    for s in summaries:
        step = f"{s.step}/{s.max_steps}" if s.max_steps else str(s.step)
        age = human_duration(s.age_s)
        best, last = fmt_float(s.best_val_loss), fmt_float(s.last_loss)
        rows.append([status_markup(s.status), s.preset_name, step, best, last, age, s.run_id])
    widths = [
        max(len(name), *(Text.from_markup(row[i]).cell_len for row in rows))
        for i, (name, _) in enumerate(RUNS_COLUMNS)
    ]
    console = _runs_console()
    shown = list(range(len(RUNS_COLUMNS)))
    for name in GIVE_WAY:
        if sum(widths[i] for i in shown) + 2 * (len(shown) - 1) <= console.width:
            break
        shown.remove([n for n, _ in RUNS_COLUMNS].index(name))
    table = Table(box=None, header_style="bold", pad_edge=False)
    for i in shown:
        name, justify = RUNS_COLUMNS[i]
        table.add_column(name, justify=justify, no_wrap=True, min_width=widths[i])
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    console.print(table)


def _say_skipped(summaries: list[runs.RunSummary]) -> None:
    """One stderr line per damaged run (why), and per run whose log held lines that are no valid record."""
    for s in summaries:
        if s.status == "unreadable":
            warn(f"{s.run_dir} is unreadable: {s.problem}")
        elif s.problem:
            warn(f"{s.run_id} is damaged: {s.problem}; `gpt-cockpit resume {s.run_id}` rebuilds it")
        if s.skipped:
            warn(
                f"{s.run_id}: skipped {s.skipped} unreadable line(s) at the end of "
                f"{s.run_dir / rundir.EVENTS_JSONL}"
            )


def _open_app(args: argparse.Namespace, run_dir: Path) -> int:
    """Open the app on the run screen of `run_dir`."""
    from cockpit.tui.app import cmd_app

    args.attach = str(run_dir)
    return int(cmd_app(args) or 0)


def cmd_attach(args: argparse.Namespace) -> int:
    """Watch a run: its history, then live until it ends (text with --no-ui, else the app)."""
    run_dir = _find(args)
    if run_dir is None:
        return EXIT_USAGE
    try:
        rundir.read_run_info(run_dir)
    except rundir.RunUnreadable as exc:
        error(str(exc))
        return EXIT_USAGE
    except rundir.RunError:
        pass  # a damaged run (no or a corrupt run.json) is still followed from its event log
    if not getattr(args, "no_ui", False):
        return _open_app(args, run_dir)
    from cockpit.headless import follow_run

    info(f"attached to {run_dir}; Ctrl-C detaches (the run goes on; `gpt-cockpit stop` stops it)")
    try:
        return follow_run(run_dir, stop_on_signal=False)
    except KeyboardInterrupt:
        info(f"detached from {run_dir}")
        return EXIT_OK


def _status_or_rebuilt(run_dir: Path) -> str:
    """The run's status; a missing or unreadable run.json is rebuilt first (RunError if it cannot be)."""
    try:
        return rundir.run_status(run_dir)
    except rundir.RunUnreadable:
        raise  # a permission problem: a new run.json would not make the run ours to read
    except rundir.RunError as exc:
        if rundir.lock_holder(run_dir) is not None:
            raise  # its trainer lives and rewrites it: nothing to rebuild
        rundir.rebuild_run_info(run_dir, str(exc))
        info(
            f"{exc}; rebuilt run.json from preset.json (the damaged one is kept as run.json.damaged)"
        )
        return rundir.run_status(run_dir)


HOLDER_WAIT_S = 5.0  # a run another command is starting: how long to wait for its trainer's lock


def _trainer_of(run_dir: Path) -> int | None:
    """The pid that trains `run_dir`; a run still starting (another resume launched it a moment
    ago) is given a few seconds for its trainer to take the lock, so the refusal can name it."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    while True:
        holder = rundir.lock_holder(run_dir)
        if holder or time.monotonic() > deadline:
            return holder
        status = rundir.run_status(run_dir)
        if status != "starting":
            # A trainer takes the lock before it says `running`: look once more (it may have
            # done both since the look above); a running run with no holder gets none by waiting.
            return rundir.lock_holder(run_dir) if status == "running" else None
        time.sleep(0.1)


def _model_file_change(run_dir: Path, *, force: bool) -> ModelFileChange | None:
    """Your own model's file as changed since the run started, where --force accepts it;
    RunError with the one line when it refuses (a file that is gone: even with --force)."""
    from cockpit.runs.prelaunch import model_file_problem

    changed = model_file_problem(run_dir)
    if changed and (changed.now is None or not force):
        raise rundir.RunError(changed.line)
    return changed


def cmd_resume(args: argparse.Namespace) -> int:
    """Continue a stopped or crashed run from its last checkpoint."""
    run_dir = _find(args)
    if run_dir is None:
        return EXIT_USAGE
    try:
        status = _status_or_rebuilt(run_dir)
    except rundir.RunError as exc:
        error(str(exc))
        return EXIT_USAGE
    if status in rundir.LIVE_STATUSES:
        holder = _trainer_of(run_dir)  # a trainer holds it: say whose, as the child would
        error(
            rundir.busy_message(run_dir, holder)
            if holder
            else f"{run_dir.name} is still {status}; attach to it with `gpt-cockpit attach {run_dir.name}`"
        )
        return EXIT_USAGE
    from cockpit.runs.prelaunch import device_problem, resume_problem

    # before --max-steps writes anything: a refused resume changes nothing
    problem = resume_problem(run_dir)
    if problem:
        error(
            f"{problem}; start it again from step 0 with "
            f"`gpt-cockpit --preset {run_dir / rundir.PRESET_JSON}`"
        )
        return EXIT_USAGE
    force = bool(getattr(args, "force", False))
    max_steps = getattr(args, "max_steps", None)
    try:
        changed = _model_file_change(run_dir, force=force)
        if max_steps is not None:
            runs.raise_max_steps(run_dir, max_steps)
        preset = rundir.load_run_preset(run_dir)
    except (PresetError, rundir.RunError) as exc:
        error(str(exc))
        return EXIT_USAGE
    if status == "finished" and max_steps is None:
        error(
            f"{run_dir.name} already finished at train.max_steps={preset.train.max_steps}; pass --max-steps N to train further"
        )
        return EXIT_USAGE
    device = getattr(args, "device", None) or "auto"
    problem = device_problem(device)
    if problem:
        error(problem)
        return EXIT_USAGE
    ranks = runs.ranks_of_run(run_dir)  # the same world size: the checkpoint's ranks resume
    if getattr(args, "nproc", None) is not None:
        try:
            ranks = dataclasses.replace(ranks, nproc=runs.resolve_nproc(args.nproc))
        except ValueError as exc:
            error(str(exc))
            return EXIT_USAGE
    from cockpit.headless import UsageError, launch_and_follow, memory_check

    try:  # the plan against this machine's memory, before anything starts
        memory_check(preset, device, ranks.nproc, force=force)
    except UsageError as exc:
        error(str(exc))
        return EXIT_USAGE
    if changed:  # forced: from now on the run trains with the file as it is, and is checked so
        warn(f"{changed.line.split(', so ')[0]}; resuming with it anyway (--force)")
        rundir.update_run_info(run_dir, model_file=changed.now)
    if getattr(args, "no_ui", False):
        return launch_and_follow(
            run_dir,
            device=device,
            resume=True,
            ranks=ranks,
            whole_process=bool(getattr(args, "whole_process", False)),
        )
    try:
        runs.launch(run_dir, device=device, resume=True, detach=True, ranks=ranks)
    except OSError as exc:
        error(f"cannot start the training process: {exc}")
        return EXIT_FAILED
    return _open_app(args, run_dir)


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop a run gracefully (SIGTERM: checkpoint first) or kill it (SIGKILL)."""
    run_dir = _find(args)
    if run_dir is None:
        return EXIT_USAGE
    kill = bool(getattr(args, "kill", False))
    try:
        status = rundir.run_status(run_dir)
        sent = status in rundir.LIVE_STATUSES and rundir.stop_run(run_dir, kill=kill)
    except rundir.RunError as exc:
        error(str(exc))
        return EXIT_USAGE
    if not sent:
        info(
            f"{run_dir.name} is not running (status {rundir.run_status(run_dir)}); nothing to stop"
        )
        return EXIT_FAILED
    if kill:
        info(f"killed {run_dir.name}; its last steps since the last checkpoint are lost")
    else:
        info(f"asked {run_dir.name} to stop: it finishes this step, writes a checkpoint and exits")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover - for debugging
    sys.exit(cmd_runs(argparse.Namespace(json=False, runs_dir=None)))
