"""The queue on the test Slurm cluster, end to end through the commands a person types."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_runs import TINY, events_of, home_env, step_losses, wait_for, write_corpus

from cockpit import rundir
from cockpit.campaign import slurm
from cockpit.campaign.store import Queue
from cockpit.plan.presets import Preset, apply_overrides, load_preset

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

RUN_TIMEOUT_S = 300
ONE_CPU = "--sbatch-arg=--cpus-per-task=1"  # the test node has more: every entry runs at once
TICK = "--tick=0.5"  # the scheduler looks at its jobs (one squeue for all) every 0.5 s, not 2 s


def cockpit(*argv: str, env: dict[str, str] | None = None, timeout: float = 60):
    """`gpt-cockpit ARGV` in a fresh interpreter, as a person runs it."""
    return subprocess.run(
        [sys.executable, "-m", "cockpit", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or dict(os.environ),
    )


def tiny_preset_file(tmp_path: Path, *overrides: str) -> Path:
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        write_corpus(tmp_path)
    preset = apply_overrides(Preset(name="tiny_test"), [*TINY, f"data.source={corpus}", *overrides])
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(preset.to_dict(), indent=2))
    return path


def queue_rows() -> list[dict]:
    out = cockpit("queue", "--json")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.fixture(scope="module")
def night(slurm_cluster, tmp_path_factory):
    """One `queue run --on slurm` for a 2-value sweep, one more CPU run and, where the cluster has
    fake GPUs, a one-GPU entry: their jobs run side by side (one CPU each). Yields the home the
    queue lives in (its tests point their own environment there), `queue plan`'s output and
    `queue run`'s result."""
    root = tmp_path_factory.mktemp("night")
    with pytest.MonkeyPatch.context() as env:
        for var, value in home_env(root).items():
            env.setenv(var, value)
        env.delenv("GPT_COCKPIT_FAULT", raising=False)
        preset = tiny_preset_file(root)
        added = cockpit(
            "queue", "add", str(preset), "--device", "cpu", "--sweep", "train.lr=1e-3,3e-3"
        )
        assert added.returncode == 0, added.stderr
        added = cockpit(
            "queue", "add", str(preset), "--device", "cpu", "--set", "train.max_steps=30"
        )
        assert added.returncode == 0, added.stderr
        if slurm_cluster.gpus:
            added = cockpit("queue", "add", str(preset), "--gpus", "1", "--on", "slurm")
            assert added.returncode == 0, added.stderr
        plan = cockpit("queue", "plan", "--on", "slurm", ONE_CPU)
        ran = cockpit(
            "queue", "run", "--on", "slurm", "--foreground", ONE_CPU, TICK, timeout=RUN_TIMEOUT_S
        )
    yield {"home": root, "plan": plan, "ran": ran, "gpus": slurm_cluster.gpus}


def at_home(monkeypatch, root: Path) -> None:
    """This test's commands on the queue and runs of the home under `root`."""
    for var, value in home_env(root).items():
        monkeypatch.setenv(var, value)


def test_a_sweep_and_one_more_run_all_finish_on_slurm_and_read_as_local_runs(night, monkeypatch):
    at_home(monkeypatch, night["home"])
    plan = night["plan"]
    assert plan.returncode == 0, plan.stderr
    scripts = plan.stdout.split("#!/bin/bash")[1:]
    cpu_scripts = [text for text in scripts if "--gres=gpu" not in text]
    assert len(cpu_scripts) == 3
    assert all("#SBATCH --signal=B:USR1@120" in text for text in scripts)
    assert all("#SBATCH --cpus-per-task=1" in text for text in cpu_scripts)

    ran = night["ran"]
    assert ran.returncode == 0, ran.stdout + ran.stderr
    rows = queue_rows()[:3]  # the CPU entries, in the order they were added
    assert [r["state"] for r in rows] == ["done"] * 3, [(r["state"], r["reason"]) for r in rows]
    assert {r["backend"] for r in rows} == {"slurm"}
    assert all(r["backend_job"].isdigit() for r in rows)
    assert len({r["backend_job"] for r in rows}) == 3  # one job per entry
    run_dirs = [Path(r["run_dir"]) for r in rows]
    assert len(set(run_dirs)) == 3
    for row, run_dir in zip(rows, run_dirs, strict=True):
        assert slurm.job_of_run(run_dir) == row["backend_job"]
        assert rundir.read_run_info(run_dir).status == "finished"
        assert events_of(run_dir, "end")[-1]["reason"] == "finished"
    assert [len(step_losses(d)) for d in run_dirs] == [40, 40, 30]

    listed = cockpit("runs", "--json")
    assert listed.returncode == 0, listed.stderr
    statuses = {}
    for line in listed.stdout.splitlines():
        record = json.loads(line)
        statuses[Path(record["path"]).resolve()] = record["status"]
    assert all(statuses.get(d.resolve()) == "finished" for d in run_dirs), statuses

    compared = cockpit("compare", *map(str, run_dirs), "--json")
    assert compared.returncode == 0, compared.stderr
    result = json.loads(compared.stdout)
    assert len(result["runs"]) == 3
    assert "train.lr" in result["differences"]


def test_stop_now_checkpoints_a_slurm_run_and_requeued_it_resumes_exactly(cluster, tmp_path):
    preset_file = tiny_preset_file(tmp_path, "train.max_steps=60")
    preset = load_preset(str(preset_file))
    reference = rundir.create_run_dir(preset, tmp_path / "reference")
    ref_job = slurm.submit(slurm.job_request(reference, rundir.load_run_preset(reference), cpus=1))

    assert cockpit("queue", "add", str(preset_file), "--device", "cpu").returncode == 0
    held = dict(os.environ, GPT_COCKPIT_FAULT="hold_at_step=12")  # waits there to be stopped
    scheduler = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cockpit",
            "queue",
            "run",
            "--on",
            "slurm",
            "--foreground",
            ONE_CPU,
            TICK,
        ],
        env=held,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # looks at the queue's database here (a `queue --json` a look would start an interpreter
        # each time); the command's own view once the entry runs
        with Queue() as queue:
            entry = wait_for(lambda: next((e for e in queue.entries() if e.run_dir), None), "a run")
            wait_for(lambda: queue.get(entry.id).state == "running", "the entry running")
        run_dir = Path(entry.run_dir)
        (listed,) = queue_rows()
        assert listed["state"] == "running" and listed["run_dir"] == str(run_dir)
        assert listed["job"].startswith(f"job {listed['backend_job']} RUNNING on {cluster.node}")
        table = cockpit("queue")
        assert f"job {listed['backend_job']} RUNNING" in table.stdout
        wait_for(lambda: (events_of(run_dir, "step") or [{"step": 0}])[-1]["step"] >= 12, "step 12")
        stop = cockpit("queue", "stop", "--now")
        assert stop.returncode == 0, stop.stderr
        out, _ = scheduler.communicate(timeout=120)
    finally:
        if scheduler.poll() is None:
            scheduler.kill()
            scheduler.wait()
    assert scheduler.returncode == 0, out
    (row,) = queue_rows()
    assert row["state"] == "stopped", (row, out)
    info = rundir.read_run_info(run_dir)
    assert info.status == "stopped" and info.step == 12  # where it was held
    assert (run_dir / rundir.CHECKPOINTS / "last.pt").is_file()

    retried = cockpit("queue", "retry", str(row["id"]))
    assert retried.returncode == 0, retried.stderr
    ran = cockpit(
        "queue", "run", "--on", "slurm", "--foreground", ONE_CPU, TICK, timeout=RUN_TIMEOUT_S
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    (row,) = queue_rows()
    assert row["state"] == "done" and Path(row["run_dir"]) == run_dir
    assert [s["resumed_from"] for s in events_of(run_dir, "start")] == [None, info.step]
    wait_for(lambda: rundir.read_run_info(reference).status == "finished", "the reference's end")
    assert step_losses(run_dir) == step_losses(reference)  # exactly, step for step
    assert slurm.read_job(ref_job) is not None


def test_an_entry_slurm_refuses_fails_with_slurms_reason(cluster, tmp_path):
    preset = tiny_preset_file(tmp_path)
    big = ["--set", "model.n_layer=24", "--set", "model.n_embd=2048", "--set", "model.n_head=16"]
    assert cockpit("queue", "add", str(preset), "--device", "cpu", *big).returncode == 0
    ran = cockpit(
        "queue", "run", "--on", "slurm", "--foreground", ONE_CPU, TICK, timeout=RUN_TIMEOUT_S
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    (row,) = queue_rows()
    assert row["state"] == "failed"
    assert row["reason"] == (
        "could not start: Slurm refused the job: Requested node configuration is not available"
        " (Memory specification can not be satisfied)"
    )
    assert cluster.job_ids() == []


def test_queue_run_on_slurm_without_slurm_is_one_line(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # no sbatch anywhere
    ran = cockpit("queue", "run", "--on", "slurm", "--foreground", env=env)
    assert ran.returncode == 2
    (line,) = ran.stderr.splitlines()
    assert line.startswith("gpt-cockpit: error: sbatch, squeue, scontrol, scancel not found")


def test_a_bad_sbatch_arg_is_one_line(tmp_path):
    ran = cockpit("queue", "run", "--on", "slurm", "--sbatch-arg", "constraint=a100")
    assert ran.returncode == 2
    assert ran.stderr.strip() == (
        "gpt-cockpit: error: --sbatch-arg 'constraint=a100' is not one sbatch option"
        " (e.g. --constraint=a100)"
    )


def test_a_one_gpu_entry_gets_its_gpu_from_slurm_and_trains_on_the_cpu_saying_so(
    night, monkeypatch
):
    if not night["gpus"]:
        pytest.skip("the test cluster has no fake GPUs here (mknod was not allowed)")
    at_home(monkeypatch, night["home"])
    assert "#SBATCH --gres=gpu:1" in night["plan"].stdout
    assert night["ran"].returncode == 0, night["ran"].stdout + night["ran"].stderr
    row = queue_rows()[3]  # added after the three CPU entries
    assert row["state"] == "done", row
    assert row["device"] == "1 GPU"  # which one was Slurm's choice
    log = (Path(row["run_dir"]) / rundir.CONSOLE_LOG).read_text()
    assert "CUDA_VISIBLE_DEVICES=0 gives this run GPUs but torch" in log
    assert rundir.read_run_info(Path(row["run_dir"])).device == "cpu"
