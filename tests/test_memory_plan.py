"""Host RAM and CPU time planned, and launches refused before they start when the plan cannot fit."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from cockpit import rundir
from cockpit.plan import host
from cockpit.plan.allocator import (
    ALLOC_CONF_ENV,
    CHILD_ALLOC_CONF,
    child_alloc_env,
    child_allocator_mode,
    parse_alloc_conf,
)
from cockpit.plan.estimate import memory_breakdown
from cockpit.plan.gpu import lookup_gpu
from cockpit.plan.presets import apply_overrides, load_preset
from cockpit.runs import prelaunch

ROOT = Path(__file__).resolve().parent.parent
GIB = 1 << 30


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Speed figures and traces in a folder of the test's own; 16 GiB of RAM, 8 available."""
    monkeypatch.setenv("GPT_COCKPIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(host, "available_ram", lambda: (8 * GIB, 16 * GIB))


def tiny(*overrides: str):
    return apply_overrides(load_preset("tiny_char"), list(overrides))


# --------------------------------------------------------------------------- the allocator mode


def test_the_child_gets_expandable_segments_unless_the_user_set_their_own():
    assert child_alloc_env({})[ALLOC_CONF_ENV] == CHILD_ALLOC_CONF
    mine = {ALLOC_CONF_ENV: "max_split_size_mb:256"}
    assert child_alloc_env(mine) == mine  # never overridden
    mode = child_allocator_mode(mine)
    assert not mode.expandable and mode.max_split_size == 256 << 20 and not mode.ours
    assert child_allocator_mode({}).expandable and child_allocator_mode({}).ours
    assert parse_alloc_conf("expandable_segments:False").expandable is False
    assert parse_alloc_conf(" expandable_segments : True , garbage").expandable is True


def test_the_launched_child_runs_with_the_allocator_setting(tmp_path, monkeypatch):
    """runs.launch passes expandable segments to the training child, and the user's own as is."""
    from cockpit import runs

    seen = []

    class FakePopen:
        def __init__(self, cmd, **kw):
            seen.append(kw["env"])
            self.pid = 4242

    monkeypatch.setattr(runs.subprocess, "Popen", FakePopen)
    monkeypatch.setattr(runs, "_descends_from", lambda *a: True, raising=False)
    run_dir = rundir.create_run_dir(tiny(), root=tmp_path / "runs")
    monkeypatch.delenv(ALLOC_CONF_ENV, raising=False)
    try:
        runs.launch(run_dir, detach=False)
    except Exception:  # noqa: BLE001 - only the environment handed over matters here
        pass
    monkeypatch.setenv(ALLOC_CONF_ENV, "expandable_segments:False")
    try:
        runs.launch(run_dir, detach=False)
    except Exception:  # noqa: BLE001
        pass
    assert seen[0][ALLOC_CONF_ENV] == CHILD_ALLOC_CONF
    assert seen[1][ALLOC_CONF_ENV] == "expandable_segments:False"


# --------------------------------------------------------------------------- host RAM


def test_a_cpu_run_plans_the_step_in_the_cpu_dtype_plus_runtime_and_data():
    preset = tiny()
    plan = host.host_memory(preset, "cpu")
    assert plan.dtype == "fp32" and host.cpu_dtype(tiny("train.dtype=bf16")) == "bf16"
    fp32 = memory_breakdown(preset, None, dtype="fp32", flash=True)
    parts = dict(plan.parts)
    assert parts["weights"] == fp32.weights and parts["optimizer state"] == fp32.optimizer
    step = fp32.live_bytes
    assert sum(b for label, b in plan.parts if label in dict(fp32.items())) == step
    # tiny_char has dropout: torch's CPU flash attention takes none, the math path keeps s^2 tensors
    m = preset.model
    scores = parts["attention scores (CPU math path: dropout)"]
    assert scores == m.n_layer * m.n_head * m.block_size**2 * 16 * (6 * 4 + 1)
    assert "attention scores (CPU math path: dropout)" not in dict(
        host.host_memory(tiny("model.dropout=0"), "cpu").parts
    )
    assert parts["CPU allocator slack (10%)"] == int((step + scores) * 0.10)
    assert parts["torch runtime"] >= host.CPU_RUNTIME_BYTES
    assert plan.total_bytes == sum(parts.values())
    assert plan.fits is True and plan.available_bytes == 8 * GIB
    assert "of 8.0 GiB available" in plan.verdict


def test_the_data_term_follows_the_source(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("x" * 1000)
    tokens = tmp_path / "train.bin"
    tokens.write_bytes(b"\0" * 4096)
    assert host._source_bytes(str(text))[0] == 1000 * host.TEXT_BYTES_PER_BYTE
    assert host._source_bytes(str(tokens)) == (0, host._source_bytes(str(tokens))[1])
    assert "memory-mapped" in host._source_bytes(str(tokens))[1]


def test_a_gpu_run_plans_its_host_side_per_process():
    one, four = host.host_memory(tiny(), "cuda"), host.host_memory(tiny(), "cuda", nproc=4)
    assert dict(one.parts)["CUDA runtime (1 process)"] == host.CUDA_RUNTIME_BYTES
    assert dict(four.parts)["CUDA runtime (4 processes)"] == 4 * host.CUDA_RUNTIME_BYTES
    pinned = dict(one.parts)["pinned batch buffers"]
    assert pinned >= 2 * 8 * 16 * 128  # x and y, int64, one micro-batch at least


def test_the_host_suggestion_is_the_largest_micro_batch_that_fits():
    preset = tiny("train.batch_size=100000")
    budget = 4 * GIB
    micro, accum = host.host_batch_fit(preset, budget)
    assert host.host_memory(preset, "cpu", batch_size=micro).total_bytes <= budget
    assert host.host_memory(preset, "cpu", batch_size=micro + 1).total_bytes > budget
    assert micro * accum >= 100000 and micro * (accum - 1) < 100000  # sequences per step kept
    assert host.host_batch_fit(tiny("model.n_layer=1000000000"), budget) is None


# --------------------------------------------------------------------------- refused before it starts


def test_a_cpu_plan_over_the_available_ram_is_refused_with_figures_and_the_batch_that_fits():
    assert prelaunch.plan_problem(tiny(), "cpu") is None
    problem = prelaunch.plan_problem(tiny("train.batch_size=100000"), "cpu")
    assert problem.startswith("host RAM: a CPU run of tiny_char at micro-batch 100,000 needs ")
    assert "8.0 GiB available" in problem and "--force" in problem
    micro = int(problem.split("--set train.batch_size=")[1].split()[0])
    assert host.host_memory(tiny(), "cpu", batch_size=micro).total_bytes <= 8 * GIB
    huge = prelaunch.plan_problem(tiny("model.n_layer=1000000000"), "cpu")
    assert "8.0 GiB available" in huge and "even micro-batch 1" in huge
    assert huge.split(" needs ")[1].split()[1] in ("TiB", "PiB", "EiB")


@pytest.mark.parametrize("available_gib", [1, 3, 8])
def test_the_batch_estimate_suggests_is_the_one_launch_suggests_and_is_never_refused(
    monkeypatch, capsys, available_gib
):
    """`estimate --device cpu` and the launch refusal suggest one micro-batch, from one budget
    (cockpit.plan.host.cpu_batch_suggestion), and a launch at it is not refused."""
    from cockpit.__main__ import main

    available = available_gib * GIB
    monkeypatch.setattr(host, "available_ram", lambda: (available, 16 * GIB))
    host.save_cpu_speed(host.CpuSpeed(2e9, "calibration", 0.0, "m", host.torch_version()))
    big = ["train.batch_size=100000"]
    assert main(["estimate", "tiny_char", "--device", "cpu", "--json", *_sets(big)]) == 0
    suggested = json.loads(capsys.readouterr().out)["suggestion"]
    micro, accum = suggested["micro_batch"], suggested["grad_accum"]
    refusal = prelaunch.plan_problem(tiny(*big), "cpu")
    assert f"--set train.batch_size={micro} --set train.grad_accum={accum} " in refusal
    assert (
        prelaunch.plan_problem(
            tiny(f"train.batch_size={micro}", f"train.grad_accum={accum}"), "cpu"
        )
        is None
    )
    # the budget is the available RAM less the launch check's margin, and no smaller
    plan = host.host_memory(tiny(), "cpu", batch_size=micro).total_bytes
    over = host.host_memory(tiny(), "cpu", batch_size=micro + 1).total_bytes
    assert plan <= available * (1 - host.HOST_MARGIN) < over
    assert main(["estimate", "tiny_char", "--device", "cpu", *_sets(big)]) == 0
    out = capsys.readouterr().out
    assert f"--set train.batch_size={micro} --set train.grad_accum={accum}" in out
    assert f"fits in {1 - host.HOST_MARGIN:.0%} of the available RAM" in out.replace("\n", " ")


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def test_within_the_margin_is_not_refused(monkeypatch):
    need = host.host_memory(tiny(), "cpu").total_bytes
    monkeypatch.setattr(host, "available_ram", lambda: (int(need * 0.9), 16 * GIB))
    assert prelaunch.plan_problem(tiny(), "cpu") is None  # 10% over: inside the 15% margin
    monkeypatch.setattr(host, "available_ram", lambda: (int(need * 0.8), 16 * GIB))
    assert prelaunch.plan_problem(tiny(), "cpu") is not None


def test_arithmetic_that_overflows_gets_the_same_kind_of_line(monkeypatch):
    def overflow(*_a, **_k):
        raise OverflowError("int too large to convert to float")

    monkeypatch.setattr(host, "host_memory", overflow)
    problem = prelaunch.plan_problem(tiny(), "cpu")
    assert problem.startswith("memory: tiny_char needs more than any machine has")
    assert "8.0 GiB of RAM available" in problem and "--force" in problem


def nvml_sees(monkeypatch, *gpus: tuple[str, int, tuple[int, int]]) -> None:
    """NVML reports these GPUs (name, memory in GiB, capability), in PCI order; CUDA's own order
    and CUDA_VISIBLE_DEVICES then apply as they do on a real machine."""
    from cockpit.plan import gpu as gpu_mod

    statuses = [
        gpu_mod.GpuStatus(
            i,
            name,
            gib * GIB,
            0,
            gib * GIB,
            None,
            None,
            None,
            None,
            cc,
            uuid=f"GPU-{i}{name.split()[-1].lower()}",
            pci_bus_id=f"00000000:{18 + i}:00.0",
        )  # fmt: skip
        for i, (name, gib, cc) in enumerate(gpus)
    ]
    monkeypatch.setattr(gpu_mod, "_nvml_gpus", lambda: statuses)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)


T4 = ("Tesla T4", 15, (7, 5))
H100 = ("NVIDIA H100 80GB HBM3", 80, (9, 0))


def test_a_gpu_plan_over_the_cards_memory_is_refused_with_the_suggestion(monkeypatch):
    h100 = lookup_gpu("H100")
    nvml_sees(monkeypatch, H100)
    preset = load_preset("gpt2_124m")
    assert prelaunch.plan_problem(preset, "cuda") is None
    big = apply_overrides(preset, ["train.batch_size=512"])
    problem = prelaunch.plan_problem(big, "auto")
    assert problem.startswith("GPU memory: gpt2_124m at micro-batch 512 needs ")
    assert h100.name in problem and "fits: --set train.batch_size=" in problem


def test_a_mixed_machine_plans_against_the_gpus_the_run_uses(monkeypatch, capsys):
    """A T4 beside an H100 (CUDA's fastest-first order makes the H100 cuda:0): one process plans
    on the H100, two ranks on the T4 they share the load with, a mask on the GPU it names; the
    launch refusal and `estimate` agree."""
    from cockpit.__main__ import main

    nvml_sees(monkeypatch, T4, H100)
    preset = load_preset("gpt2_124m")  # about 34 GiB at its micro-batch: an H100's, not a T4's
    assert prelaunch.plan_problem(preset, "cuda", 1) is None
    two = prelaunch.plan_problem(preset, "cuda", 2)
    assert two.startswith("GPU memory: gpt2_124m at micro-batch 32 needs ")
    assert "on each of 2 GPUs, Tesla T4 (the smallest of the run's 2 GPUs) has 14.8 GiB" in two
    micro = int(two.split("--set train.batch_size=")[1].split()[0])
    assert micro < 32
    assert main(["estimate", "gpt2_124m", "--nproc", "2", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned["gpu"] == "Tesla T4" and planned["suggestion"]["micro_batch"] == micro
    assert main(["estimate", "gpt2_124m", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["gpu"] == "NVIDIA H100 80GB HBM3"
    assert main(["estimate", "gpt2_124m", "--nproc", "2"]) == 0
    assert "gpt2_124m on Tesla T4 (the smallest of the run's 2 GPUs)" in capsys.readouterr().out

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # cuda index 1: the T4 alone
    one = prelaunch.plan_problem(preset, "cuda", 1)
    assert "needs " in one and ", Tesla T4 has 14.8 GiB" in one  # one GPU: no "smallest of"
    assert main(["estimate", "gpt2_124m", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["gpu"] == "Tesla T4"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1h100")  # by UUID: the H100
    assert prelaunch.plan_problem(preset, "cuda", 1) is None


def _headless(*args: str, runs: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GPT_COCKPIT_RUNS": str(runs), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "cockpit", "--no-ui", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=runs.parent,
    )


@pytest.mark.parametrize(
    "overrides",
    [
        ["--set", "train.batch_size=100000", "--device", "cpu"],
        ["--set", "model.n_layer=1000000000"],
    ],
)
def test_headless_exits_2_before_creating_a_run(tmp_path, overrides):
    runs = tmp_path / "runs"
    proc = _headless(*overrides, runs=runs)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "needs" in line and "available" in line and "--force" in line
    assert proc.stdout == ""
    assert not runs.exists() or not any(runs.iterdir())


def test_force_launches_anyway_and_says_so(tmp_path, monkeypatch, capsys):
    import cockpit.headless as headless

    started = []
    monkeypatch.setattr(prelaunch, "plan_problem", lambda *a: "host RAM: needs 9 GiB; x")
    monkeypatch.setattr(
        headless, "launch_and_follow", lambda run_dir, **kw: started.append(run_dir) or 0
    )
    args = argparse.Namespace(
        preset="tiny_char",
        overrides=[],
        device="cpu",
        runs_dir=str(tmp_path / "runs"),
        run_dir=None,
        force=False,
        max_steps=None,
        data=None,
        nproc=None,
    )
    assert headless.cmd_headless(args) == 2 and not started
    assert "host RAM: needs 9 GiB" in capsys.readouterr().err
    args.force = True
    assert headless.cmd_headless(args) == 0 and len(started) == 1
    assert "launching anyway (--force)" in capsys.readouterr().err


def test_the_apps_launcher_refuses_unless_the_dialog_forced_it(tmp_path, monkeypatch):
    from cockpit import runs
    from cockpit.plan.estimate import estimate
    from cockpit.tui.app import default_launcher
    from cockpit.tui.screens.confirm import launch_question

    monkeypatch.setattr(prelaunch, "plan_problem", lambda *a: "host RAM: needs 9 GiB, 8 available")
    launched = []
    monkeypatch.setattr(runs, "launch", lambda run_dir, **kw: launched.append(run_dir))
    with pytest.raises(rundir.RunError, match="needs 9 GiB"):
        default_launcher(tiny(), tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    default_launcher(tiny(), tmp_path / "runs", force=True)
    assert len(launched) == 1
    question = launch_question(tiny(), estimate(tiny(), None), "host RAM: needs 9 GiB")
    assert "does not fit" in question and "needs 9 GiB" in question and "forces" in question
    plain = launch_question(tiny(), estimate(tiny(), None))
    assert "host RAM:" in plain and "CPU ETA" in plain and "Start training now?" in plain


# --------------------------------------------------------------------------- CPU speed and ETA


def test_the_cpu_eta_divides_the_runs_flops_by_the_cached_speed():
    from cockpit.plan.estimate import flops_per_token

    preset = tiny()
    assert host.load_cpu_speed() is None
    assert "not measured yet" in host.cpu_eta_line(preset, None)
    speed = host.CpuSpeed(1e9, "calibration", 0.0, host.machine_name(), host.torch_version())
    host.save_cpu_speed(speed)
    loaded = host.load_cpu_speed()
    total = flops_per_token(preset.model) * preset.tokens_per_step * preset.train.max_steps
    assert loaded.eta_seconds(preset) == pytest.approx(total / 1e9)
    assert "1.0 GFLOP/s (this machine, calibration)" in host.cpu_eta_line(preset, loaded)
    assert "cpu_speed-" in host.speed_path().name


def _finished_cpu_run(root: Path, tokens_per_s: float, torch: str) -> Path:
    run_dir = rundir.create_run_dir(tiny(), root=root)
    rundir.update_run_info(
        run_dir,
        status="finished",
        device="cpu",
        host=platform.node(),
        versions={"torch": torch},
    )
    writer = rundir.EventWriter(run_dir / rundir.EVENTS_JSONL)
    for step in range(1, 6):
        writer.emit(rundir.StepEvent(step=step, loss=2.0, tokens_per_s=tokens_per_s))
    writer.close()
    return run_dir


def test_finished_cpu_runs_replace_the_calibration(tmp_path):
    from cockpit.plan.estimate import flops_per_token
    from cockpit.runs.speed import refresh_cpu_speed, run_speed_samples

    root = tmp_path / "runs"
    host.save_cpu_speed(host.CpuSpeed(1e9, "calibration", 0.0, "m", host.torch_version()))
    _finished_cpu_run(root, 1000.0, host.torch_version())
    _finished_cpu_run(root, 5000.0, "0.0-another-torch")  # another torch: not this speed
    samples = run_speed_samples(root)
    assert len(samples) == 1
    assert samples[0][1] == pytest.approx(1000.0 * flops_per_token(tiny().model))
    speed = refresh_cpu_speed(root)
    assert speed.source == "1 finished run" and speed.flops_per_s == pytest.approx(samples[0][1])
    assert host.load_cpu_speed().runs == [samples[0][0]]


def test_estimate_device_cpu_shows_host_ram_and_the_cpu_eta(capsys, tmp_path):
    from cockpit.__main__ import main

    host.save_cpu_speed(host.CpuSpeed(2e9, "calibration", 0.0, "m", host.torch_version()))
    assert (
        main(["--runs-dir", str(tmp_path / "runs"), "estimate", "tiny_char", "--device", "cpu"])
        == 0
    )
    out = capsys.readouterr().out
    assert "host RAM of a CPU run at micro-batch 16" in out and "torch runtime" in out
    assert "of 8.0 GiB available" in out and "CPU ETA:" in out and "2.0 GFLOP/s" in out
    assert main(["estimate", "tiny_char", "--device", "cpu", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["available_bytes"] == 8 * GIB and got["total_bytes"] > 0 and got["eta_s"] > 0
    assert got["dtype"] == "fp32" and got["fits"] is True


def test_the_presets_table_shows_cpu_ram_and_eta_without_a_gpu(capsys, monkeypatch):
    from cockpit.__main__ import main
    from cockpit.cli import plan as plan_cli

    monkeypatch.setattr(plan_cli, "resolve_gpu", lambda name, **where: None)
    host.save_cpu_speed(host.CpuSpeed(2e9, "calibration", 0.0, "m", host.torch_version()))
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "CPU RAM" in out and "CPU ETA" in out and "8.0 GiB of RAM available" in out
    assert "2.0 GFLOP/s" in out
