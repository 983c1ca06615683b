"""Headless mode: launch the training child and turn its events into lines.

stdout carries only step and eval lines (data a script can parse); everything
else (the run directory, samples, checkpoints, warnings, the end) goes to stderr.
The same follower serves `gpt-cockpit --no-ui`, `attach --no-ui` and `resume --no-ui`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cockpit import rundir, runs
from cockpit.common import diagnostics
from cockpit.common.diagnostics import (
    EXIT_FAILED,
    EXIT_USAGE,
    error,
    info,
)
from cockpit.common.format import (
    counted,
)
from cockpit.headless.follow import Follower, SignalScope, follow_run
from cockpit.plan.presets import (
    Preset,
    PresetError,
    apply_overrides,
    builtin_dir,
    load_preset,
    user_dir,
)
from cockpit.runs import prelaunch

__all__ = [
    "DEFAULT_PRESET",
    "Follower",
    "UsageError",
    "apply_golf_env",
    "cmd_headless",
    "follow_run",
    "launch_and_follow",
    "memory_check",
    "print_other_nodes",
    "ranks_from_args",
    "resolve_preset",
    "with_max_steps",
]

DEFAULT_PRESET = "tiny_char"


class UsageError(Exception):
    """Bad arguments, preset or data path: nothing was started (exit 2)."""


# --------------------------------------------------------------------------- preset


def with_max_steps(
    preset: Preset, max_steps: int, say: Callable[[str], None] | None = None
) -> Preset:
    """The preset with train.max_steps set; warmup/warmdown/min-lr hold shrink with it if they
    no longer fit, said through `say` (default: a line on stderr; the app passes its own)."""
    t = preset.train
    changes: dict[str, Any] = {"train.max_steps": max_steps}
    if max_steps >= 1 and t.warmup_steps >= max_steps:
        changes["train.warmup_steps"] = max_steps // 10  # keep the preset's shape: a short warmup
    warmup = changes.get("train.warmup_steps", t.warmup_steps)
    if max_steps >= 1 and t.schedule == "warmdown" and warmup + t.warmdown_steps > max_steps:
        changes["train.warmdown_steps"] = max(0, min(t.warmdown_steps, max_steps - warmup))
    if max_steps >= 1 and warmup + t.min_lr_hold_steps > max_steps:
        changes["train.min_lr_hold_steps"] = max(0, min(t.min_lr_hold_steps, max_steps - warmup))
    result = apply_overrides(preset, changes)
    if len(changes) > 1:
        shrunk = ", ".join(f"{k}={v}" for k, v in changes.items() if k != "train.max_steps")
        (say or info)(f"{shrunk} so the schedule fits in {counted(max_steps, 'step')}")
    return result


def resolve_preset(args: argparse.Namespace) -> Preset:
    """--preset, then --set, --max-steps and --data; raises PresetError or UsageError."""
    name = getattr(args, "preset", None)
    if name:
        preset = load_preset(name)
    else:
        try:
            preset = load_preset(DEFAULT_PRESET)
        except PresetError:
            if any(
                (folder / f"{DEFAULT_PRESET}.json").exists()
                for folder in (builtin_dir(), user_dir())
            ):
                raise  # it is there but broken: say why rather than train something else
            info(f"preset {DEFAULT_PRESET!r} is not installed; using the built-in defaults")
            preset = Preset(name=DEFAULT_PRESET)
    overrides = list(getattr(args, "overrides", None) or [])
    if overrides:
        preset = apply_overrides(preset, overrides)
    preset = apply_golf_env(preset, args, overrides)
    max_steps = getattr(args, "max_steps", None)
    if max_steps is not None:
        if max_steps < 1:
            raise PresetError("train.max_steps", f"must be at least 1, not {max_steps}")
        preset = with_max_steps(preset, max_steps)
    data = getattr(args, "data", None)
    if data:
        problem = prelaunch.source_problem(data)
        if problem:
            raise UsageError(f"--data: {problem}")
        # Absolute, so `resume` from another directory still finds it.
        source = data if data == "default" else os.path.abspath(os.path.expanduser(data))
        preset = apply_overrides(preset, {"data.source": source})
    problem = prelaunch.launch_problem(preset)
    if problem:
        raise UsageError(
            problem
            + (" (pass --data PATH)" if problem.startswith("data.source") and not data else "")
        )
    source = (
        preset.data.source
    )  # the preset's own (or a --set one): absolute, so `resume` elsewhere finds it
    if source != "default" and not os.path.isabs(source):
        preset = apply_overrides(
            preset, {"data.source": os.path.abspath(os.path.expanduser(source))}
        )
    model_file = preset.data.tokenizer_model  # absolute too, for the same reason
    if model_file and not os.path.isabs(model_file):
        preset = apply_overrides(
            preset, {"data.tokenizer_model": os.path.abspath(os.path.expanduser(model_file))}
        )
    return preset


def apply_golf_env(preset: Preset, args: argparse.Namespace, overrides: list[str]) -> Preset:
    """Seed 001's environment variables over a golf preset (cockpit.plan.golf_env), said in lines.

    --set, --max-steps and --data win over the environment. What applied is kept on
    `args.golf_env_overrides`, for the launch to record in run.json's overrides.
    """
    from cockpit.plan.golf_env import env_overrides
    from cockpit.plan.presets import parse_override, resolve_field_path

    keep = {resolve_field_path(parse_override(o)[0]) for o in overrides}
    if getattr(args, "max_steps", None) is not None:
        keep.add("train.max_steps")
    if getattr(args, "data", None):
        keep.add("data.source")
    found = env_overrides(preset, os.environ, keep=keep)
    for line in found.warnings:
        diagnostics.warn(line)
    for line in found.notes:
        info(line)
    args.golf_env_overrides = found.overrides
    if not found.overrides:
        return preset
    info("from the environment: " + ", ".join(f"{k}={v}" for k, v in found.overrides.items()))
    return apply_overrides(preset, found.overrides)


def ranks_from_args(args: argparse.Namespace) -> runs.Ranks:
    """--nproc, --nnodes, --node-rank, --rdzv-endpoint as runs.Ranks; UsageError when they cannot be."""
    try:
        nproc = runs.resolve_nproc(getattr(args, "nproc", None))
    except ValueError:
        raise UsageError(
            f"--nproc must be a number of processes or auto, not {args.nproc!r}"
        ) from None
    ranks = runs.Ranks(
        nproc=nproc,
        nnodes=int(getattr(args, "nnodes", 1) or 1),
        node_rank=int(getattr(args, "node_rank", 0) or 0),
        endpoint=str(getattr(args, "rdzv_endpoint", "") or ""),
    )
    problem = ranks.problem()
    if problem:
        raise UsageError(problem)
    if ranks.node_rank != 0:
        raise UsageError(
            "the cockpit launches node 0 (rank 0 writes the run directory); on the other nodes run "
            "the command it prints"
        )
    return ranks


def print_other_nodes(run_dir: Path, ranks: runs.Ranks, *, device: str, resume: bool) -> None:
    """For a run on several machines: the exact command to start on each other node."""
    lines = runs.other_node_commands(run_dir, ranks, device=device, resume=resume)
    if lines:
        info(f"run on each other node (the run directory {run_dir} must be on a path they share):")
        for line in lines:
            print(f"  {line}", file=sys.stderr, flush=True)


def memory_check(preset: Preset, device: str, nproc: int, *, force: bool) -> None:
    """UsageError when the plan does not fit this machine's memory (prelaunch.plan_problem),
    unless --force; with --force the problem is said and the launch goes on."""
    problem = prelaunch.plan_problem(preset, device, nproc)
    if problem is None:
        return
    if not force:
        raise UsageError(problem)
    diagnostics.warn(f"{problem.split('; ')[0]}; launching anyway (--force)")


def launch_and_follow(
    run_dir: Path,
    *,
    device: str,
    resume: bool = False,
    ranks: runs.Ranks | None = None,
    whole_process: bool = False,
) -> int:
    """Start the child in our process group and follow it (headless and `resume --no-ui`).

    Several ranks run under torchrun in a session of its own; a stop goes to rank 0. With
    `whole_process` (the command line, not a caller in-process) the process ends with the run,
    so a Ctrl-C that lands after its end is ignored."""
    try:  # a resumed run prints only what this launch writes
        offset = (run_dir / rundir.EVENTS_JSONL).stat().st_size if resume else 0
    except OSError:
        offset = 0
    follower = Follower(run_dir, offset=offset)
    # Our handlers go in before the spawn, so a Ctrl-C at any moment is a stop request, never a
    # traceback.
    with SignalScope(follower, last=whole_process):
        try:
            handle = runs.launch(run_dir, device=device, resume=resume, detach=False, ranks=ranks)
        except OSError as exc:
            error(f"cannot start the training process: {exc}")
            return EXIT_FAILED
        follower.process = handle.process
        follower.ranks = bool(ranks and ranks.torchrun)
        on = f" on {ranks.world_size} ranks (torchrun)" if follower.ranks and ranks else ""
        info(f"run {run_dir} (pid {handle.pid}){on}; Ctrl-C stops with a checkpoint")
        if ranks is not None and ranks.nnodes > 1:
            print_other_nodes(run_dir, ranks, device=device, resume=resume)
        return follower.follow()


def cmd_headless(args: argparse.Namespace) -> int:
    """`gpt-cockpit --no-ui`: resolve the preset, create the run, train and print lines."""
    try:
        ranks = ranks_from_args(args)
        preset = resolve_preset(args)
        device = getattr(args, "device", "auto") or "auto"
        problem = prelaunch.device_problem(device)
        if problem:
            raise UsageError(problem)
        memory_check(preset, device, ranks.nproc, force=bool(getattr(args, "force", False)))
        run_dir = rundir.create_run_dir(
            preset, getattr(args, "run_dir", None), root=getattr(args, "runs_dir", None)
        )
        env_overrides = getattr(args, "golf_env_overrides", None)
        if env_overrides:  # recorded where they came from; preset.json already holds them
            rundir.update_run_info(run_dir, overrides=dict(env_overrides))
    except (PresetError, UsageError, rundir.RunError) as exc:
        error(str(exc))
        return EXIT_USAGE
    except OSError as exc:  # a read-only --runs-dir, a name too long, no permission, a full disk
        where = (
            exc.filename
            or getattr(args, "run_dir", None)
            or rundir.runs_root(getattr(args, "runs_dir", None))
        )
        error(f"cannot create the run directory in {where}: {exc.strerror or exc}")
        return EXIT_USAGE
    return launch_and_follow(
        run_dir,
        device=getattr(args, "device", "auto") or "auto",
        ranks=ranks,
        whole_process=bool(getattr(args, "whole_process", False)),
    )
