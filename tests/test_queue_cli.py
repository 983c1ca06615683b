"""`gpt-cockpit queue`: adding, sweeps, the list, rm, stop, plan, and every bad input as one line."""

from __future__ import annotations

import json
import os
import re
import sqlite3

import pytest

from cockpit.__main__ import main
from cockpit.campaign.locations import queue_db_path, scheduler_lock_path
from cockpit.campaign.lock import SchedulerLock
from cockpit.campaign.store import Queue
from cockpit.plan import gpu as gpu_module
from cockpit.plan.gpu import GpuStatus

TINY = ["--set", "train.max_steps=30", "--set", "train.warmup_steps=0"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["queue", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def snapshot() -> list:
    if not queue_db_path().exists():
        return []
    with Queue() as q:
        return [(e.id, e.state, e.request, e.reason) for e in q.entries()] + [q.get_meta("stop")]


def test_a_sweep_adds_the_grid_as_one_group(capsys):
    code, out, err = run(
        capsys,
        "add",
        "tiny_char",
        *TINY,
        "--sweep",
        "lr=1e-3,3e-4",
        "--sweep",
        "model.n_layer=1,2,3",
    )
    assert code == 0, err
    with Queue() as q:
        entries = q.entries()
    assert len(entries) == 6 and {e.group for e in entries} == {"tiny_char-sweep1"}
    combos = {(e.overrides["train.lr"], e.overrides["model.n_layer"]) for e in entries}
    assert combos == {(lr, n) for lr in (1e-3, 3e-4) for n in (1, 2, 3)}
    assert all(e.overrides["train.max_steps"] == 30 for e in entries)
    assert out.count("#") == 6 and "queued 6 entries in group tiny_char-sweep1" in err
    code, _, _ = run(capsys, "add", "tiny_char", *TINY, "--sweep", "lr=1e-3,3e-4")
    with Queue() as q:
        assert q.groups() == ["tiny_char-sweep1", "tiny_char-sweep2"]


def test_add_records_the_device_request_order_and_where_runs_go(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run(capsys, "add", "tiny_char", "--device", "cpu", "--priority", "3", "--name", "first")
    code, _, err = run(capsys, "add", "small_char", "--after", "1")
    assert code == 0, err
    with Queue() as q:
        first, second = q.entries()
    assert (first.device, first.gpus, first.priority, first.name) == ("cpu", 0, 3, "first")
    assert (second.device, second.after) == ("any", 1)
    assert first.workdir == str(tmp_path) and first.runs_root == os.environ["GPT_COCKPIT_RUNS"]


def test_the_list_shows_state_memory_eta_and_cost(capsys, monkeypatch):
    monkeypatch.setenv("GPT_COCKPIT_PRICE_PER_GPU_HOUR", "2.5")
    run(capsys, "add", "tiny_char", *TINY)
    code, out, err = run(capsys)
    assert code == 0, err
    head, row, totals = out.strip().splitlines()
    for column in ("state", "device", "memory", "eta", "cost"):
        assert column in head
    assert "queued" in row and "MiB" in row
    assert "1 queued" in totals and "no scheduler running" in totals
    code, out, _ = run(capsys, "--json")
    (line,) = out.strip().splitlines()
    row = json.loads(line)
    assert row["state"] == "queued" and row["planned_bytes"] > 0 and row["eta"] is not None
    assert row["spent"] == 0.0


def test_rm_cancels_an_entry_or_a_group(capsys):
    run(capsys, "add", "tiny_char", *TINY, "--sweep", "lr=1e-3,3e-4", "--name", "lrs")
    run(capsys, "add", "tiny_char", *TINY)
    code, out, _ = run(capsys, "rm", "lrs")
    assert code == 0 and out.count("cancelled") == 2
    code, out, _ = run(capsys, "rm", "3")
    with Queue() as q:
        assert [e.state for e in q.entries()] == ["cancelled"] * 3


def test_plan_packs_small_builtin_presets_onto_one_h100(capsys):
    for name in ("tiny_char", "small_char", "shakespeare_char", "tiny", "small"):
        byte = (
            [] if name.endswith("char") else ["--set", "data.tokenizer=byte"]
        )  # no BPE files here
        code, _, err = run(capsys, "add", name, *byte)
        assert code == 0, err
    code, out, err = run(capsys, "plan", "--gpu", "H100", "--price-per-gpu-hour", "2.49")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("plan for H100: GPU 0 H100 79.1 GiB")
    starts = [x for x in lines if "cuda:0" in x and "start now" in x]
    assert len(starts) == 5  # all five on one card at once
    (peak,) = [x for x in lines if x.startswith("GPU 0:")]
    assert "at most 5 run(s) at once" in peak and int(peak.split("(")[-1].split("%")[0]) <= 100
    assert "GPU-hours:" in lines[-1] and "$" in lines[-1]
    code, out, _ = run(capsys, "plan", "--gpu", "4xA100-80GB", "--json")
    plan = json.loads(out)
    assert len(plan["gpus"]) == 4 and plan["packed_gpu_hours"] <= plan["one_at_a_time_gpu_hours"]


def test_plan_says_why_an_entry_never_starts(capsys):
    run(
        capsys,
        "add",
        "gpt2_124m",
        "--set",
        "data.tokenizer=byte",
        "--set",
        "model.vocab_size=256",
        "--set",
        "train.batch_size=512",
    )
    code, out, err = run(capsys, "plan", "--gpu", "T4")
    assert code == 0, err
    assert "never starts: needs" in out and "the largest GPU here offers" in out


def two_gpus() -> list[GpuStatus]:
    return [
        GpuStatus(i, "NVIDIA H100 80GB HBM3", 80 << 30, 0, 80 << 30, 0.0, None, None, None, (9, 0))
        for i in range(2)
    ]


BAD = [
    (["add", "no_such_preset"], "no preset named 'no_such_preset'"),
    (["add", "tiny_char", "--set", "train.nope=1"], "unknown field"),
    (["add", "tiny_char", "--sweep", "train.nope=1,2"], "unknown field"),
    (["add", "tiny_char", "--sweep", "model.n_head=3,7"], "model.n_head=7"),
    (["add", "tiny_char", "--sweep", "train.lr=1e-3,,2e-3"], "an empty value"),
    (["add", "tiny_char", "--sweep", "train.lr"], "a sweep is written key=v1,v2"),
    (
        ["add", "tiny_char", "--sweep", "lr=1e-3,2e-3", "--name", "taken"],
        "a group of that name exists",
    ),
    (["add", "tiny_char", "--gpus", "3"], "--gpus 3: this machine has 2 GPUs"),
    (["add", "tiny_char", "--after", "99"], "--after 99: no such queue entry"),
    (["add", "tiny_char", "--set", "data.source=/no/such/file.txt"], "no such file or folder"),
    (["rm", "99"], "no queue entry 99"),
    (["rm", "nosuchgroup"], "no queue entry or group 'nosuchgroup'"),
    (["run", "--foreground", "--budget", "lots"], "--budget must be a number of dollars"),
    (["run", "--foreground", "--budget", "25"], "--budget needs a price per GPU-hour"),
    (
        ["run", "--foreground", "--until", "2020-01-01 07:00"],
        "--until 2020-01-01 07:00 is in the past",
    ),
    (["run", "--foreground", "--until", "7pm"], "--until wants HH:MM"),
    (["run", "--price-per-gpu-hour", "-1"], "number of dollars of 0 or more"),
    (["run", "--foreground", "--tick", "0"], "--tick must be a number of seconds above 0, not 0"),
    (["run", "--tick", "nan"], "--tick must be a number of seconds above 0, not nan"),
    (["plan", "--gpu", "Z9000"], "unknown GPU 'Z9000'"),
]


@pytest.mark.parametrize(("argv", "words"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_the_queue_unchanged(capsys, monkeypatch, argv, words):
    monkeypatch.setattr(gpu_module, "query_gpus", two_gpus)
    monkeypatch.setattr(gpu_module, "nvml_problem", lambda: "")
    run(capsys, "add", "tiny_char", *TINY, "--sweep", "lr=1e-3", "--name", "taken")
    before = snapshot()
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and words in err, err
    assert snapshot() == before


def test_two_schedulers_at_once_is_one_line(capsys):
    run(capsys, "add", "tiny_char", *TINY)
    before = snapshot()
    lock = SchedulerLock(scheduler_lock_path())
    try:
        code, _, err = run(capsys, "run", "--foreground")
    finally:
        lock.release()
    assert code == 2 and f"another scheduler (pid {os.getpid()})" in err
    assert len(err.strip().splitlines()) == 1 and snapshot() == before


def test_a_corrupt_database_is_one_line_and_left_alone(capsys):
    path = queue_db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"garbage" * 1000)
    for argv in ([], ["add", "tiny_char"], ["rm", "1"], ["run"], ["plan"]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and "is damaged" in err and len(err.strip().splitlines()) == 1
    assert path.read_bytes() == b"garbage" * 1000


def test_a_newer_database_is_one_line(capsys):
    run(capsys, "add", "tiny_char", *TINY)
    conn = sqlite3.connect(queue_db_path())
    conn.execute("PRAGMA user_version=99")
    conn.close()
    code, _, err = run(capsys)
    assert code == 2 and "newer than this gpt-cockpit" in err


def test_stop_without_a_scheduler_says_so(capsys):
    code, _, err = run(capsys, "stop", "--now")
    assert code == 1 and "no scheduler is running" in err
    assert snapshot() == []


def test_stop_asks_the_running_scheduler(capsys):
    run(capsys, "add", "tiny_char", *TINY)
    lock = SchedulerLock(scheduler_lock_path())
    try:
        code, _, err = run(capsys, "stop", "--now")
    finally:
        lock.release()
    assert code == 0 and "stop its runs with a checkpoint" in err
    with Queue() as q:
        assert q.get_meta("stop") == "now"


def test_a_read_only_database_is_one_line_and_unchanged(capsys):
    from test_queue_store import _read_only

    run(capsys, "add", "tiny_char", *TINY)
    before = snapshot()
    folder = queue_db_path().parent
    files = [*folder.iterdir(), folder]
    _read_only(files, True)
    try:
        for argv in ([], ["add", "tiny_char"], ["rm", "1"], ["run"]):
            code, _, err = run(capsys, *argv)
            assert code == 2 and "cannot be written" in err and len(err.strip().splitlines()) == 1
    finally:
        _read_only(files, False)
    assert snapshot() == before


def test_compare_takes_a_group_for_its_runs(capsys, tmp_path, finished_run):
    from tiny_runs import copy_run

    run(capsys, "add", "tiny_char", *TINY, "--sweep", "lr=1e-3,3e-4", "--name", "lrs")
    with Queue() as q:
        for i, e in enumerate(q.entries()):
            q.set_run_dir(e.id, str(copy_run(finished_run, tmp_path / f"run{i}")))
    assert main(["compare", "lrs", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert len(shown["runs"]) == 2


def test_a_narrow_terminal_keeps_the_name_and_why(capsys, monkeypatch):
    import rich.console

    run(capsys, "add", "tiny_char", *TINY, "--sweep", "lr=1e-3,3e-4")
    monkeypatch.setattr(rich.console.Console, "is_terminal", property(lambda self: True))
    monkeypatch.setenv("COLUMNS", "60")
    code, out, _ = run(capsys)
    assert code == 0
    out = re.sub(r"\x1b\[[0-9;]*m", "", out)  # a terminal gets colours
    head = out.splitlines()[0]
    assert "name" in head and "run / why" in head and "memory" not in head
    assert "tiny_char-sweep1[lr=0.001]" in out
    assert all(len(line) <= 60 for line in out.splitlines()[:-1])
