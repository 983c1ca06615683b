"""This machine's CPU speed from finished runs: what real CPU runs did replaces the calibration.

No torch. A finished CPU run on this host with the torch installed here gives one figure:
the median tokens/s of its step records (the last 64 KiB of events.jsonl) times its model's
training FLOPs per token. cockpit.plan.host keeps the median of the newest few as the speed
a CPU ETA divides by.
"""

from __future__ import annotations

import os
import platform
import statistics

from cockpit import rundir
from cockpit.plan.estimate import flops_per_token
from cockpit.plan.host import CpuSpeed, record_run_speeds, torch_version
from cockpit.plan.presets import PresetError
from cockpit.runs import list_runs

RUNS_READ = 5  # the newest finished CPU runs a speed is the median of


def run_speed_samples(
    root: str | os.PathLike[str] | None = None, limit: int = RUNS_READ
) -> list[tuple[str, float]]:
    """(run id, training FLOP/s) of the newest finished CPU runs on this host and torch version."""
    host, torch = platform.node(), torch_version()
    out: list[tuple[str, float]] = []
    for summary in list_runs(root, note=lambda _line: None):
        if len(out) >= limit:
            break
        if summary.status != "finished":
            continue
        try:
            info = rundir.read_run_info(summary.run_dir)
            if info.device != "cpu" or info.host != host:
                continue
            if (info.versions or {}).get("torch") != torch or (info.world_size or 1) > 1:
                continue
            preset = rundir.load_run_preset(summary.run_dir)
        except (rundir.RunError, PresetError, OSError):
            continue
        records, _ = rundir.read_tail(summary.run_dir / rundir.EVENTS_JSONL)
        rates = []
        for record in records:
            event = rundir.parse_event(record)
            if isinstance(event, rundir.StepEvent) and event.tokens_per_s:
                rates.append(float(event.tokens_per_s))
        if len(rates) >= 3:  # the first steps (warm-up) are a few of many
            out.append((summary.run_id, statistics.median(rates) * flops_per_token(preset.model)))
    return out


def refresh_cpu_speed(root: str | os.PathLike[str] | None = None) -> CpuSpeed | None:
    """The cached speed, replaced by finished runs' when there are any (None when neither)."""
    from cockpit.plan.host import load_cpu_speed

    samples = run_speed_samples(root)
    return record_run_speeds(samples) if samples else load_cpu_speed()
