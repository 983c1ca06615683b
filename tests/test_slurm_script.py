"""The Slurm job script and request of a run, without a cluster: options, limits, shell syntax."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tiny_runs import make_run

from cockpit.campaign import slurm
from cockpit.plan import host
from cockpit.plan.presets import Preset, apply_overrides


def preset(*overrides: str) -> Preset:
    return apply_overrides(Preset(name="tiny_test"), ["train.max_steps=1000", *overrides])


def sbatch_options(script: str) -> list[str]:
    return [line.split(None, 1)[1] for line in script.splitlines() if line.startswith("#SBATCH ")]


def test_a_cpu_job_asks_for_its_cpus_memory_and_the_checkpoint_signal(tmp_path):
    req = slurm.job_request(tmp_path, preset(), cpus=2)
    script = slurm.job_script(req, slurm.SlurmOptions(python="/venv/bin/python"))
    options = sbatch_options(script)
    assert f"--chdir={tmp_path.resolve()}" in options
    assert f"--output={tmp_path.resolve()}/slurm-%j.out" in options
    assert "--cpus-per-task=2" in options
    assert f"--mem={req.mem_mb}M" in options and req.mem_mb % slurm.MEM_ROUND_MB == 0
    assert "--signal=B:USR1@120" in options and "--requeue" in options
    assert not any(o.startswith(("--gres", "--time", "--partition", "--account")) for o in options)
    assert "unset CUDA_VISIBLE_DEVICES" in script
    assert (
        f"/venv/bin/python -m cockpit.train --run-dir {tmp_path.resolve()} --device cpu" in script
    )
    assert "torch.distributed.run" not in script


def test_gpu_jobs_run_torchrun_and_several_nodes_meet_at_node_zero(tmp_path):
    one = slurm.job_script(slurm.job_request(tmp_path, preset(), gpus=1))
    assert "--gres=gpu:1" in sbatch_options(one) and "--cpus-per-task=4" in sbatch_options(one)
    assert "unset CUDA_VISIBLE_DEVICES" not in one and "--device auto" in one
    four = slurm.job_script(slurm.job_request(tmp_path, preset(), gpus=4))
    assert "torch.distributed.run --standalone --nproc-per-node 4 -m cockpit.train" in four
    assert '-m cockpit stop "$RUN_DIR"' in four  # rank 0 is asked to stop; the others follow
    two_nodes = slurm.job_script(slurm.job_request(tmp_path, preset(), gpus=8, nodes=2))
    assert "--nodes=2" in sbatch_options(two_nodes)
    assert "srun --ntasks-per-node=1" in two_nodes
    assert '--node-rank "$SLURM_NODEID"' in two_nodes
    assert 'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in two_nodes
    with pytest.raises(ValueError, match="GPUs"):
        slurm.job_request(tmp_path, preset(), nodes=2)


@pytest.mark.parametrize(("gpus", "nodes"), [(0, 1), (1, 1), (4, 1), (8, 2)])
def test_every_job_script_is_valid_bash(tmp_path, gpus, nodes):
    if shutil.which("bash") is None:
        pytest.skip("no bash here")
    path = tmp_path / "job.sh"
    path.write_text(slurm.job_script(slurm.job_request(tmp_path, preset(), gpus=gpus, nodes=nodes)))
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_partition_account_and_own_options_come_last_so_they_win(tmp_path):
    opts = slurm.SlurmOptions(
        partition="gpu", account="lab", sbatch_args=("--constraint=a100", "--time=2:00:00")
    )
    options = sbatch_options(slurm.job_script(slurm.job_request(tmp_path, preset()), opts))
    assert options[-4:] == [
        "--partition=gpu",
        "--account=lab",
        "--constraint=a100",
        "--time=2:00:00",
    ]


@pytest.mark.parametrize(
    ("arg", "ok"),
    [("--constraint=a100", True), ("-C a100", True), ("constraint", False), ("--x=1\n#", False)],
)
def test_an_sbatch_arg_must_be_one_option(arg, ok):
    problem = slurm.SlurmOptions(sbatch_args=(arg,)).problem()
    assert (problem is None) == ok, problem


def test_the_time_limit_is_the_eta_with_a_margin_in_whole_minutes():
    assert slurm.time_limit_s(preset(), None) is None  # the partition's default
    limit = slurm.time_limit_s(preset(), 3600.0)
    assert limit == 3600 * 1.25 + slurm.START_ALLOWANCE_S + slurm.SIGNAL_LEAD_S == 5220
    assert slurm.slurm_time(5220) == "0-01:27:00"
    assert slurm.slurm_time(2 * 86400 + 61) == "2-00:01:01"
    capped = slurm.time_limit_s(preset("train.max_time_s=600"), 36000.0)  # the run ends itself
    assert capped == 600 + slurm.START_ALLOWANCE_S + slurm.SIGNAL_LEAD_S
    assert slurm.time_limit_s(preset(), 1.0) % 60 == 0


def test_host_memory_grows_with_the_model_and_with_each_gpu_process():
    small, big = preset(), preset("model.n_layer=12", "model.n_embd=768", "model.n_head=12")
    assert slurm.host_memory_bytes(big) > slurm.host_memory_bytes(small)
    assert slurm.host_memory_bytes(small) >= host.CPU_RUNTIME_BYTES
    one_gpu = slurm.host_memory_bytes(big, 1)
    assert one_gpu >= host.CUDA_RUNTIME_BYTES
    assert slurm.host_memory_bytes(big, 4) == pytest.approx(4 * one_gpu, rel=1e-6)


def test_a_text_corpus_counts_toward_host_memory(tmp_path):
    small, big = tmp_path / "small.txt", tmp_path / "big.txt"
    small.write_text("x" * 1_000_000)
    big.write_text("x" * 10_000_000)
    before = slurm.host_memory_bytes(preset(f"data.source={small}"))
    after = slurm.host_memory_bytes(preset(f"data.source={big}"))
    assert after - before >= 9_000_000 * host.TEXT_BYTES_PER_BYTE  # the text, tokenized


@pytest.mark.parametrize(
    ("stderr", "line"),
    [
        (
            "sbatch: error: Memory specification can not be satisfied\n"
            "sbatch: error: Batch job submission failed: Requested node configuration is not available\n",
            "Requested node configuration is not available (Memory specification can not be satisfied)",
        ),
        (
            "sbatch: error: invalid partition specified: nope\n"
            "sbatch: error: Batch job submission failed: Invalid partition name specified\n",
            "Invalid partition name specified (invalid partition specified: nope)",
        ),
        (
            "sbatch: error: Invalid account or account/partition combination specified\n",
            "Invalid account or account/partition combination specified",
        ),
        ("something else\n", "something else"),
        ("", "failed without a message"),
    ],
)
def test_slurms_refusal_becomes_one_line(stderr, line):
    assert slurm.refusal(stderr) == line


def test_without_slurm_submitting_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch anywhere
    problem = slurm.slurm_problem()
    assert problem is not None and problem.startswith("sbatch, squeue, scontrol, scancel not found")
    run = make_run(tmp_path)
    before = (run / "run.json").read_text()
    with pytest.raises(slurm.SlurmUnavailable, match="not found"):
        slurm.submit(slurm.job_request(run, preset()))
    assert (run / "run.json").read_text() == before  # nothing changed
    assert not (run / slurm.JOB_SCRIPT).exists()


def test_a_run_directory_with_spaces_is_refused(tmp_path):
    with pytest.raises(ValueError, match="without spaces"):
        slurm.job_request(tmp_path / "my runs" / "a", preset())


def test_job_states_read_as_waiting_active_or_ended():
    pending = slurm.JobState("7", "PENDING", "Resources")
    assert pending.waiting and not pending.ended and pending.describe() == "PENDING (Resources)"
    running = slurm.JobState("7", "RUNNING", "None", "node3", "1:02")
    assert running.active and running.describe() == "RUNNING on node3"
    for state in ("COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "OUT_OF_MEMORY", "NODE_FAIL"):
        assert slurm.JobState("7", state).ended


def test_a_run_that_never_went_to_slurm_has_no_job(tmp_path):
    assert slurm.job_of_run(tmp_path) is None
    assert slurm.read_slurm_record(tmp_path) == {}
    (tmp_path / slurm.SLURM_JSON).write_text("[not an object")
    assert slurm.read_slurm_record(tmp_path) == {}


def fake_clients(folder: Path, squeue: str, scontrol: str = "") -> None:
    """squeue and scontrol stand-ins that print `squeue`'s (or `scontrol`'s) text on stderr, exit 1."""
    for name, text in (("squeue", squeue), ("scontrol", scontrol or squeue)):
        path = folder / name
        path.write_text(f"#!/bin/sh\necho '{text}' >&2\nexit 1\n")
        path.chmod(0o755)


def test_a_job_slurm_does_not_know_is_gone_but_no_answer_is_not_an_answer(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    fake_clients(tmp_path, "slurm_load_jobs error: Invalid job id specified")
    assert slurm.read_jobs(["12"]) == {}
    assert slurm.read_job("12") is None
    assert slurm.cancel("12") == "already ended"
    fake_clients(
        tmp_path, "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"
    )
    with pytest.raises(
        slurm.SlurmUnavailable, match="squeue: slurm_load_jobs error: Unable to contact"
    ):
        slurm.read_jobs(["12", "13"])
    with pytest.raises(slurm.SlurmUnavailable):
        slurm.read_job("12")
