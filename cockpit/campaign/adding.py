"""What `queue add` (and the app's add and sweep dialogs) turn into entries, checked first.

The whole request is checked before the one transaction that adds it: the preset, every
override, every combination of a sweep (each must validate as a preset and pass the
pre-launch checks), so a bad value never leaves half a sweep in the queue.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cockpit.campaign.store import Entry, NewEntry, Queue, QueueError
from cockpit.plan.presets import (
    Preset,
    PresetError,
    apply_overrides,
    load_preset,
    parse_override,
    resolve_field_path,
)


def parse_sets(texts: list[str]) -> dict[str, Any]:
    """--set K=V texts as {dotted field path: value}; PresetError names a bad one."""
    out: dict[str, Any] = {}
    for text in texts:
        key, value = parse_override(text)
        out[resolve_field_path(key)] = value
    return out


def parse_sweeps(texts: list[str]) -> list[tuple[str, list[Any]]]:
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


def grid(sweeps: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    """Every combination of the sweeps' values ([{}] without a sweep)."""
    keys = [k for k, _ in sweeps]
    combos = [
        dict(zip(keys, values, strict=True))
        for values in itertools.product(*[v for _, v in sweeps])
    ]
    return combos or [{}]


def preset_ref(name: str) -> str:
    """How an entry names its preset: a file by its absolute path, a name as typed."""
    path = Path(name)
    if name.endswith(".json") or path.is_file():
        return str(path.resolve())
    return name


def label(name: str, combo: dict[str, Any], base: str) -> str:
    """An entry's label in a sweep: "lr-sweep[lr=0.001]"."""
    sets = ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in combo.items())
    return f"{name or base}[{sets}]" if sets else (name or "")


@dataclass
class Request:
    """One `queue add`: a preset, overrides, sweeps, where and in which order to run."""

    preset: str  # a name, or a path to a preset .json
    sets: dict[str, Any] = field(default_factory=dict)  # dotted path -> value
    sweeps: list[tuple[str, list[Any]]] = field(default_factory=list)
    device: str = "any"  # "any" | "cpu" | "gpu"
    gpus: int = 1
    priority: int = 0
    after: int | None = None
    name: str = ""  # the group's name for a sweep, else the entry's label
    workdir: str = ""
    runs_root: str = ""
    prune: str = ""  # a sweep's pruning policy ("median", "halving"), kept as group metadata


def checked(request: Request) -> tuple[Preset, list[dict[str, Any]]]:
    """The base preset and the combinations, every one validated and launchable.

    PresetError or QueueError (one line) for the first that is not.
    """
    from cockpit.runs.prelaunch import launch_problem

    preset = load_preset(request.preset)
    base = apply_overrides(preset, request.sets) if request.sets else preset
    combos = grid(request.sweeps)
    for combo in combos:
        try:
            resolved = apply_overrides(base, combo) if combo else base
        except PresetError as exc:
            shown = " ".join(f"{k}={v}" for k, v in combo.items())
            raise QueueError(f"{shown}: {exc}" if shown else str(exc)) from None
        problem = launch_problem(resolved)
        if problem:
            raise QueueError(problem)
    return preset, combos


def add(queue: Queue, request: Request) -> list[Entry]:
    """Check `request` whole, then add its entries in one transaction; the entries added.

    A sweep's group is `request.name`, or the first free PRESET-sweepN, chosen inside the
    transaction that adds it, so two shells adding sweeps at once never share a group."""
    preset, combos = checked(request)
    sweep = bool(request.sweeps)
    new = [
        NewEntry(
            preset=preset_ref(request.preset),
            overrides={**request.sets, **combo},
            device=request.device,
            gpus=request.gpus,
            priority=request.priority,
            after=request.after,
            name=label("{group}", combo, preset.name) if sweep else request.name,
            workdir=request.workdir,
            runs_root=request.runs_root,
        )
        for combo in combos
    ]
    if sweep:
        added = queue.add(new, group=request.name or None, group_base=preset.name)
    else:
        added = queue.add(new)
    group = added[0].group
    if group and request.prune:
        queue.set_meta(prune_key(group), request.prune)
    return added


def prune_key(group: str) -> str:
    """The queue metadata key that holds a sweep group's pruning policy."""
    return f"prune:{group}"


def prune_policies(queue: Queue) -> dict[str, str]:
    """Each sweep group's pruning policy, as `queue add --prune` recorded it."""
    out = {}
    for group in queue.groups():
        policy = queue.get_meta(prune_key(group))
        if policy:
            out[group] = str(policy)
    return out
