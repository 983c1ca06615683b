"""The top-level flags as the app uses them: `gpt-cockpit --preset X --set K=V` without --no-ui
opens the editor on that preset with them applied, checked first as --no-ui checks them."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

from cockpit.plan.presets import Preset


@dataclass
class StartFlags:
    """What the top-level flags ask of the app: a preset for the editor, a what-if GPU."""

    preset: Preset | None = None  # the preset with --set, --max-steps and --data applied
    base: Preset | None = None  # the named preset as it is (the editor's revert)
    applied: list[str] = field(default_factory=list)  # the flags used, as typed
    unused: list[str] = field(default_factory=list)  # the flags only a headless run uses
    gpu_choice: int = -1  # --gpu as an index into the catalog (-1: this machine's GPU)


def unused_line(unused: list[str]) -> str:
    return f"not used by the app: {' '.join(unused)} (they apply with --no-ui)"


def flags_for_app(args: argparse.Namespace) -> StartFlags:
    """The top-level flags as the app uses them, checked as --no-ui checks them.

    Raises PresetError, UsageError (cockpit.headless) or ValueError (an unknown --gpu) for a bad
    value, before the app opens. Flags that only a headless run uses are listed, not dropped.
    """
    from cockpit.headless import DEFAULT_PRESET, resolve_preset
    from cockpit.plan.gpu import CATALOG, lookup_gpu
    from cockpit.plan.presets import PresetError, load_preset

    start = StartFlags()
    gpu = getattr(args, "gpu", None)
    if gpu:
        spec = lookup_gpu(gpu)
        if spec is None:
            names = ", ".join(s.name for s in CATALOG)
            raise ValueError(f"--gpu: unknown GPU {gpu!r}; known: {names}")
        start.gpu_choice = CATALOG.index(spec)
    named = getattr(args, "preset", None)
    overrides = list(getattr(args, "overrides", None) or [])
    max_steps, data = getattr(args, "max_steps", None), getattr(args, "data", None)
    if named or overrides or max_steps is not None or data:
        start.preset = resolve_preset(args)
        try:  # revert goes back to the preset as named, before the flags
            start.base = load_preset(named or DEFAULT_PRESET)
        except PresetError:
            start.base = start.preset
        if start.base.name == start.preset.name:  # still that preset, edited: built-in or user
            start.preset = dataclasses.replace(
                start.preset, builtin=start.base.builtin, source_path=start.base.source_path
            )
        start.applied = [f"--set {o}" for o in overrides]
        if max_steps is not None:
            start.applied.append(f"--max-steps {max_steps}")
        if data:
            start.applied.append(f"--data {data}")
    for flag, value, default in (
        ("--device", getattr(args, "device", "auto"), "auto"),
        ("--run-dir", getattr(args, "run_dir", None), None),
        ("--nproc", getattr(args, "nproc", None), None),
        ("--nnodes", getattr(args, "nnodes", 1), 1),
        ("--node-rank", getattr(args, "node_rank", 0), 0),
        ("--rdzv-endpoint", getattr(args, "rdzv_endpoint", ""), ""),
    ):
        if value not in (default, None):
            start.unused.append(f"{flag} {value}")
    return start
