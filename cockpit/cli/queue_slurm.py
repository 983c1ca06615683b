"""The queue on a Slurm cluster: `queue run --on slurm`, `queue plan --on slurm`, the job column.

`queue run --on slurm` runs the same scheduler with the Slurm backend (each entry one sbatch
job; cockpit.campaign.slurm_backend); `queue plan --on slurm` prints the job script each queued
entry would be submitted with; the list shows each Slurm entry's job id and state (cockpit.campaign.view).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cockpit.campaign import planning, slurm
from cockpit.campaign.backend import Backend
from cockpit.campaign.packing import Machine, Refusal
from cockpit.campaign.store import Entry, QueueError
from cockpit.common.diagnostics import EXIT_OK, info
from cockpit.plan.gpu import GpuSpec
from cockpit.plan.presets import PresetError
from cockpit.rundir.layout import fresh_run_path

MachineFn = Callable[[dict[int, int], int], tuple[Machine, dict[int, GpuSpec]]]


def options_of(args: argparse.Namespace) -> slurm.SlurmOptions:
    """The submission options the command line gives (QueueError: one line, when unusable)."""
    opts = slurm.SlurmOptions(
        partition=getattr(args, "partition", None),
        account=getattr(args, "account", None),
        sbatch_args=tuple(getattr(args, "sbatch_args", None) or ()),
    )
    problem = opts.problem()
    if problem:
        raise QueueError(problem)
    return opts


def on_slurm(args: argparse.Namespace) -> bool:
    return getattr(args, "on", "local") == "slurm"


def cluster_spec(args: argparse.Namespace) -> GpuSpec | None:
    """The GPU kind `--gpu` names (its count is Slurm's to give per entry), or None."""
    text = getattr(args, "gpu", None)
    return planning.parse_gpu_request(text)[1] if text else None


def backend_for(args: argparse.Namespace) -> tuple[Backend, MachineFn | None, list[str]]:
    """The backend `queue run` uses, its `machine` (None: this one), and the options that
    repeat it for the detached scheduler. QueueError when Slurm is asked for but absent."""
    if not on_slurm(args):
        from cockpit.campaign.local import LocalBackend

        return LocalBackend(), None, []
    from cockpit.campaign.slurm_backend import SlurmBackend, cluster_machine

    opts = options_of(args)
    problem = slurm.slurm_problem()
    if problem:
        raise QueueError(problem)
    argv = ["--on", "slurm"]
    if opts.partition:
        argv += ["--partition", opts.partition]
    if opts.account:
        argv += ["--account", opts.account]
    argv += [f"--sbatch-arg={a}" for a in opts.sbatch_args]
    if getattr(args, "gpu", None):
        argv += ["--gpu", args.gpu]
    return SlurmBackend(opts), cluster_machine(cluster_spec(args)), argv


def print_job_scripts(entries: list[Entry], args: argparse.Namespace) -> int:
    """`queue plan --on slurm`: the job script each queued entry would be submitted with."""
    from cockpit.campaign.slurm_backend import SlurmBackend, cluster_machine

    opts = options_of(args)
    backend = SlurmBackend(opts)
    machine, specs = cluster_machine(cluster_spec(args))({}, 0)
    todo = [e for e in entries if e.state == "queued"]
    if not todo:
        info("nothing queued to plan; `gpt-cockpit queue add PRESET` adds a run")
        return EXIT_OK
    if slurm.slurm_problem():
        info(f"{slurm.slurm_problem()}; the scripts below are what it would submit")
    for n, entry in enumerate(todo):
        need = planning.need_for(entry, machine, specs, check_launch=True)
        placed = backend.place(need, machine)
        head = f"#{entry.id} {entry.label}"
        if isinstance(placed, Refusal):
            print(f"# {head}: never submitted: {placed.reason}")
            continue
        try:
            preset = planning.entry_preset(entry)
        except (PresetError, OSError, ValueError) as exc:
            print(f"# {head}: never submitted: preset: {exc}")
            continue
        run_dir = _run_dir_for(entry, preset.name)
        entry_for_plan = _with_seconds(entry, need.seconds)
        try:
            req = backend.request(entry_for_plan, run_dir, placed, preset)
        except ValueError as exc:
            print(f"# {head}: never submitted: {exc}")
            continue
        if n:
            print()
        print(f"# ---- {head}: sbatch {req.run_dir / slurm.JOB_SCRIPT}")
        print(slurm.job_script(req, opts), end="")
    return EXIT_OK


def _run_dir_for(entry: Entry, preset_name: str) -> Path:
    """The entry's run directory: its own, else the one a launch now would make."""
    if entry.run_dir:
        return Path(entry.run_dir)
    return fresh_run_path(preset_name, entry.runs_root or None)


def _with_seconds(entry: Entry, seconds: float | None) -> Any:
    """The entry with its planned seconds (what the scheduler's claim records before a start)."""
    import dataclasses

    return dataclasses.replace(entry, planned_seconds=seconds or entry.planned_seconds)
