"""The scheduler on the fake trainer: the state machine, retries, limits, stalls, requests, adoption."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from fake_trainer import fake_command

from cockpit import rundir, runs
from cockpit.__main__ import main
from cockpit.campaign import planning
from cockpit.campaign.hooks import Notice
from cockpit.campaign.local import LocalBackend
from cockpit.campaign.lock import SchedulerBusy
from cockpit.campaign.money import Limits
from cockpit.campaign.packing import Machine
from cockpit.campaign.progress import read_progress
from cockpit.campaign.scheduler import Scheduler
from cockpit.campaign.store import NewEntry, Queue

GIB = 1024**3
TINY = {
    "train.max_steps": 30,
    "train.warmup_steps": 0,
    "train.eval_interval": 10,
    "train.log_interval": 1,
}


def cpu_machine(ours, ram):
    return Machine((), cores=4, ram_bytes=64 * GIB, max_threads=1), {}


def h100(ours, ram):
    return planning.whatif_machine("H100")


def fake(monkeypatch, *faults: str, step_s: float = 0.002) -> list[bool]:
    """runs.launch starts the fake trainer; launch N gets faults[N] (none after the list).

    Steps are quick: a test that acts on a live run holds it with a pause (HELD, pause_at)
    rather than slowing every run down to have time to act."""
    calls: list[bool] = []

    def command(run_dir, *, device="auto", resume=False, **_):
        options = faults[len(calls)] if len(calls) < len(faults) else ""
        calls.append(resume)
        return [
            "env",
            f"FAKE_TRAINER=step_s={step_s},{options}",
            *fake_command(run_dir, device=device, resume=resume),
        ]

    monkeypatch.setattr(runs, "child_command", command)
    return calls


def scheduler(queue, machine=cpu_machine, **kwargs) -> Scheduler:
    lines: list[str] = []
    s = Scheduler(queue, LocalBackend(), machine=machine, tick_s=0.05, say=lines.append, **kwargs)
    s.lines = lines  # type: ignore[attr-defined]
    return s


def drive(s: Scheduler, *, until=None, timeout: float = 60.0) -> None:
    """Tick until the scheduler is done (or `until()` holds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until is not None and until():
            return
        if not s.tick():
            return
        time.sleep(0.05)
    raise AssertionError("the scheduler did not finish in time:\n" + "\n".join(s.lines))


@pytest.fixture
def queue(tmp_path):
    with Queue(tmp_path / "q.sqlite3") as q:
        yield q


def add(queue, n=1, **kwargs):
    return queue.add(
        [NewEntry("tiny_char", overrides=dict(TINY), device="cpu", **kwargs) for _ in range(n)]
    )


def kinds(queue) -> list[str]:
    return [line["kind"] for line in queue.log_lines()]


def test_every_entry_runs_once_to_done(queue, monkeypatch):
    calls = fake(monkeypatch)
    entries = add(queue, 3)
    s = scheduler(queue)
    drive(s)
    done = queue.entries()
    assert [e.state for e in done] == ["done"] * 3
    assert len({e.run_dir for e in done}) == 3 and all(Path(e.run_dir).is_dir() for e in done)
    assert [e.attempts for e in done] == [1, 1, 1] and calls == [False] * 3
    assert all(e.threads == 1 and e.planned_device == "cpu" for e in done)
    assert kinds(queue).count("started") == 3 and kinds(queue)[-1] == "queue-empty"
    assert rundir.read_run_info(done[0].run_dir).status == "finished"
    assert {e.id for e in done} == {e.id for e in entries}


def test_a_run_that_dies_midway_is_retried_in_its_own_directory(queue, monkeypatch):
    fake(monkeypatch, "die_at=12")
    (e,) = add(queue)
    drive(scheduler(queue))
    e = queue.get(e.id)
    assert e.state == "done" and e.attempts == 2
    assert [r["reason"] for r in e.retries] == ["exited with code 1 without an end record"]
    assert len(list(Path(e.runs_root or rundir.runs_root()).iterdir())) == 1
    assert "retried" in kinds(queue)


def test_a_run_killed_by_sigkill_is_retried_and_says_so(queue, monkeypatch):
    fake(monkeypatch, "pause_at=5,pause_s=120")  # live at step 5 until killed; the retry trains
    (e,) = add(queue)
    s = scheduler(queue)
    # its step records, not run.json (which says the step only at an eval, at step 10)
    drive(s, until=lambda: (d := queue.get(e.id).run_dir) and read_progress(d).step >= 5)
    os.kill(int(queue.get(e.id).backend_job), signal.SIGKILL)
    drive(s)
    e = queue.get(e.id)
    assert e.state == "done" and len(e.retries) == 1
    assert "killed by SIGKILL" in e.retries[0]["reason"]


def test_retries_stop_after_two(queue, monkeypatch):
    fake(monkeypatch, "die_at=5", "die_at=5", "die_at=5", "")
    (e,) = add(queue)
    drive(scheduler(queue))
    e = queue.get(e.id)
    assert e.state == "failed" and e.attempts == 3 and len(e.retries) == 2
    assert e.reason.endswith("(after 2 retries)")


@pytest.mark.parametrize(
    ("fault", "words", "notice"),
    [
        ("error_at=5", "injected failure", "failed"),  # an exception: it would fail again
        ("halt_at=5", "halted by a health rule", "halted"),
    ],
)
def test_deterministic_failures_are_not_retried(queue, monkeypatch, fault, words, notice):
    fake(monkeypatch, fault)
    (e,) = add(queue)
    drive(scheduler(queue))
    e = queue.get(e.id)
    assert e.state == "failed" and e.attempts == 1 and not e.retries and words in e.reason
    assert notice in kinds(queue)


def test_a_crash_at_step_zero_is_not_retried(queue, monkeypatch):
    monkeypatch.setattr(
        runs, "child_command", lambda *a, **k: [sys.executable, "-c", "import os; os._exit(3)"]
    )
    (e,) = add(queue)
    drive(scheduler(queue))
    e = queue.get(e.id)
    assert e.state == "failed" and e.attempts == 1 and "crashed at step 0" in e.reason


def test_a_killed_scheduler_is_succeeded_by_one_that_adopts_its_runs(queue, monkeypatch):
    calls = fake(monkeypatch, step_s=0.01)  # live for the successor's first tick, a moment later
    add(queue, 3)
    first = scheduler(queue)
    first.acquire()
    first.tick()
    assert len(queue.entries(states=["running"])) == 3
    first._lock.release()  # as a kill -9 leaves it: the lock gone, the record and the runs there
    second = scheduler(queue)
    second.acquire()
    drive(second)
    done = queue.entries()
    assert [e.state for e in done] == ["done"] * 3 and [e.attempts for e in done] == [1, 1, 1]
    assert len(calls) == 3  # nothing started twice
    assert kinds(queue).count("adopted") == 3


def test_a_claim_that_never_launched_goes_back_to_the_queue(queue, monkeypatch):
    calls = fake(monkeypatch)
    (e,) = add(queue)
    queue.claim(e.id, backend="local", planned_device="cpu", planned_bytes=1)  # then the kill
    drive(scheduler(queue))
    e = queue.get(e.id)
    assert e.state == "done" and not e.retries and len(calls) == 1


def test_two_schedulers_cannot_run_one_queue(queue):
    first = scheduler(queue)
    first.acquire()
    try:
        with pytest.raises(SchedulerBusy, match=f"another scheduler \\(pid {os.getpid()}\\)"):
            scheduler(queue).acquire()
    finally:
        first.release()
    scheduler(queue).acquire()  # free again


HELD = "pause_at=1,pause_s=120"  # silent after step 1 until asked to stop (a live run, for as long as needed)


def test_rm_of_a_running_entry_stops_it_with_a_checkpoint_and_cancels_it(queue, monkeypatch):
    fake(monkeypatch, HELD)  # a waits to be removed; b trains straight through
    a, b = add(queue, 2)
    s = scheduler(queue)
    drive(s, until=lambda: queue.get(a.id).state == "running")
    queue.cancel(str(a.id))
    drive(s)
    assert queue.get(a.id).state == "cancelled" and queue.get(b.id).state == "done"
    assert rundir.read_run_info(queue.get(a.id).run_dir).status == "stopped"


def test_stop_now_stops_the_runs_and_launches_nothing_more(queue, monkeypatch):
    fake(monkeypatch, *[HELD] * 4)  # the first night's four; the next night trains straight
    entries = add(queue, 6)
    s = scheduler(queue)
    drive(s, until=lambda: len(queue.entries(states=["running"])) == 4)
    queue.set_meta("stop", "now")
    drive(s)
    states = [queue.get(e.id).state for e in entries]
    assert states == ["stopped"] * 4 + ["queued"] * 2
    assert all(queue.get(e.id).reason == "queue stop --now" for e in entries[:4])

    # the next night: `queue retry` puts the stopped ones back, in their own run directories
    monkeypatch.setenv("GPT_COCKPIT_QUEUE_DB", str(queue.path))
    assert main(["queue", "retry", str(entries[0].id)]) == 0
    assert main(["queue", "retry", str(entries[5].id)]) == 2  # a queued one cannot
    for e in entries[1:4]:
        queue.requeue(e.id, "again", retry=False)
    dirs = {e.id: queue.get(e.id).run_dir for e in entries[:4]}
    again = scheduler(queue)
    again.acquire()  # a new scheduler forgets the old one's stop
    drive(again)
    again.release()
    assert [queue.get(e.id).state for e in entries] == ["done"] * 6
    assert all(queue.get(i).run_dir == d and queue.get(i).attempts == 2 for i, d in dirs.items())


def test_the_deadline_stops_runs_and_refuses_what_would_not_finish(queue, monkeypatch):
    fake(monkeypatch, step_s=0.05)
    now = [time.time()]
    a, b = add(queue, 2)
    s = scheduler(queue, limits=Limits(until=now[0] + 3600), clock=lambda: now[0])
    drive(s, until=lambda: queue.get(a.id).state == "running")
    now[0] += 4000
    drive(s)
    assert queue.get(a.id).state == "stopped" and "deadline" in queue.get(a.id).reason
    assert "deadline" in kinds(queue)

    (c,) = add(queue)  # the next night: 10 s left, and tiny_char's plan says more
    s = scheduler(queue, limits=Limits(until=time.time() + 10))
    drive(s)
    assert (
        queue.get(c.id).state == "queued"
        and "would not finish before --until" in queue.get(c.id).reason
    )


def test_the_budget_is_charged_per_gpu_share_and_stops_runs_when_spent(queue, monkeypatch):
    fake(monkeypatch, step_s=0.3)
    now = [time.time()]
    a, b = queue.add([NewEntry("tiny_char", overrides=dict(TINY)) for _ in range(2)])
    limits = Limits(price_per_gpu_hour=36.0, budget=1.0)  # a cent a GPU-second: 100 s
    s = scheduler(queue, machine=h100, limits=limits, clock=lambda: now[0])
    drive(s, until=lambda: len(queue.entries(states=["running"])) == 2)
    assert {queue.get(a.id).planned_device, queue.get(b.id).planned_device} == {"cuda:0"}
    now[0] += 60  # both on GPU 0: each is charged 30 GPU-seconds
    s.tick()
    assert queue.get(a.id).gpu_seconds == pytest.approx(30, abs=1)
    now[0] += 60
    drive(s)
    assert [queue.get(e.id).state for e in (a, b)] == ["stopped", "stopped"], s.lines
    assert "budget reached" in queue.get(a.id).reason and "budget" in kinds(queue)


def test_a_budget_refuses_an_entry_that_would_not_finish_inside_it(queue, monkeypatch):
    fake(monkeypatch)
    (e,) = queue.add([NewEntry("tiny_char", overrides=dict(TINY))])
    s = scheduler(queue, machine=h100, limits=Limits(price_per_gpu_hour=3600.0, budget=1.0))
    drive(s)
    e = queue.get(e.id)
    assert e.state == "queued" and "would not finish inside the budget" in e.reason


def test_a_stalled_run_is_stopped(queue, monkeypatch):
    fake(monkeypatch, "pause_at=5,pause_s=30", step_s=0.05)
    now = [time.time()]
    (e,) = add(queue)
    s = scheduler(queue, clock=lambda: now[0])
    # its step records, not run.json (which says the step only at an eval, after the pause)
    drive(s, until=lambda: (d := queue.get(e.id).run_dir) and read_progress(d).step >= 5)
    s.tick()
    now[0] += 3600  # an hour without a record
    drive(s, timeout=90)
    e = queue.get(e.id)
    assert e.state == "stopped" and e.reason.startswith("stalled: no events for"), s.lines
    info = rundir.read_run_info(e.run_dir)
    assert (info.status, info.step) == ("stopped", 5)  # stopped in its silence, not after it


class Boom:
    def notify(self, notice: Notice) -> None:
        raise RuntimeError("no network")


class Recorder:
    def __init__(self) -> None:
        self.notices: list[Notice] = []

    def notify(self, notice: Notice) -> None:
        self.notices.append(notice)


def test_a_notifier_that_fails_never_stops_the_queue(queue, monkeypatch):
    fake(monkeypatch)
    add(queue, 2)
    seen = Recorder()
    drive(scheduler(queue, notifiers=[Boom(), seen]))
    assert [e.state for e in queue.entries()] == ["done", "done"]
    assert [n.kind for n in seen.notices].count("done") == 2
    assert seen.notices[-1].kind == "queue-empty" and seen.notices[-1].entry is None
    assert any("notification failed: no network" in x["message"] for x in queue.log_lines())


class PruneSecond:
    def __init__(self) -> None:
        self.groups: list[str] = []

    def prune(self, group, runs):
        self.groups.append(group)
        return {
            r.entry.id: "worse than the median"
            for r in runs
            if r.entry.name.endswith("b") and r.step >= 3
        }


def test_the_pruning_policy_stops_a_losing_entry_of_a_group(queue, monkeypatch):
    fake(monkeypatch, "", "pause_at=3,pause_s=120")  # b waits at step 3 until it is pruned
    a, b = queue.add(
        [NewEntry("tiny_char", overrides=dict(TINY), device="cpu", group="g", name=n) for n in "ab"]
    )
    policy = PruneSecond()
    drive(scheduler(queue, pruning=policy))
    assert queue.get(a.id).state == "done"
    assert queue.get(b.id).state == "stopped" and queue.get(b.id).reason == "worse than the median"
    assert "pruned" in kinds(queue) and set(policy.groups) == {"g"}


def test_an_entry_after_another_waits_for_it(queue, monkeypatch):
    fake(monkeypatch)
    (a,) = add(queue)
    (b,) = add(queue, after=a.id, priority=9)
    drive(scheduler(queue))
    a, b = queue.get(a.id), queue.get(b.id)
    assert b.state == "done" and b.started >= a.ended


def test_an_entry_that_cannot_fit_anywhere_never_starts_and_says_why(queue, monkeypatch):
    calls = fake(monkeypatch)
    (e,) = queue.add([NewEntry("tiny_char", overrides=dict(TINY), device="gpu", gpus=2)])
    drive(scheduler(queue, machine=h100))
    e = queue.get(e.id)
    assert e.state == "failed" and e.reason == "never starts here: needs 2 GPUs; H100 has 1 GPU"
    assert not calls and e.run_dir is None


def test_the_list_shows_a_running_entry_where_it_runs_and_when_it_ends(queue, monkeypatch, capsys):
    fake(monkeypatch, "pause_at=3,pause_s=120", step_s=0.02)  # silent after step 3 until stopped
    monkeypatch.setenv("GPT_COCKPIT_QUEUE_DB", str(queue.path))
    (e,) = add(queue)
    s = scheduler(queue)
    drive(s, until=lambda: (d := queue.get(e.id).run_dir) and read_progress(d).step >= 3)
    capsys.readouterr()
    assert main(["queue", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["state"] == "running" and row["device"] == "cpu" and row["threads"] == 1
    assert row["step"] >= 3 and row["max_steps"] == 30 and row["eta"] > time.time()
    assert row["run_dir"] == queue.get(e.id).run_dir
    queue.set_meta("stop", "now")
    drive(s)
    assert queue.get(e.id).state == "stopped"


def test_a_paused_queue_starts_nothing_and_goes_on_when_resumed(queue, monkeypatch):
    calls = fake(monkeypatch)
    add(queue, 2)
    queue.set_paused(True)
    s = scheduler(queue)
    for _ in range(5):
        assert s.tick()  # waits, does not exit
    assert not calls and [e.state for e in queue.entries()] == ["queued", "queued"]
    queue.set_paused(False)
    drive(s)
    assert [e.state for e in queue.entries()] == ["done", "done"]
    assert {"paused", "resumed"} <= set(kinds(queue))


def test_time_a_killed_scheduler_missed_is_charged_to_the_runs_it_left(queue, monkeypatch):
    fake(monkeypatch, HELD, HELD)  # both live until stopped
    now = [time.time()]
    a, b = queue.add([NewEntry("tiny_char", overrides=dict(TINY)) for _ in range(2)])
    first = scheduler(queue, machine=h100, clock=lambda: now[0])
    first.acquire()
    first.tick()  # both start on GPU 0; its heartbeat is now
    first._lock.release()  # killed
    now[0] += 100  # nobody watched for 100 s
    second = scheduler(queue, machine=h100, clock=lambda: now[0])
    second.acquire()
    second.tick()
    assert queue.get(a.id).gpu_seconds == pytest.approx(50, abs=1)
    assert queue.get(b.id).gpu_seconds == pytest.approx(50, abs=1)
    queue.set_meta("stop", "now")
    drive(second)
    second.release()
    assert [queue.get(e.id).state for e in (a, b)] == ["stopped", "stopped"]
