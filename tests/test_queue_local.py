"""The local backend's launch (GPU pinning, torchrun, CPU threads), this machine's GPUs as the
packer sees them, and how an ended run's end becomes a retry or a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from cockpit import rundir, runs
from cockpit.campaign import local, planning
from cockpit.campaign.backend import Placement
from cockpit.campaign.local import LocalBackend
from cockpit.campaign.store import NewEntry, Queue
from cockpit.plan import gpu as gpu_module
from cockpit.plan.gpu import GpuStatus
from cockpit.plan.presets import Preset

GIB = 1024**3


@pytest.fixture
def entry(tmp_path):
    with Queue(tmp_path / "q.db") as q:
        (e,) = q.add([NewEntry("tiny_char", workdir=str(tmp_path))])
    return e


@pytest.fixture
def launched(monkeypatch):
    seen: dict = {}

    def fake_launch(run_dir, **kwargs):
        seen.update(kwargs, cwd=str(Path.cwd()), run_dir=run_dir)
        return runs.RunHandle(Path(run_dir), None)

    monkeypatch.setattr(runs, "launch", fake_launch)
    monkeypatch.setattr(runs.RunHandle, "pid", property(lambda self: 4242))
    return seen


def test_a_gpu_entry_is_pinned_to_its_gpu(entry, launched, tmp_path):
    job = LocalBackend().start(entry, tmp_path / "r", Placement(gpus=(3,)), resume=False)
    assert job == "4242"
    assert launched["env"] == {"CUDA_VISIBLE_DEVICES": "3"} and launched["device"] == "cuda"
    assert launched["ranks"] is None and launched["detach"] is True
    assert launched["cwd"] == str(tmp_path)  # relative data paths as at `queue add`


def test_a_multi_gpu_entry_runs_under_torchrun_on_its_gpus(entry, launched, tmp_path):
    LocalBackend().start(entry, tmp_path / "r", Placement(gpus=(0, 2)), resume=True)
    assert launched["env"]["CUDA_VISIBLE_DEVICES"] == "0,2"
    assert launched["ranks"] == runs.Ranks(nproc=2) and launched["resume"] is True


def test_a_cpu_entry_gets_its_threads_and_no_gpu(entry, launched, tmp_path):
    LocalBackend().start(entry, tmp_path / "r", Placement(threads=3), resume=False)
    assert launched["env"] == {"CUDA_VISIBLE_DEVICES": "", "GPT_COCKPIT_CPU_THREADS": "3"}
    assert launched["device"] == "cpu"


def test_memory_other_processes_hold_is_taken_off_a_gpu(monkeypatch):
    statuses = [
        GpuStatus(
            0, "NVIDIA H100 80GB HBM3", 80 * GIB, 30 * GIB, 50 * GIB, 0.0, None, None, None, (9, 0)
        ),
        GpuStatus(
            1, "NVIDIA H100 80GB HBM3", 80 * GIB, 1 * GIB, 79 * GIB, 0.0, None, None, None, (9, 0)
        ),
    ]
    monkeypatch.setattr(gpu_module, "query_gpus", lambda: statuses)
    monkeypatch.setattr(planning, "query_gpus", lambda: statuses)
    # 30 GiB used on GPU 0, of which 20 GiB are this queue's own runs: 10 GiB are someone else's
    machine, specs = planning.local_machine({0: 20 * GIB})
    usable = specs[0].usable_bytes
    assert machine.gpus[0].capacity_bytes == usable - 10 * GIB
    assert machine.gpus[1].capacity_bytes == usable - 1 * GIB
    assert machine.gpus[0].whole_bytes == usable


def ended_run(tmp_path: Path, **changes) -> Path:
    run_dir = rundir.create_run_dir(Preset(name="t"), tmp_path / "run")
    rundir.update_run_info(run_dir, **changes)
    return run_dir


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"status": "finished", "end_reason": "finished"}, "finished"),
        ({"status": "halted", "end_reason": "halted", "end_message": "loss is NaN"}, "halted"),
        (
            {"status": "crashed", "end_reason": "crashed", "end_message": "ValueError: x"},
            "exception",
        ),
        (
            {
                "status": "crashed",
                "end_reason": "crashed",
                "end_message": "RuntimeError: CUDA error: unspecified launch failure",
            },
            "lost-gpu",
        ),
        ({"status": "crashed", "end_reason": "process gone"}, "crashed"),
        ({"status": "error", "end_reason": "error", "end_message": "bad data"}, "error"),
    ],
)
def test_an_ended_run_says_how_it_ended(tmp_path, entry, changes, reason):
    run_dir = ended_run(tmp_path, **changes)
    with Queue(tmp_path / "q.db") as q:
        e = q.set_run_dir(entry.id, str(run_dir))
    state = LocalBackend().poll(e)
    assert state.state == "ended" and state.end_reason == reason


def test_a_child_killed_by_a_signal_is_named(tmp_path):
    assert local._crash_reason(-9) == (
        "oom-or-kill",
        "killed by SIGKILL (the OOM killer, or kill -9)",
    )
    assert local._crash_reason(-15)[1] == "killed by SIGTERM"
    assert local._crash_reason(1)[0] == "crashed"
