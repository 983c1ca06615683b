"""The test Slurm cluster itself: jobs run, fake GPUs are given out, impossible jobs are refused."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm


def _wait_done(cluster, job_id: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = cluster.run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T").stdout.strip()
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
            return state
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {state} after {timeout} s")


def _sbatch(cluster, tmp_path: Path, *args: str) -> str:
    out = cluster.run("sbatch", "--parsable", f"--chdir={tmp_path}", "-o", "job-%j.out", *args)
    return out.stdout.strip().split(";")[0]


def test_a_job_runs_and_gets_a_fake_gpu(cluster, tmp_path):
    job = _sbatch(cluster, tmp_path, "--gres=gpu:1", "--wrap", 'echo "gpus=$CUDA_VISIBLE_DEVICES"')
    assert _wait_done(cluster, job) == "COMPLETED"
    text = (tmp_path / f"job-{job}.out").read_text()
    expected = "gpus=0" if cluster.gpus else "gpus="
    assert text.strip() == expected


def test_impossible_requests_are_refused_at_submission(cluster, tmp_path):
    too_much = cluster.run(
        "sbatch", f"--mem={cluster.memory_mb + 1}", "--wrap", "true", check=False
    )
    assert too_much.returncode != 0
    assert "Requested node configuration is not available" in too_much.stderr
    unknown = cluster.run("sbatch", "-p", "nowhere", "--wrap", "true", check=False)
    assert unknown.returncode != 0 and "invalid partition" in unknown.stderr.lower()
    if cluster.gpus:
        gpus = cluster.run(
            "sbatch", f"--gres=gpu:{cluster.gpus + 1}", "--wrap", "true", check=False
        )
        assert gpus.returncode != 0
