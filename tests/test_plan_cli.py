"""`gpt-cockpit presets | estimate | gpus | probe`: tables on stdout, one-line errors on stderr, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_gpu import TWO_GPUS, fake_nvml

from cockpit.__main__ import main
from cockpit.cli import plan as plan_cli
from cockpit.plan import gpu as gpu_mod
from cockpit.plan.estimate import count_params, estimate, load_calibration
from cockpit.plan.gpu import GIB, catalog_names, lookup_gpu
from cockpit.plan.presets import list_presets, load_preset


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch):
    """This machine has no GPU unless a test installs a fake NVML."""
    gpu_mod._reset_nvml_for_tests()
    monkeypatch.setitem(sys.modules, "pynvml", None)
    yield
    gpu_mod._reset_nvml_for_tests()


@pytest.fixture
def two_gpus(monkeypatch):
    gpu_mod._reset_nvml_for_tests()
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(TWO_GPUS))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    """The single error line (informational lines may precede it)."""
    lines = [line for line in err.splitlines() if line.startswith("gpt-cockpit: error: ")]
    assert len(lines) == 1, err
    return lines[0]


# --------------------------------------------------------------------------- presets


def test_presets_table_lists_every_builtin_with_exact_params(capsys):
    code, out, err = run(capsys, "presets")
    assert code == 0 and err == ""
    for preset in list_presets():
        assert preset.name in out
        assert f"{count_params(preset.model):,}" in out
    assert "no GPU" in out
    assert "(user)" not in out


def test_presets_table_against_a_catalog_gpu(capsys):
    code, out, _ = run(capsys, "presets", "--gpu", "T4")
    assert code == 0
    assert "peak VRAM / T4 (16.0 GiB)" in out
    peak = estimate(load_preset("gpt2_124m"), lookup_gpu("T4")).peak_bytes
    assert f"{peak / GIB:.1f} GiB" in out


def test_presets_table_uses_this_machines_gpu(capsys, two_gpus):
    code, out, _ = run(capsys, "presets")
    assert code == 0 and "NVIDIA A100-SXM4-80GB (80.0 GiB)" in out


def test_user_presets_are_marked_and_broken_ones_reported(capsys, tmp_path, monkeypatch):
    folder = Path(tmp_path / "config" / "presets")
    monkeypatch.setenv("GPT_COCKPIT_CONFIG", str(tmp_path / "config"))
    folder.mkdir(parents=True)
    (folder / "mine.json").write_text(json.dumps({"extends": "tiny_char", "train": {"lr": 3e-4}}))
    (folder / "broken.json").write_text('{"model": {"n_layer": "six"}}')
    code, out, err = run(capsys, "presets")
    assert code == 0
    assert "mine (user)" in out
    assert "skipped broken.json" in err and "model.n_layer" in err


def test_presets_name_shows_every_field_and_the_estimate(capsys):
    code, out, _ = run(capsys, "presets", "gpt2_124m", "--gpu", "A100-80GB")
    assert code == 0
    for field in ("model.n_layer", "train.lr", "train.warmup_steps", "data.tokenizer"):
        assert field in out
    assert "124,373,760" in out  # tied, no biases, 50304 rows
    assert "fits on A100-80GB" in out and "suggestion:" in out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["presets", "nosuch"], "no preset named 'nosuch'"),
        (["presets", "tiny", "--set", "train.lr=-1"], "train.lr"),
        (["presets", "--gpu", "TPUv9"], "unknown GPU 'TPUv9'"),
        (["estimate", "gpt2_124m", "--gpu", "TPUv9"], "unknown GPU 'TPUv9'"),
        (["estimate", "gpt2_12m"], "did you mean gpt2_124m"),
        (["estimate", "tiny", "--set", "nosuchfield=1"], "unknown field"),
        (["estimate", "tiny", "--set", "lr"], "key=value"),
        (["estimate", "tiny", "--set", "train.lr=NaN"], "NaN is not allowed"),
        (["estimate", "tiny", "--batch-size", "0"], "--batch-size"),
        (["estimate", "tiny", "--headroom", "1.5"], "--headroom"),
    ],
)
def test_errors_are_one_line_and_exit_2(capsys, argv, fragment):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert fragment in one_error_line(err)


def test_unknown_gpu_lists_the_catalog(capsys):
    _, _, err = run(capsys, "estimate", "tiny", "--gpu", "Voodoo2")
    line = one_error_line(err)
    assert all(name in line for name in catalog_names())


# --------------------------------------------------------------------------- estimate


def test_estimate_prints_breakdown_verdict_and_suggestion(capsys):
    code, out, _ = run(capsys, "estimate", "gpt2_124m", "--gpu", "T4")
    assert code == 0
    for part in (
        "weights",
        "gradients",
        "optimizer state",
        "AMP copies",
        "activations (flash/SDPA)",
        "logits + cross-entropy",
        "allocator slack",
        "CUDA context",
        "total (analytic)",
    ):
        assert part in out
    assert "does not fit on T4" in out and "short" in out
    assert "suggestion: --set train.batch_size=" in out
    assert "dtype" in out and "fp16" in out  # T4: no bf16


def test_estimate_without_a_gpu_says_why_a_part_is_0_bytes(capsys):
    code, out, _ = run(capsys, "estimate", "tiny_char")
    assert code == 0
    assert out.splitlines()[0] == "tiny_char for a bf16 GPU (none here; --gpu picks one)"
    assert "gradients (freed before the peak)" in out and "CUDA context (no GPU)" in out
    assert "on no GPU" not in out


def test_estimate_json(capsys):
    code, out, _ = run(
        capsys,
        "estimate",
        "small",
        "--gpu",
        "A100-80GB",
        "--batch-size",
        "8",
        "--set",
        "train.lr=3e-4",
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    assert data["batch_size"] == 8 and data["gpu"] == "A100-80GB" and data["fits"] is True
    assert data["params"] == count_params(load_preset("small").model)
    assert data["memory"]["total_bytes"] == data["peak_bytes"]
    assert data["suggestion"]["micro_batch"] * data["suggestion"]["grad_accum"] >= 32
    assert data["measured"] is False


def test_estimate_json_without_gpu(capsys):
    code, out, _ = run(capsys, "estimate", "tiny_char", "--json")
    data = json.loads(out)
    assert code == 0 and data["gpu"] is None and data["fits"] is None and data["suggestion"] is None


def test_estimate_batch_size_changes_the_peak(capsys):
    _, small, _ = run(capsys, "estimate", "small", "--gpu", "A100-80GB", "-b", "4", "--json")
    _, large, _ = run(capsys, "estimate", "small", "--gpu", "A100-80GB", "-b", "64", "--json")
    assert json.loads(large)["peak_bytes"] > json.loads(small)["peak_bytes"]


def test_estimate_accepts_a_preset_path(capsys, tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"model": {"n_layer": 2}}))
    code, out, _ = run(capsys, "estimate", str(path), "--json")
    assert code == 0 and json.loads(out)["preset_name"] == "x"


# --------------------------------------------------------------------------- gpus


def test_gpus_without_a_gpu(capsys):
    code, out, _ = run(capsys, "gpus")
    assert code == 0
    assert "no GPU on this machine" in out and "not installed" in out
    for name in catalog_names():
        assert name in out


def test_gpus_with_two(capsys, two_gpus):
    code, out, _ = run(capsys, "gpus")
    assert code == 0
    assert "NVIDIA A100-SXM4-80GB" in out and "Tesla T4" in out
    assert "97%" in out and "61 C" in out and "312 W / 400" in out
    assert "cuda:0" in out and "cuda:1" in out  # as a run here numbers them
    assert "19.5 (156)" in out  # the A100's fp32 peak, and TF32's, which fp32 runs at


# --------------------------------------------------------------------------- probe


def test_probe_without_a_gpu_says_so_and_exits_2(capsys):
    code, out, err = run(capsys, "probe", "tiny")
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert "needs a CUDA GPU" in line and "estimate" in line


def test_probe_stores_a_calibration_that_estimate_then_uses(capsys, two_gpus, monkeypatch):
    preset = load_preset("small")
    seen = {}

    def fake_run(cmd, **kwargs):  # noqa: ANN001, ANN003
        seen["cmd"] = cmd
        batches = [int(b) for b in cmd[cmd.index("--batches") + 1].split(",")]
        points = [[b, 2 * GIB + b * 100 * 2**20] for b in batches]
        out = json.dumps(
            {
                "gpu_name": "NVIDIA A100-SXM4-80GB",
                "points": points,
                "allocated": points,
                "context_bytes": 0,
                "failed": {},
            }
        )
        return subprocess.CompletedProcess(cmd, 0, out + "\n", "")

    monkeypatch.setattr(plan_cli.subprocess, "run", fake_run)
    code, out, err = run(capsys, "probe", "small")
    assert code == 0, err
    assert "cockpit.train.probe" in seen["cmd"]
    assert "calibration saved" in out
    gpu = gpu_mod.local_gpu_spec()
    calibration = load_calibration(preset, gpu.name)
    assert calibration is not None and calibration.per_sequence_bytes == pytest.approx(100 * 2**20)
    code, out, _ = run(capsys, "estimate", "small", "-b", "10", "--json")
    data = json.loads(out)
    assert data["measured"] is True
    assert data["peak_bytes"] == 2 * GIB + 10 * 100 * 2**20 + data["memory"]["cuda_context"]
    code, out, _ = run(capsys, "estimate", "small", "-b", "10")
    assert "peak (measured by probe)" in out and "measured" in out


def test_probe_reports_a_child_that_measured_too_little(capsys, two_gpus, monkeypatch):
    def fake_run(cmd, **kwargs):  # noqa: ANN001, ANN003
        out = json.dumps(
            {
                "gpu_name": "g",
                "points": [[4, GIB]],
                "allocated": [[4, GIB]],
                "context_bytes": 0,
                "failed": {"8": "CUDA out of memory"},
            }
        )
        return subprocess.CompletedProcess(cmd, 0, out + "\n", "")

    monkeypatch.setattr(plan_cli.subprocess, "run", fake_run)
    code, _, err = run(capsys, "probe", "small")
    assert code == 1 and "out of memory" in one_error_line(err)


def run_module_here(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:  # noqa: ANN003
    """`python -m MODULE ARGS` as that module's main(ARGS) in this process (no interpreter and
    torch to start): its exit code, stdout and stderr, as subprocess.run returns them."""
    import contextlib
    import importlib
    import io

    assert cmd[:2] == [sys.executable, "-m"], cmd
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = importlib.import_module(cmd[2]).main(cmd[3:])
    return subprocess.CompletedProcess(cmd, code, out.getvalue(), err.getvalue())


def test_probe_child_without_cuda_exits_2(capsys, two_gpus, monkeypatch):
    # NVML sees a GPU, but this torch has no CUDA: the child (its module's __main__, run here)
    # says so and the command exits 2
    pytest.importorskip("torch")
    monkeypatch.setattr(plan_cli.subprocess, "run", run_module_here)
    code, _, err = run(capsys, "probe", "tiny_char")
    assert code == 2 and "CUDA is not available" in one_error_line(err)


@pytest.mark.parametrize("width", [80, 60])
def test_presets_table_in_a_narrow_terminal_keeps_names_and_counts_whole(
    width, capsys, monkeypatch
):
    from rich.console import Console

    monkeypatch.setattr(
        plan_cli, "_console", lambda: Console(width=width, highlight=False, soft_wrap=False)
    )
    assert main(["presets", "--gpu", "T4"]) == 0
    out = capsys.readouterr().out
    assert "T4" in out.splitlines()[0]
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for preset in list_presets():
        row = rows[preset.name]  # the whole name starts its own row
        assert f"{estimate(preset, None).params:,}" in row


def test_an_eta_under_a_second_is_not_written_0s(capsys):
    code, out, _ = run(capsys, "estimate", "tiny_char", "--gpu", "H100")
    assert code == 0
    eta = next(line for line in out.splitlines() if line.startswith("ETA"))
    assert "<1s at 35% MFU" in eta and " 0s " not in eta
