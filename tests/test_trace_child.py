"""Running the tracer child without torch in this process: success, failure lines, cancel, cache."""

from __future__ import annotations

import json
import sys
import time

import pytest

from cockpit.plan import trace_child
from cockpit.plan.estimate import load_traces
from cockpit.plan.presets import load_preset
from cockpit.plan.trace_child import NO_TORCH, TraceOutcome, ensure_traced, run_trace_child


def child(monkeypatch, code: str) -> None:
    """Replace the tracer's command with a small Python program."""
    monkeypatch.setattr(trace_child, "trace_command", lambda *_a: [sys.executable, "-c", code])


def test_a_trace_child_gives_its_points(monkeypatch):
    points = [{"batch": 4, "peak_bytes": 1000}]
    child(monkeypatch, f"print('noise'); print({json.dumps(json.dumps({'points': points}))})")
    outcome = run_trace_child(load_preset("tiny"), [4], "bf16")
    assert outcome.ok and outcome.points == points


@pytest.mark.parametrize(
    ("code", "reason", "unavailable"),
    [
        (
            "import sys; print('trace: no C++ compiler to build it', file=sys.stderr); sys.exit(3)",
            "no C++ compiler to build it",
            True,
        ),
        ("import torch_is_not_here_at_all as torch", "", False),
        ("raise ModuleNotFoundError(\"No module named 'torch'\")", NO_TORCH, True),
        ("print('not json')", "the tracer's output did not parse", False),
    ],
)
def test_a_failed_child_is_one_line(monkeypatch, code, reason, unavailable):
    child(monkeypatch, code)
    outcome = run_trace_child(load_preset("tiny"), [4], "bf16")
    assert not outcome.ok and "\n" not in outcome.reason
    assert outcome.unavailable is unavailable
    if reason:
        assert outcome.reason == reason
    else:
        assert "torch_is_not_here_at_all" in outcome.reason


def test_cancelling_kills_the_child_at_once(monkeypatch):
    child(monkeypatch, "import time; time.sleep(60)")
    start = time.monotonic()
    outcome = run_trace_child(
        load_preset("tiny"), [4], "bf16", lambda: time.monotonic() - start > 0.3
    )
    assert outcome.cancelled and not outcome.ok
    assert time.monotonic() - start < 10


def test_ensure_traced_runs_only_what_the_cache_lacks():
    preset = load_preset("tiny")
    calls = []

    def runner(p, batches, dtype, cancelled):
        calls.append(batches)
        return TraceOutcome(
            points=[
                {
                    "batch": b,
                    "peak_bytes": 100 * b,
                    "reserved_plain_bytes": 110 * b,
                    "reserved_expandable_bytes": 105 * b,
                }
                for b in batches
            ]
        )

    assert ensure_traced(preset, "bf16", 8, runner).ok
    assert calls == [[4, 8]] and sorted(load_traces(preset, "bf16")) == [4, 8]
    assert ensure_traced(preset, "bf16", 8, runner).points == []  # all cached: no child
    ensure_traced(preset, "bf16", 16, runner)
    assert calls == [[4, 8], [16]]  # 8 was traced already


def test_points_traced_before_the_allocator_model_are_traced_again():
    """A cached point without the allocator model's reserved figures is stale: not used."""
    from cockpit.plan.estimate import save_traces

    preset = load_preset("tiny")
    save_traces(preset, "bf16", [{"batch": 4, "peak_bytes": 400}, {"batch": 8, "peak_bytes": 800}])
    assert load_traces(preset, "bf16") == {}
