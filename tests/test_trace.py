"""The memory tracer: the trainer's step on fake CUDA tensors, counted without a GPU.

The tracer needs a C++ compiler on a CPU-only torch (it builds a small extension once,
into the repository's .cache/ folder, ignored by git); without one these tests skip and
say so. Every trace of the module runs in one child process (torch and the extension
load once), the tracer's own command line as `gpt-cockpit estimate --exact` starts it
and the check of attention under autocast included.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cockpit.cli.plan import trace_command
from cockpit.plan.estimate import count_params, estimate, load_traces
from cockpit.plan.presets import apply_overrides, load_preset

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


TRACE_MANY = """
import contextlib, io, json, sys
from cockpit.plan.presets import preset_from_dict
from cockpit.train import trace
jobs = json.loads(sys.stdin.read())
trace.enable_fake_cuda()
for job in jobs:
    if job[0] == "argv":  # the tracer's own command line (trace_command), in this process
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = trace.main(job[1])
        print(json.dumps({"code": code, "stdout": out.getvalue()}))
    elif job[0] == "code":  # a check's own code: it prints one JSON line
        exec(job[1], {})
    else:
        preset, batches, dtype = job
        print(json.dumps(trace.trace(preset_from_dict(preset), batches, dtype)))
"""


def _trace_many(jobs):
    """Every trace of this module in one process (torch and the extension load once).

    A job is (preset, batches, dtype) for trace.trace, ("argv", ARGS) for the tracer's
    command line as `estimate --exact` starts it (its exit code and stdout come back), or
    ("code", SOURCE) for a check that prints one JSON line of its own."""
    payload = json.dumps(
        [j if j[0] in ("argv", "code") else (j[0].to_dict(), j[1], j[2]) for j in jobs]
    )
    proc = subprocess.run(
        [sys.executable, "-c", TRACE_MANY],
        input=payload,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        # the extension built once for every run of the suite (a module fixture starts before
        # the autouse `shared_extension` sets this for each test)
        env={**os.environ, "GPT_COCKPIT_EXT_DIR": str(EXT_DIR)},
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.strip().splitlines()[-len(jobs) :]]


def _small(name, *overrides):
    base = ["model.n_layer=2", "model.block_size=64"]
    return apply_overrides(load_preset(name), base + list(overrides))


def _exact_command():
    """What `estimate tiny --exact -b 4` (with two layers, block 64) starts: the tracer's argv."""
    preset = _small("tiny")
    return trace_command(preset, [2, 4], estimate(preset).dtype)


# --------------------------------------------------------------------------- the analytic line holds to the trace

# (label, preset, overrides, micro-batches): every architecture, and each setting that changes the terms
HELD = [
    ("gpt2_124m", "gpt2_124m", ["model.n_layer=2"], [16, 32]),
    # each setting that changes a term, at one micro-batch (the line is held by the cases with two)
    ("gpt accum 2", "tiny", ["model.n_layer=2", "train.grad_accum=2"], [16]),
    ("gpt dropout", "tiny", ["model.n_layer=2", "model.dropout=0.1"], [16]),
    ("gpt fp32", "tiny", ["model.n_layer=2", "train.dtype=fp32"], [16]),
    ("gpt fp16", "tiny", ["model.n_layer=2", "train.dtype=fp16"], [16]),
    ("gpt checkpointing", "tiny", ["model.n_layer=2", "train.activation_checkpointing=true"], [16]),
    ("gpt untied", "tiny", ["model.n_layer=2", "model.tie_embeddings=false"], [16]),
    (
        "golf",
        "golf_baseline",
        ["train.grad_accum=1", "model.n_layer=4", "model.block_size=256"],
        [32, 64],
    ),
    (
        "golf fp32",
        "golf_baseline",
        ["train.grad_accum=1", "model.n_layer=4", "model.block_size=256", "train.dtype=fp32"],
        [32],
    ),
    (
        "gpt streams",  # a byte vocabulary: the peak moves from the logits into the blocks
        "tiny",
        [
            "model.n_layer=2",
            "model.num_streams=4",
            "model.vocab_size=256",
            "model.block_size=256",
            "data.tokenizer=byte",
        ],
        [8, 16],
    ),
    (
        "gpt streams checkpointing",
        "tiny",
        [
            "model.n_layer=2",
            "model.num_streams=4",
            "model.vocab_size=256",
            "model.block_size=256",
            "data.tokenizer=byte",
            "train.activation_checkpointing=true",
        ],
        [8],
    ),
    ("gpt chunked loss", "tiny", ["model.n_layer=2", "model.loss_chunk=512"], [8, 16]),
    (
        "golf chunked loss",
        "golf_baseline",
        ["train.grad_accum=1", "model.n_layer=4", "model.block_size=256", "model.loss_chunk=1024"],
        [32],
    ),
    ("bdh", "bdh_8gb", ["model.n_layer=2"], [4, 8]),
    ("bdh no dropout", "bdh_14gb", ["model.n_layer=2", "model.dropout=0"], [16]),
]


# one process traces every case of this module (torch and the extension load once)
LINEAR = ("linear", "tiny", ["model.n_layer=2", "model.block_size=64"], [4, 8, 16])
SHORT = (
    "fp32 T=256",
    "tiny",
    ["model.n_layer=2", "model.block_size=256", "train.dtype=fp32"],
    [1, 2],
)
LONG = (
    "fp32 T=512",
    "tiny",
    ["model.n_layer=2", "model.block_size=512", "train.dtype=fp32"],
    [1, 2],
)


# golf's attention under autocast, checked in the same process (see the test below)
SDPA_UNDER_AUTOCAST = """
import json, torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from cockpit.train import trace  # fake CUDA is on: this runs in the module's trace process

class Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))

sdpa = trace._route_sdpa("bf16")
out = {}
with FakeTensorMode(allow_non_fake_inputs=True):
    q = torch.empty(2, 4, 64, 16, device="cuda")  # fp32, as golf's q and k after rms_norm
    k = torch.empty_like(q)
    v = torch.empty(2, 4, 64, 16, device="cuda", dtype=torch.bfloat16)
    for label, autocast in (("autocast", True), ("fp32", False)):
        ops = Ops()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast), ops:
            y = sdpa(q, k if autocast else k, v if autocast else v.float(), is_causal=True)
        out[label] = {"ops": ops.names, "dtype": str(y.dtype)}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def traces():
    """Every case of this module traced in one process: label -> (preset, result)."""
    cases = [LINEAR, SHORT, LONG, *HELD]
    presets = [apply_overrides(load_preset(name), ov) for _, name, ov, _ in cases]
    jobs = [(p, case[3], estimate(p).dtype) for p, case in zip(presets, cases, strict=True)]
    *results, exact, sdpa = _trace_many(
        [*jobs, ("argv", _exact_command()[3:]), ("code", SDPA_UNDER_AUTOCAST)]
    )
    out = {case[0]: (p, r) for case, p, r in zip(cases, presets, results, strict=True)}
    out["exact"] = (None, exact)
    out["sdpa"] = (None, sdpa)
    return out


@needs_compiler
def test_gpt_trace_counts_weights_state_and_logits_and_is_linear_in_batch(traces):
    preset, result = traces["linear"]
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
        assert cats["gradients"] == 0 and cats["logits/loss"] > 0
        assert "log_softmax_backward" in point["peak_op"]  # before any gradient of the step exists
        assert point["reserved_bytes"] >= point["peak_bytes"]


@needs_compiler
def test_golf_and_bdh_trace_and_fp32_attention_has_no_t_by_t_matrix(traces):
    for label in ("golf", "bdh"):
        assert traces[label][1]["per_sequence_bytes"] > 0
    # memory-efficient attention in fp32: a longer context costs linearly, not quadratically
    short, long = traces["fp32 T=256"][1], traces["fp32 T=512"][1]
    assert long["per_sequence_bytes"] < 2.2 * short["per_sequence_bytes"]


@needs_compiler
def test_estimate_exact_traces_once_then_reads_the_cache(capsys, monkeypatch, traces):
    from cockpit.__main__ import main
    from cockpit.cli import plan as plan_cli

    answer = traces["exact"][1]  # the tracer's command line, run in the module's trace process
    assert answer["code"] == 0
    started = []

    def tracer_child(cmd, **_kw):
        assert cmd == _exact_command(), cmd
        started.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, answer["stdout"], "")

    monkeypatch.setattr(plan_cli.subprocess, "run", tracer_child)

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
    assert len(started) == 1


def test_exact_without_a_tracer_says_so_in_one_line_and_keeps_the_analytic_figure(
    capsys, monkeypatch
):
    from cockpit.__main__ import main
    from cockpit.cli import plan as plan_cli

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


def test_exact_on_a_compiled_preset_says_the_trace_is_of_the_eager_step(capsys, monkeypatch):
    from cockpit.__main__ import main
    from cockpit.cli import plan as plan_cli

    def tracer_child(cmd, **_kw):
        batches = [int(b) for b in cmd[cmd.index("--batches") + 1].split(",")]
        points = [
            {
                "batch": b,
                "peak_bytes": 10**6 * b,
                "reserved_bytes": 0,
                "reserved_plain_bytes": 0,
                "reserved_expandable_bytes": 0,
                "peak_op": "x",
                "by_category": {},
            }
            for b in batches
        ]
        return subprocess.CompletedProcess(cmd, 0, json.dumps({"points": points}) + "\n", "")

    monkeypatch.setattr(plan_cli.subprocess, "run", tracer_child)
    args = ["estimate", "tiny", "--exact", "-b", "4", "--set", "train.compile=true"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count("the trace is of the eager step") == 1
    assert main([*args, "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["exact"]["eager"] is True
    assert "eager step" in captured.err
    assert main(["estimate", "tiny", "--exact", "-b", "4"]) == 0  # not compiled: no such line
    assert "eager" not in capsys.readouterr().err


def test_no_compiler_is_a_trace_unavailable_error(monkeypatch, tmp_path):
    from cockpit.train import trace

    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(trace.TraceUnavailable, match="no C\\+\\+ compiler"):
        trace.enable_fake_cuda(tmp_path)


@needs_compiler
@pytest.mark.parametrize("label", [case[0] for case in HELD])
def test_analytic_live_bytes_are_within_3_percent_of_the_trace(traces, label):
    preset, result = traces[label]
    for point in result["points"]:
        analytic = estimate(preset, batch_size=point["batch"]).memory.live_bytes
        error = (analytic - point["peak_bytes"]) / point["peak_bytes"]
        assert abs(error) <= 0.03, f"{label} at micro-batch {point['batch']}: {100 * error:+.1f}%"


@needs_compiler
def test_mixed_dtype_attention_under_autocast_is_cast_first_and_runs_flash(traces):
    """Golf's q and k are fp32 and v bf16 at attention: on a GPU autocast casts all three to bf16
    and flash runs; the tracer once chose from q's dtype and traced fp32 memory-efficient
    attention (+9% on golf_baseline)."""
    got = traces["sdpa"][1]  # run in the module's trace process
    under = got["autocast"]
    assert any("flash" in op for op in under["ops"]), under["ops"]
    assert not any("efficient" in op for op in under["ops"])
    assert under["dtype"] == "torch.bfloat16"
    plain = got["fp32"]  # without autocast fp32 stays fp32: memory-efficient attention
    assert any("efficient" in op for op in plain["ops"]) and plain["dtype"] == "torch.float32"
