"""The scheduler with a backend that packs itself (a cluster), driven tick by tick without one."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from tiny_runs import TINY

from cockpit.campaign.backend import Backend, Placement, RunState
from cockpit.campaign.packing import Machine, Need, Refusal
from cockpit.campaign.planning import parse_gpu_request
from cockpit.campaign.scheduler import Scheduler
from cockpit.campaign.slurm_backend import SlurmBackend, cluster_machine
from cockpit.campaign.store import Entry, NewEntry, Queue
from cockpit.plan.presets import Preset, apply_overrides


class FakeCluster(Backend):
    """Jobs that wait `pending` polls, run `running` polls, then finish; all recorded."""

    name = "fake-cluster"
    packs_itself = True

    def __init__(self, pending: int = 2, running: int = 3) -> None:
        self.pending, self.running = pending, running
        self.started: dict[int, Placement] = {}
        self.polls: dict[int, int] = {}
        self.stopped: list[int] = []

    def place(self, need: Need, machine: Machine) -> Placement | Refusal:
        return SlurmBackend().place(need, machine)

    def start(self, entry: Entry, run_dir: Path, placement: Placement, *, resume: bool) -> str:
        self.started[entry.id] = placement
        return str(1000 + entry.id)

    def poll(self, entry: Entry) -> RunState:
        n = self.polls[entry.id] = self.polls.get(entry.id, 0) + 1
        if entry.id in self.stopped:
            return RunState("ended", end_reason="stopped", message="stopped")
        if n <= self.pending:
            return RunState("starting", message=f"job {entry.backend_job} PENDING (Resources)")
        if n <= self.pending + self.running:
            return RunState("running", step=n)
        return RunState("ended", step=n, end_reason="finished")

    def stop(self, entry: Entry, *, checkpoint: bool = True) -> bool:
        self.stopped.append(entry.id)
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def preset_file(tmp_path) -> Path:
    preset = apply_overrides(Preset(name="tiny_test"), [*TINY, "data.source=unused.txt"])
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(preset.to_dict()))
    return path


def make_scheduler(tmp_path, backend, gpu: str | None = "H100") -> tuple[Scheduler, Queue, Clock]:
    queue = Queue(tmp_path / "queue.sqlite3")
    clock = Clock()
    spec = parse_gpu_request(gpu)[1] if gpu else None
    s = Scheduler(
        queue,
        backend,
        machine=cluster_machine(spec),
        check_launch=False,
        clock=clock,
        say=lambda _line: None,
    )
    return s, queue, clock


def add(queue: Queue, preset_file: Path, runs: Path, n: int = 1, **kw) -> list[Entry]:
    new = NewEntry(preset=str(preset_file), runs_root=str(runs), **kw)
    return queue.add([new] * n)


def test_every_ready_entry_is_submitted_at_once_and_waits_as_starting(tmp_path, preset_file):
    backend = FakeCluster(pending=1)
    s, queue, clock = make_scheduler(tmp_path, backend)
    entries = add(queue, preset_file, tmp_path / "runs", 5, device="gpu", gpus=2)
    s.acquire()
    try:
        s.tick()  # five 2-GPU jobs at once: the cluster places them, not this machine
        assert sorted(backend.started) == [e.id for e in entries]
        assert all(p.gpus == (0, 1) for p in backend.started.values())
        states = {e.state for e in queue.entries()}
        assert states == {"starting"}
        assert {e.backend_job for e in queue.entries()} == {str(1000 + e.id) for e in entries}
        assert all(e.run_dir and Path(e.run_dir).is_dir() for e in queue.entries())
        clock.now += 60
        s.tick()  # still pending: not running, charged nothing
        assert {e.state for e in queue.entries()} == {"starting"}
        assert sum(e.gpu_seconds for e in queue.entries()) == 0
        clock.now += 60
        s.tick()  # running now
        assert {e.state for e in queue.entries()} == {"running"}
        clock.now += 100
        s.tick()  # 100 s of two GPUs each, not shared
        assert [e.gpu_seconds for e in queue.entries()] == [200.0] * 5
        while s.tick():
            clock.now += 10
    finally:
        s.release()
    assert {e.state for e in queue.entries()} == {"done"}


def test_an_entry_bigger_than_the_clusters_gpus_is_never_submitted(tmp_path, preset_file):
    backend = FakeCluster()
    s, queue, _ = make_scheduler(tmp_path, backend, gpu="T4")
    big = {"model.n_layer": 48, "model.n_embd": 4096, "model.n_head": 32}
    (entry,) = add(queue, preset_file, tmp_path / "runs", device="gpu", gpus=1, overrides=big)
    s.acquire()
    try:
        s.tick()
    finally:
        s.release()
    entry = queue.get(entry.id)
    assert entry.state == "failed" and backend.started == {}
    assert entry.reason.startswith("never starts here: needs ")
    assert "the largest GPU here offers" in entry.reason


def test_cpu_entries_ask_for_no_gpu_and_stop_now_reaches_them(tmp_path, preset_file):
    backend = FakeCluster(pending=1, running=100)
    s, queue, clock = make_scheduler(tmp_path, backend, gpu=None)
    entries = add(queue, preset_file, tmp_path / "runs", 2, device="cpu", gpus=0)
    s.acquire()
    try:
        s.tick()
        assert all(p.gpus == () for p in backend.started.values())
        clock.now += 5
        s.tick()  # pending
        s.tick()  # running
        assert {e.state for e in queue.entries()} == {"running"}
        queue.set_meta("stop", "now")
        while s.tick():
            clock.now += 1
    finally:
        s.release()
    assert sorted(backend.stopped) == [e.id for e in entries]
    assert {e.state for e in queue.entries()} == {"stopped"}
    assert sum(e.gpu_seconds for e in queue.entries()) == 0  # CPU jobs cost no GPU time


def test_the_local_backend_still_packs(tmp_path):
    from cockpit.campaign.local import LocalBackend

    assert not LocalBackend.packs_itself and SlurmBackend.packs_itself
    with pytest.raises(NotImplementedError):
        LocalBackend().place(Need(1, "cpu", 0), Machine((), 1, 1))


def test_a_restarted_scheduler_adopts_the_jobs_and_submits_none_twice(tmp_path, preset_file):
    first = FakeCluster(pending=1, running=50)
    s, queue, clock = make_scheduler(tmp_path, first)
    entries = add(queue, preset_file, tmp_path / "runs", 3, device="gpu", gpus=1)
    s.acquire()
    s.tick()
    s.tick()
    s._lock.release()  # killed: its lock goes with it, its record stays
    assert len(first.started) == 3

    second = FakeCluster(pending=0, running=2)
    s2, _, _ = make_scheduler(tmp_path, second)
    s2.acquire()
    try:
        while s2.tick():
            clock.now += 5
    finally:
        s2.release()
    assert second.started == {}  # adopted, never submitted again
    assert {e.state for e in queue.entries()} == {"done"}
    assert [e.attempts for e in queue.entries()] == [1] * len(entries)


def test_a_tick_asks_slurm_about_all_its_jobs_at_once(tmp_path, preset_file, monkeypatch):
    """One squeue a tick for every live job, not one per entry: a sweep of a hundred runs would
    ask slurmctld a hundred times a tick."""
    from cockpit import rundir
    from cockpit.campaign import slurm
    from cockpit.plan.presets import load_preset

    asked: list[list[str]] = []

    def squeue(argv, **_):
        asked.append(list(argv))
        ids = next(a for a in argv if a.startswith("--jobs=")).split("=", 1)[1].split(",")
        lines = "".join(f"{i}|PENDING|Priority||0:00\n" for i in ids)
        return subprocess.CompletedProcess(argv, 0, lines, "")

    monkeypatch.setattr(slurm, "_call", squeue)
    s, queue, _ = make_scheduler(tmp_path, SlurmBackend())
    entries = add(queue, preset_file, tmp_path / "runs", 3, device="gpu", gpus=1)
    for i, e in enumerate(entries):  # three jobs a scheduler before this one submitted
        run_dir = rundir.create_run_dir(load_preset(str(preset_file)), tmp_path / "runs" / f"r{i}")
        queue.claim(e.id, backend="slurm", planned_device="cuda:0", planned_bytes=1)
        queue.record_job(e.id, run_dir=str(run_dir), backend_job=str(500 + i))
    s.tick()  # adopts them
    asked.clear()
    s.tick()
    assert [a[0] for a in asked] == ["squeue"]
    assert "--jobs=500,501,502" in asked[0]
    assert {e.state for e in queue.entries()} == {"starting"}
