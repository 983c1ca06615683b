"""Runs trained as real Slurm jobs (tests/slurm_cluster.py): to the end, stopped, requeued, refused."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_runs import SHARED_RUN, events_of, home_env, make_run, step_losses, wait_for

from cockpit import rundir, runs
from cockpit.campaign import slurm

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

JOB_TIMEOUT_S = 120.0


def wait_ended(job_id: str, run_dir: Path) -> slurm.JobState:
    """The job's last state once it has ended (the run's console.log in the failure message)."""

    def ended() -> slurm.JobState | None:
        job = slurm.read_job(job_id)
        return job if job is not None and job.ended else None

    try:
        return wait_for(ended, f"end of job {job_id}")
    except AssertionError as exc:
        log = (run_dir / rundir.CONSOLE_LOG).read_text(errors="replace")[-2000:]
        raise AssertionError(f"{exc}\nconsole.log:\n{log}") from None


def submit(run_dir: Path, **request: object) -> str:
    req = slurm.job_request(run_dir, rundir.load_run_preset(run_dir), **request)  # type: ignore[arg-type]
    return slurm.submit(req)


def last_step(run_dir: Path) -> int:
    steps = events_of(run_dir, "step")
    return steps[-1]["step"] if steps else 0


@dataclasses.dataclass
class Ended:
    """One job of the `ended` fixture: its run, its id, its last state."""

    run_dir: Path
    job_id: str
    job: slurm.JobState


@pytest.fixture(scope="module")
def ended(slurm_cluster, tmp_path_factory) -> dict[str, object]:
    """Jobs that run to their end, submitted together and waited for once (they train side by
    side on the test node, one CPU each): a CPU run (also the uninterrupted reference of the
    requeue test), a one-GPU run where the cluster has fake GPUs, one whose interpreter does not
    exist, and one that starts 3 s late with `attach --no-ui` following it from the moment it
    is queued. In a home of their own (`home`): the run index that lists them is there."""
    root = tmp_path_factory.mktemp("ended")
    with pytest.MonkeyPatch.context() as env:
        for var, value in home_env(root).items():
            env.setenv(var, value)
        env.delenv("GPT_COCKPIT_FAULT", raising=False)
        run_dirs = {name: make_run(root, name=name) for name in ("attached", "no-python")}
        req = slurm.job_request(run_dirs["attached"], rundir.load_run_preset(run_dirs["attached"]))
        jobs = {"attached": slurm.submit(req, slurm.SlurmOptions(sbatch_args=("--begin=now+3",)))}
        queued = (
            slurm.read_job(jobs["attached"]).describe(),  # type: ignore[union-attr]
            rundir.run_status(run_dirs["attached"]),
        )
        attach = subprocess.Popen(
            [sys.executable, "-m", "cockpit", "attach", str(run_dirs["attached"]), "--no-ui"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            run_dirs["cpu"] = make_run(root, *SHARED_RUN, name="cpu")
            jobs["cpu"] = submit(run_dirs["cpu"])
            seen = {slurm.read_job(jobs["cpu"]).state}  # type: ignore[union-attr]
            if slurm_cluster.gpus:
                run_dirs["gpu"] = make_run(root, name="gpu")
                jobs["gpu"] = submit(run_dirs["gpu"], gpus=1, cpus=1)  # beside the others
            req = slurm.job_request(
                run_dirs["no-python"], rundir.load_run_preset(run_dirs["no-python"])
            )
            no_python = slurm.SlurmOptions(python=str(root / "no-python"))
            jobs["no-python"] = slurm.submit(req, no_python)
            out: dict[str, object] = {
                name: Ended(run_dirs[name], job_id, wait_ended(job_id, run_dirs[name]))
                for name, job_id in jobs.items()
            }
            stdout, stderr = attach.communicate(timeout=JOB_TIMEOUT_S)
        finally:
            if attach.poll() is None:
                attach.kill()
                attach.wait()
    followed = subprocess.CompletedProcess(attach.args, attach.returncode, stdout, stderr)
    return {**out, "seen": seen, "home": root, "queued": queued, "attach": followed}


def test_a_tiny_cpu_run_trains_to_its_end_as_a_slurm_job(ended, monkeypatch):
    cpu: Ended = ended["cpu"]  # type: ignore[assignment]
    run_dir, job_id = cpu.run_dir, cpu.job_id
    assert slurm.job_of_run(run_dir) == job_id
    assert (run_dir / slurm.JOB_SCRIPT).read_text().startswith("#!/bin/bash\n#SBATCH")
    assert cpu.job.state == "COMPLETED", cpu.job.describe()
    assert ended["seen"] <= {"PENDING", "RUNNING", "COMPLETED"}
    assert rundir.run_status(run_dir) == "finished"
    assert sorted(step_losses(run_dir)) == list(range(1, 61))
    assert events_of(run_dir, "end")[-1]["reason"] == "finished"
    out = (run_dir / f"slurm-{job_id}.out").read_text()
    assert "restart 0" in out and "fresh start" in out
    assert "exited with 0" in out
    # `runs` finds it from anywhere (the run index of the home it was submitted from)
    for var, value in home_env(ended["home"]).items():  # type: ignore[arg-type]
        monkeypatch.setenv(var, value)
    listed = {r.run_dir.resolve(): r.status for r in runs.list_runs()}
    assert listed[run_dir.resolve()] == "finished"
    # one CPU granted: one thread (GPT_COCKPIT_CPU_THREADS from SLURM_CPUS_PER_TASK)
    assert "cpu threads: 1 of" in (run_dir / rundir.CONSOLE_LOG).read_text()


def test_runs_stopped_midway_resume_exactly_when_requeued_by_hand_the_time_limit_or_a_node_failure(
    cluster, ended, tmp_path, monkeypatch
):
    """Runs side by side, each held at a known step: one cancelled (SIGTERM: it stops with a
    checkpoint) and requeued by hand, one sent the time limit's USR1 (it checkpoints, then the
    job requeues itself), and one whose node then goes DOWN under it (slurmctld's verdict on a
    failed node, or an admin's: Slurm cancels the job "due to node failure" and requeues it,
    --requeue). All three resume from their checkpoint and train exactly as the run that went
    straight through; their requeued jobs wait out Slurm's requeue delay together. Beside them
    (where the cluster has two fake GPUs) a two-rank job under torchrun, cancelled, stops
    through rank 0."""
    reference: Path = ended["cpu"].run_dir  # type: ignore[attr-defined]
    ranks = make_run(tmp_path, *SHARED_RUN, name="ranks") if cluster.gpus >= 2 else None
    if ranks is not None:  # first: its three interpreters take longest to start
        req = slurm.job_request(ranks, rundir.load_run_preset(ranks), gpus=2, cpus=2)
        req = dataclasses.replace(req, mem_bytes=2 << 30)  # two CPU ranks (gloo): 8 GB node
        monkeypatch.setenv("GPT_COCKPIT_FAULT", "hold_at_step=8")  # rank 0 waits there
        ranks_job = slurm.submit(req)
        assert (
            "torch.distributed.run --standalone --nproc-per-node 2"
            in (ranks / slurm.JOB_SCRIPT).read_text()
        )
    cut = make_run(tmp_path, *SHARED_RUN, name="cut")
    timed = make_run(tmp_path, *SHARED_RUN, name="timed")
    downed = make_run(tmp_path, *SHARED_RUN, name="node-down")
    monkeypatch.setenv("GPT_COCKPIT_FAULT", "hold_at_step=12")  # the job's env: waits there
    job_id = submit(cut)
    down_job = submit(downed)
    monkeypatch.setenv("GPT_COCKPIT_FAULT", "hold_at_step=8")
    timed_job = submit(timed)
    held = [(cut, 12), (timed, 8), (downed, 12), *([(ranks, 8)] if ranks is not None else [])]
    wait_for(lambda: all(last_step(d) >= k for d, k in held), "every run at its held step")
    assert slurm.cancel(job_id) == "asked to stop with a checkpoint"
    slurm.warn_time_limit(timed_job)  # what Slurm sends SIGNAL_LEAD_S before --time runs out
    if ranks is not None:
        assert rundir.read_run_info(ranks).world_size == 2
        assert slurm.cancel(ranks_job) == "asked to stop with a checkpoint"

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

    if ranks is not None:
        wait_ended(ranks_job, ranks)
        info = rundir.read_run_info(ranks)
        assert info.status == "stopped", info.end_message
        assert 8 <= info.step < 60  # rank 0 held at 8; the ranks agree on the stop soon after
        assert events_of(ranks, "end")[-1]["reason"] == "stopped"
        assert "asked rank 0 to stop" in (ranks / f"slurm-{ranks_job}.out").read_text()

    # the node fails under the one run left on it: the time-limited job has requeued itself
    def timed_requeued() -> bool:
        job = slurm.read_job(timed_job)
        return rundir.run_status(timed) != "running" and job is not None and job.waiting

    wait_for(timed_requeued, "the time-limited job back in the queue")
    try:
        cluster.run("scontrol", "update", f"nodename={cluster.node}", "state=down", "reason=test")
        wait_for(lambda: len(events_of(downed, "start")) == 2, "the node-failed job's restart")
    finally:  # the node returns by itself (ReturnToService=2); make sure of it for what follows
        if "down" in cluster.node_state().lower():
            cluster.run(
                "scontrol", "update", f"nodename={cluster.node}", "state=resume", check=False
            )

    wait_for(lambda: len(events_of(timed, "start")) == 2, "the requeued job's start")
    for run_dir in (cut, timed, downed):
        wait_for(lambda d=run_dir: rundir.read_run_info(d).status == "finished", "a resumed end")
        assert step_losses(run_dir) == step_losses(reference)  # exactly, step for step
        assert len(step_losses(run_dir)) == 60
    assert [s["resumed_from"] for s in events_of(cut, "start")] == [None, stopped_at]

    starts = events_of(timed, "start")
    ends = events_of(timed, "end")
    assert [e["reason"] for e in ends] == ["stopped", "finished"]
    assert starts[1]["resumed_from"] == ends[0]["step"] == 8
    out = (timed / f"slurm-{timed_job}.out").read_text()
    assert "the time limit is near" in out and "requeueing job" in out
    assert "restart 1" in out and "--resume" in out
    assert "SIGTERM received" not in out  # the requeue's own SIGTERM finds nothing left to stop
    assert wait_ended(timed_job, timed).state == "COMPLETED"

    assert [e["reason"] for e in events_of(downed, "end")] == ["stopped", "finished"]
    assert [s["resumed_from"] for s in events_of(downed, "start")] == [None, 12]
    out = (downed / f"slurm-{down_job}.out").read_text()
    assert "DUE TO NODE FAILURE" in out and "stopping the run with a checkpoint" in out
    assert "restart 1" in out and "--resume" in out
    assert wait_ended(down_job, downed).state == "COMPLETED"


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


def test_a_gpu_entry_gets_its_gpu_from_slurm_and_says_it_trains_on_the_cpu(ended):
    if "gpu" not in ended:
        pytest.skip("the test cluster has no fake GPUs here (mknod was not allowed)")
    gpu: Ended = ended["gpu"]  # type: ignore[assignment]
    assert gpu.job.state == "COMPLETED"
    log = (gpu.run_dir / rundir.CONSOLE_LOG).read_text()
    assert "CUDA_VISIBLE_DEVICES=0 gives this run GPUs but torch" in log
    assert "training on the CPU" in log
    info = rundir.read_run_info(gpu.run_dir)
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


def test_a_job_that_dies_before_training_leaves_the_run_crashed_with_why(ended):
    dead: Ended = ended["no-python"]  # type: ignore[assignment]
    job_id = dead.job_id
    assert dead.job.state == "FAILED"
    assert slurm.settle_run(dead.run_dir, dead.job) == "crashed"
    message = rundir.read_run_info(dead.run_dir).end_message or ""
    assert message.startswith(f"Slurm job {job_id} ended FAILED")
    assert f"slurm-{job_id}.out" in message


def test_attach_waits_for_a_queued_slurm_run_and_follows_it_to_its_end(ended):
    assert ended["queued"] == ("PENDING (BeginTime)", slurm.QUEUED)  # when attach started
    attach: subprocess.CompletedProcess[str] = ended["attach"]  # type: ignore[assignment]
    assert attach.returncode == 0, attach.stderr
    assert "step 40/40" in attach.stdout
    attached: Ended = ended["attached"]  # type: ignore[assignment]
    assert rundir.run_status(attached.run_dir) == "finished"
