"""The memory tracer: the trainer's step on fake CUDA tensors, counted without a GPU.

The tracer needs a C++ compiler on a CPU-only torch (it builds a small extension once,
into the repository's .cache/ folder, ignored by git); without one these tests skip and
say so. Each trace runs in its own process, as `gpt-cockpit estimate --exact` runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cockpit.estimate import count_params, estimate, load_traces
from cockpit.presets import apply_overrides, load_preset

ROOT = Path(__file__).resolve().parent.parent
EXT_DIR = ROOT / ".cache" / "fake_cuda"

needs_compiler = pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "c++")) is None and shutil.which("g++") is None,
    reason="no C++ compiler: the tracer cannot build its fake-CUDA extension on a CPU-only torch",
)


@pytest.fixture(autouse=True)
def shared_extension(monkeypatch):
    """Build the extension once for every test (and every run of the suite)."""
    monkeypatch.setenv("GPT_COCKPIT_EXT_DIR", str(EXT_DIR))


def _trace(preset, batches, dtype="bf16"):
    """One trace through the tracer's command line, as `estimate --exact` runs it."""
    cmd = [
        sys.executable,
        "-m",
        "cockpit.train.trace",
        "--preset-json",
        json.dumps(preset.to_dict()),
    ]
    cmd += ["--batches", ",".join(map(str, batches)), "--dtype", dtype]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


TRACE_MANY = """
import json, sys
from cockpit.presets import preset_from_dict
from cockpit.train import trace
trace.enable_fake_cuda()
for preset, batches, dtype in json.loads(sys.stdin.read()):
    print(json.dumps(trace.trace(preset_from_dict(preset), batches, dtype)))
"""


def _trace_many(jobs):
    """Several traces in one process (torch is imported once): [(preset, batches, dtype)] -> results."""
    payload = json.dumps([(p.to_dict(), b, d) for p, b, d in jobs])
    proc = subprocess.run(
        [sys.executable, "-c", TRACE_MANY],
        input=payload,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.strip().splitlines()[-len(jobs) :]]


def _small(name, *overrides):
    base = ["model.n_layer=2", "model.block_size=64"]
    return apply_overrides(load_preset(name), base + list(overrides))


@needs_compiler
def test_gpt_trace_counts_weights_state_and_logits_and_is_linear_in_batch():
    preset = _small("tiny")
    result = _trace(preset, [4, 8, 16])
    p4, p8, p16 = (p["peak_bytes"] for p in result["points"])
    assert p16 - p8 == 2 * (p8 - p4) > 0  # exactly linear in the micro-batch
    assert result["per_sequence_bytes"] == (p16 - p4) // 12
    n = count_params(preset.model)
    for point in result["points"]:
        cats = point["by_category"]
        assert (
            sum(cats.values()) == point["peak_bytes"]
        )  # the categories are the live bytes at the peak
        assert (
            abs(cats["weights"] - 4 * n) < 512 * 64
        )  # fp32 master weights, each tensor rounded to 512
        assert abs(cats["optimizer"] - 8 * n) < 512 * 128  # AdamW's two moments
        assert cats["logits/loss"] > 0
        assert "log_softmax_backward" in point["peak_op"]  # before any gradient of the step exists
        assert point["reserved_bytes"] >= point["peak_bytes"]


@needs_compiler
def test_golf_and_bdh_trace_and_fp32_routes_attention_without_a_t_by_t_matrix():
    golf, bdh, short, long = _trace_many(
        [
            (_small("golf_baseline", "train.grad_accum=1"), [1, 2], "bf16"),
            (_small("bdh_8gb", "model.mlp_internal_dim_multiplier=4"), [1, 2], "bf16"),
            (_small("tiny", "model.block_size=256"), [1, 2], "fp32"),
            (_small("tiny", "model.block_size=512"), [1, 2], "fp32"),
        ]
    )
    assert golf["per_sequence_bytes"] > 0 and bdh["per_sequence_bytes"] > 0
    # memory-efficient attention in fp32: a longer context costs linearly, not quadratically
    assert long["per_sequence_bytes"] < 2.2 * short["per_sequence_bytes"]


@needs_compiler
def test_estimate_exact_traces_once_then_reads_the_cache(capsys):
    from cockpit.__main__ import main

    args = [
        "estimate",
        "tiny",
        "--set",
        "model.n_layer=2",
        "--set",
        "model.block_size=64",
        "--exact",
        "-b",
        "4",
    ]
    assert main(args) == 0
    first = capsys.readouterr()
    assert "tracing tiny" in first.err
    assert "peak live (traced)" in first.out and "log_softmax_backward" in first.out
    preset = _small("tiny")
    traces = load_traces(preset, estimate(preset).dtype)
    assert sorted(traces) == [2, 4]
    assert main(args) == 0
    second = capsys.readouterr()
    assert "tracing" not in second.err and "peak live (traced)" in second.out


def test_exact_without_a_tracer_says_so_in_one_line_and_keeps_the_analytic_figure(
    capsys, monkeypatch
):
    from cockpit import plan_cli
    from cockpit.__main__ import main

    def fake_run(cmd, **_kw):
        return subprocess.CompletedProcess(
            cmd, 3, "", "trace: no C++ compiler to build the fake-CUDA extension\n"
        )

    monkeypatch.setattr(plan_cli.subprocess, "run", fake_run)
    assert main(["estimate", "tiny", "--exact"]) == 0
    captured = capsys.readouterr()
    assert "exact figure unavailable (no C++ compiler" in captured.err
    assert "the analytic figure stands" in captured.err
    assert "total (analytic)" in captured.out and "traced" not in captured.out


def test_no_compiler_is_a_trace_unavailable_error(monkeypatch, tmp_path):
    from cockpit.train import trace

    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(trace.TraceUnavailable, match="no C\\+\\+ compiler"):
        trace.enable_fake_cuda(tmp_path)
