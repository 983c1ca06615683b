"""Running the memory tracer (`python -m cockpit.train.trace`) as a child process, and its cache.

No torch here: the CLI (`estimate --exact`) and the app (the editor's exact figure) start the
tracer as a child, so torch loads in that process only. The child's points are kept per preset
shape (cockpit.plan.estimate.save_traces), and `estimate()` reads them from there: once a shape is
traced at two micro-batches, every later estimate of that shape is the traced line at once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cockpit.arch import is_own_model
from cockpit.plan.estimate import load_traces, save_traces
from cockpit.plan.measure import absolute, ensure_measured, load_measured, save_measured
from cockpit.plan.presets import Preset

NO_TORCH = "torch is not installed here (pip install torch)"


@dataclass
class TraceOutcome:
    """What a trace gave: its points (one dict per micro-batch), or one line saying why not."""

    points: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, Any] | None = None  # your own model's measured figures (plan/measure.py)
    reason: str = ""  # empty when it worked
    cancelled: bool = False  # stopped because a newer request replaced it: not a failure
    unavailable: bool = False  # this machine cannot trace at all (no compiler, no torch)

    @property
    def ok(self) -> bool:
        return not self.reason and not self.cancelled


# (preset, micro-batches, dtype, cancelled?) -> outcome; the app takes one of these as a service
TraceRunner = Callable[[Preset, list[int], str, Callable[[], bool]], TraceOutcome]


def child_command(module: str, preset: Preset, batches: list[int], *extra: str) -> list[str]:
    """The argv of a planning child (the tracer, the probe) for `preset` at `batches`."""
    return [
        sys.executable,
        "-m",
        module,
        "--preset-json",
        json.dumps(absolute(preset).to_dict()),  # your own model's file found from anywhere
        "--batches",
        ",".join(map(str, batches)),
        *extra,
    ]


def trace_command(preset: Preset, batches: list[int], dtype: str) -> list[str]:
    """The argv of the memory tracer child for `preset` at `batches` (cockpit/train/trace.py)."""
    return child_command("cockpit.train.trace", preset, batches, "--dtype", dtype)


def trace_batches(batch: int) -> list[int]:
    """The micro-batch asked for and a second one, for the fixed + per-sequence line."""
    return sorted({batch, batch * 2 if batch < 2 else batch // 2})


def failure_reason(stderr: str) -> str:
    """The child's one line on why it could not trace (its last stderr line, or a missing torch)."""
    if "No module named 'torch'" in stderr:
        return NO_TORCH
    return (stderr.strip().splitlines() or ["no output"])[-1].removeprefix("trace: ")


def run_trace_child(
    preset: Preset,
    batches: list[int],
    dtype: str,
    cancelled: Callable[[], bool] = lambda: False,
    *,
    poll_s: float = 0.1,
    timeout_s: float = 600.0,
) -> TraceOutcome:
    """Start the tracer child and wait for it; kill it as soon as `cancelled()` turns true."""
    try:
        proc = subprocess.Popen(
            trace_command(preset, batches, dtype),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    except OSError as exc:
        return TraceOutcome(reason=f"cannot start the tracer: {exc}", unavailable=True)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            out, err = proc.communicate(timeout=poll_s)
            break
        except subprocess.TimeoutExpired:
            if cancelled() or time.monotonic() > deadline:
                proc.kill()
                proc.communicate()
                if cancelled():
                    return TraceOutcome(cancelled=True)
                return TraceOutcome(reason=f"the tracer took over {timeout_s:.0f} s")
    if proc.returncode != 0:
        why = failure_reason(err)
        return TraceOutcome(reason=why, unavailable=proc.returncode == 3 or why == NO_TORCH)
    try:
        result = json.loads(out.strip().splitlines()[-1])
        return TraceOutcome(points=result["points"], figures=result.get("figures"))
    except (ValueError, KeyError, IndexError, TypeError):
        return TraceOutcome(reason="the tracer's output did not parse")


def ensure_traced(
    preset: Preset,
    dtype: str,
    batch: int,
    runner: TraceRunner = run_trace_child,
    cancelled: Callable[[], bool] = lambda: False,
) -> TraceOutcome:
    """Trace what the cache lacks of `preset` at `batch` (and its line's second point), and keep it.

    Returns the outcome of the child (no points and no reason when the cache had them all)."""
    own = is_own_model(preset.model.arch)
    cached = load_traces(preset, dtype)
    missing = [b for b in trace_batches(batch) if b not in cached]
    if not missing:
        if own and load_measured(preset.model) is None:  # traced, but the figures were not kept
            problem = ensure_measured(preset)
            return TraceOutcome(reason=problem or "")
        return TraceOutcome()
    outcome = runner(preset, missing, dtype, cancelled)
    if outcome.ok and outcome.points:
        save_traces(preset, dtype, outcome.points)
    if outcome.ok and outcome.figures is not None:
        save_measured(preset.model, outcome.figures)
    return outcome
