"""The app's queue screen shows a Slurm entry's job id and state, as `gpt-cockpit queue` does.

squeue is a stand-in on PATH that prints what the real one prints for the format the cockpit
asks (cockpit.campaign.slurm.SQUEUE_FORMAT: id|state|reason|nodes|time).
"""

from __future__ import annotations

import os
from pathlib import Path

from helpers import app_for_tests, wait_for
from test_queue_screen import open_queue, queued

from cockpit.campaign.store import Queue
from cockpit.campaign.view import build_view, row_texts


def fake_squeue(folder: Path, line: str) -> Path:
    """An squeue that answers every query with `line` and records its arguments."""
    seen = folder / "squeue.args"
    path = folder / "squeue"
    path.write_text(f"#!/bin/sh\necho \"$@\" >> '{seen}'\necho '{line}'\n")
    path.chmod(0o755)
    return seen


def on_slurm(job: str, device: str = "cuda:0") -> int:
    """A queued entry taken by the Slurm backend as job `job`."""
    (entry_id,) = queued("tiny_char")
    with Queue() as queue:
        queue.claim(entry_id, backend="slurm", planned_device=device, planned_bytes=1 << 30)
        queue.mark_running(entry_id, backend_job=job)
    return entry_id


async def test_the_queue_screen_shows_a_slurm_entrys_job_and_its_state(tmp_path, monkeypatch):
    seen = fake_squeue(tmp_path, "4242|PENDING|Resources||0:00")
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    entry_id = on_slurm("4242")
    app = app_for_tests()
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await open_queue(pilot)
        await wait_for(pilot, lambda: bool(screen.view.rows))
        (row,) = screen.view.rows
        assert row["id"] == entry_id and row["job"] == "job 4242 PENDING (Resources)"
        assert row["device"] == "1 GPU"  # which GPU is the cluster's choice, not ours
        assert "job 4242 PENDING (Resources)" in row_texts(row, screen.view.now)[-1]
    assert "--jobs=4242" in seen.read_text()


def test_the_view_reads_every_slurm_job_in_one_call_and_says_only_the_id_without_slurm(
    tmp_path, monkeypatch
):
    first, second = on_slurm("11"), on_slurm("12")
    seen = fake_squeue(tmp_path, "12|RUNNING|None|node3|1:02")
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with Queue() as queue:
        jobs = {r["id"]: r["job"] for r in build_view(queue, gpus=[]).rows}
    assert jobs == {first: "job 11", second: "job 12 RUNNING on node3"}  # 11: squeue forgot it
    assert len(seen.read_text().splitlines()) == 1
    (tmp_path / "squeue").unlink()
    monkeypatch.setenv("PATH", str(tmp_path))  # no Slurm clients here: the ids alone
    with Queue() as queue:
        jobs = {r["id"]: r["job"] for r in build_view(queue, gpus=[]).rows}
    assert jobs == {first: "job 11", second: "job 12"}
