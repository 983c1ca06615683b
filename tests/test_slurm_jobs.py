"""Runs trained as real Slurm jobs (tests/cluster.py): to the end, stopped, requeued, refused."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tiny_runs import SHARED_RUN, events_of, make_run, step_losses

from cockpit import rundir, runs
from cockpit.campaign import slurm

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

JOB_TIMEOUT_S = 120.0


def wait_for(check: Callable[[], object], what: str, timeout: float = JOB_TIMEOUT_S) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"no {what} after {timeout:.0f} s")


def wait_ended(job_id: str, run_dir: Path) -> slurm.JobState:
    """The job's last state once it has ended (the run's console.log in the failure message)."""

    def ended() -> slurm.JobState | None:
        job = slurm.read_job(job_id)
        return job if job is not None and job.ended else None

    try:
        return wait_for(ended, f"end of job {job_id}")  # type: ignore[return-value]
    except AssertionError as exc:
        log = (run_dir / rundir.CONSOLE_LOG).read_text(errors="replace")[-2000:]
        raise AssertionError(f"{exc}\nconsole.log:\n{log}") from None


def submit(run_dir: Path, **request: object) -> str:
    req = slurm.job_request(run_dir, rundir.load_run_preset(run_dir), **request)  # type: ignore[arg-type]
    return slurm.submit(req)


def last_step(run_dir: Path) -> int:
    steps = events_of(run_dir, "step")
    return steps[-1]["step"] if steps else 0


def test_a_tiny_cpu_run_trains_to_its_end_as_a_slurm_job(cluster, tmp_path):
    run_dir = make_run(tmp_path)
    job_id = submit(run_dir)
    assert slurm.job_of_run(run_dir) == job_id
    assert (run_dir / slurm.JOB_SCRIPT).read_text().startswith("#!/bin/bash\n#SBATCH")
    seen = {slurm.read_job(job_id).state}  # type: ignore[union-attr]
    job = wait_ended(job_id, run_dir)
    assert job.state == "COMPLETED", job.describe()
    assert seen <= {"PENDING", "RUNNING", "COMPLETED"}
    assert rundir.run_status(run_dir) == "finished"
    assert sorted(step_losses(run_dir)) == list(range(1, 41))
    assert events_of(run_dir, "end")[-1]["reason"] == "finished"
    out = (run_dir / f"slurm-{job_id}.out").read_text()
    assert "restart 0" in out and "fresh start" in out
    assert "exited with 0" in out
    # `runs` finds it from anywhere (the run index), as a local run
    listed = {r.run_dir.resolve(): r.status for r in runs.list_runs()}
    assert listed[run_dir.resolve()] == "finished"
    # one CPU granted: one thread (GPT_COCKPIT_CPU_THREADS from SLURM_CPUS_PER_TASK)
    assert "cpu threads: 1 of" in (run_dir / rundir.CONSOLE_LOG).read_text()


def test_a_run_cancelled_midway_stops_with_a_checkpoint_and_resumes_exactly_when_requeued(
    cluster, tmp_path, monkeypatch
):
    reference = make_run(tmp_path, *SHARED_RUN, name="reference")
    ref_job = submit(reference)
    cut = make_run(tmp_path, *SHARED_RUN, name="cut")
    monkeypatch.setenv(
        "GPT_COCKPIT_FAULT", "hold_at_step=12"
    )  # the job's env: waits to be cancelled
    job_id = submit(cut)
    wait_for(lambda: last_step(cut) >= 12, "step 12 of the run to cancel")
    assert slurm.cancel(job_id) == "asked to stop with a checkpoint"
    job = wait_ended(job_id, cut)
    info = rundir.read_run_info(cut)
    assert info.status == "stopped", info.end_message
    stopped_at = info.step
    assert stopped_at == 12  # where it was held: the stop came from the cancel
    assert (cut / rundir.CHECKPOINTS / "last.pt").is_file()
    assert events_of(cut, "end")[-1]["reason"] == "stopped"
    assert (
        "SIGTERM received: stopping the run with a checkpoint"
        in (cut / f"slurm-{job_id}.out").read_text()
    )
    assert job.state in ("COMPLETED", "CANCELLED"), job.describe()

    assert slurm.requeue_run(cut) == job_id
    assert rundir.read_run_info(cut).status == slurm.QUEUED
    wait_for(lambda: rundir.read_run_info(cut).status == "finished", "the resumed run's end")
    assert wait_ended(ref_job, reference).state == "COMPLETED"
    starts = events_of(cut, "start")
    assert [s["resumed_from"] for s in starts] == [None, stopped_at]
    assert step_losses(cut) == step_losses(reference)  # exactly, step for step
    assert len(step_losses(cut)) == 60


def test_the_time_limit_signal_checkpoints_requeues_and_resumes(cluster, tmp_path, monkeypatch):
    run_dir = make_run(tmp_path, *SHARED_RUN)
    monkeypatch.setenv("GPT_COCKPIT_FAULT", "hold_at_step=8")  # waits there for the signal
    job_id = submit(run_dir)
    wait_for(lambda: last_step(run_dir) >= 8, "step 8")
    slurm.warn_time_limit(job_id)  # what Slurm sends SIGNAL_LEAD_S before --time runs out
    wait_for(lambda: len(events_of(run_dir, "start")) == 2, "the requeued job's start")
    wait_for(lambda: rundir.read_run_info(run_dir).status == "finished", "the run's end")
    starts = events_of(run_dir, "start")
    ends = events_of(run_dir, "end")
    assert [e["reason"] for e in ends] == ["stopped", "finished"]
    assert starts[1]["resumed_from"] == ends[0]["step"] == 8
    out = (run_dir / f"slurm-{job_id}.out").read_text()
    assert "the time limit is near" in out and "requeueing job" in out
    assert "restart 1" in out and "--resume" in out
    assert "SIGTERM received" not in out  # the requeue's own SIGTERM finds nothing left to stop
    assert wait_ended(job_id, run_dir).state == "COMPLETED"


def test_what_slurm_refuses_is_one_line_with_its_reason(cluster, tmp_path):
    run_dir = make_run(tmp_path, name="too-big")
    req = slurm.job_request(run_dir, rundir.load_run_preset(run_dir))
    too_big = dataclasses.replace(req, mem_bytes=(cluster.memory_mb + 1) << 20)
    with pytest.raises(slurm.SlurmRefused) as refused:
        slurm.submit(too_big)
    message = str(refused.value)
    assert message == (
        "Slurm refused the job: Requested node configuration is not available"
        " (Memory specification can not be satisfied)"
    )
    info = rundir.read_run_info(run_dir)
    assert (info.status, info.end_message) == ("error", message)
    assert slurm.job_of_run(run_dir) is None

    elsewhere = make_run(tmp_path, name="elsewhere")
    req = slurm.job_request(elsewhere, rundir.load_run_preset(elsewhere))
    with pytest.raises(slurm.SlurmRefused, match="Invalid partition name specified"):
        slurm.submit(req, slurm.SlurmOptions(partition="nowhere"))
    if cluster.gpus:
        gpus = make_run(tmp_path, name="gpus")
        req = slurm.job_request(gpus, rundir.load_run_preset(gpus), gpus=cluster.gpus + 1, cpus=1)
        with pytest.raises(slurm.SlurmRefused, match="Requested node configuration"):
            slurm.submit(req)
    assert cluster.job_ids() == []  # nothing was left waiting


def test_a_gpu_entry_gets_its_gpu_from_slurm_and_says_it_trains_on_the_cpu(cluster, tmp_path):
    if not cluster.gpus:
        pytest.skip("the test cluster has no fake GPUs here (mknod was not allowed)")
    run_dir = make_run(tmp_path)
    job_id = submit(run_dir, gpus=1)
    assert wait_ended(job_id, run_dir).state == "COMPLETED"
    log = (run_dir / rundir.CONSOLE_LOG).read_text()
    assert "CUDA_VISIBLE_DEVICES=0 gives this run GPUs but torch" in log
    assert "training on the CPU" in log
    info = rundir.read_run_info(run_dir)
    assert (info.status, info.device) == ("finished", "cpu")


def test_a_pending_job_cancelled_leaves_the_run_stopped_before_it_started(cluster, tmp_path):
    run_dir = make_run(tmp_path)
    req = slurm.job_request(run_dir, rundir.load_run_preset(run_dir))
    opts = slurm.SlurmOptions(sbatch_args=("--begin=now+3600", "--cpus-per-task=2"))
    job_id = slurm.submit(req, opts)
    shown = cluster.run("scontrol", "show", "job", job_id).stdout
    assert "NumCPUs=2 " in shown  # the user's own option comes last and wins over ours (1)
    job = slurm.read_job(job_id)
    assert job is not None and job.describe() == "PENDING (BeginTime)"
    assert rundir.run_status(run_dir) == slurm.QUEUED
    assert slurm.cancel(job_id) == "cancelled"
    job = wait_ended(job_id, run_dir)
    assert job.state == "CANCELLED"
    assert slurm.settle_run(run_dir, job) == "stopped"
    assert "before the run started" in (rundir.read_run_info(run_dir).end_message or "")


def test_a_job_that_dies_before_training_leaves_the_run_crashed_with_why(cluster, tmp_path):
    run_dir = make_run(tmp_path)
    req = slurm.job_request(run_dir, rundir.load_run_preset(run_dir))
    job_id = slurm.submit(req, slurm.SlurmOptions(python=str(tmp_path / "no-python")))
    job = wait_ended(job_id, run_dir)
    assert job.state == "FAILED"
    assert slurm.settle_run(run_dir, job) == "crashed"
    message = rundir.read_run_info(run_dir).end_message or ""
    assert message.startswith(f"Slurm job {job_id} ended FAILED")
    assert f"slurm-{job_id}.out" in message


def test_attach_waits_for_a_queued_slurm_run_and_follows_it_to_its_end(cluster, tmp_path):
    import subprocess
    import sys

    run_dir = make_run(tmp_path)
    req = slurm.job_request(run_dir, rundir.load_run_preset(run_dir))
    job_id = slurm.submit(req, slurm.SlurmOptions(sbatch_args=("--begin=now+3",)))
    assert slurm.read_job(job_id).describe() == "PENDING (BeginTime)"  # type: ignore[union-attr]
    assert rundir.run_status(run_dir) == slurm.QUEUED
    attach = subprocess.run(
        [sys.executable, "-m", "cockpit", "attach", str(run_dir), "--no-ui"],
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )
    assert attach.returncode == 0, attach.stderr
    assert "step 40/40" in attach.stdout
    assert rundir.run_status(run_dir) == "finished"


def test_a_two_gpu_job_trains_under_torchrun_and_stops_through_rank_zero(
    cluster, tmp_path, monkeypatch
):
    if cluster.gpus < 2:
        pytest.skip("the test cluster has no fake GPUs here (mknod was not allowed)")
    run_dir = make_run(tmp_path, *SHARED_RUN)
    req = slurm.job_request(run_dir, rundir.load_run_preset(run_dir), gpus=2, cpus=2)
    req = dataclasses.replace(req, mem_bytes=2 << 30)  # two CPU ranks (gloo): the node has 8 GB
    monkeypatch.setenv("GPT_COCKPIT_FAULT", "hold_at_step=8")  # rank 0 waits for the stop there
    job_id = slurm.submit(req)
    assert (
        "torch.distributed.run --standalone --nproc-per-node 2"
        in (run_dir / slurm.JOB_SCRIPT).read_text()
    )
    wait_for(lambda: last_step(run_dir) >= 8, "step 8 of the two-rank run")
    assert rundir.read_run_info(run_dir).world_size == 2
    assert slurm.cancel(job_id) == "asked to stop with a checkpoint"
    wait_ended(job_id, run_dir)
    info = rundir.read_run_info(run_dir)
    assert info.status == "stopped", info.end_message
    assert 8 <= info.step < 60
    assert events_of(run_dir, "end")[-1]["reason"] == "stopped"
    assert "asked rank 0 to stop" in (run_dir / f"slurm-{job_id}.out").read_text()
