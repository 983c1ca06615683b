"""Run directories (cockpit.runs) and the `runs`, `attach`, `resume`, `stop` commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from fake_trainer import cockpit_command, use_fake_trainer

from cockpit import rundir, runs
from cockpit.__main__ import main
from cockpit.plan.presets import Preset, apply_overrides
from cockpit.rundir import EndEvent, EventWriter, StartEvent, StepEvent, read_events


def tiny(name: str = "tiny", max_steps: int = 20) -> Preset:
    return apply_overrides(
        Preset(name=name),
        {
            "train.max_steps": max_steps,
            "train.warmup_steps": 2,
            "train.log_interval": 5,
            "train.eval_interval": 10,
        },
    )


def dead_pid() -> tuple[int, float]:
    """The pid and start time of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    started = rundir.process_start_time(proc.pid)
    proc.wait()
    return proc.pid, started or time.time()


def wait_status(run_dir: Path, wanted: tuple[str, ...], timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = rundir.run_status(run_dir)
        if status in wanted:
            return status
        time.sleep(0.05)
    raise AssertionError(f"status stayed {status!r}")


def finished_run(tmp_path: Path, monkeypatch, name: str = "tiny", **options: float) -> Path:
    use_fake_trainer(monkeypatch, **options)
    run_dir = rundir.create_run_dir(tiny(name), root=tmp_path / "runs")
    handle = runs.launch(run_dir, device="cpu", detach=True)
    assert handle.process is not None
    handle.process.wait(timeout=20)
    return run_dir


# --------------------------------------------------------------------------- create / launch / status


def test_create_run_dir_layout_and_unique_ids(tmp_path):
    first = rundir.create_run_dir(tiny(), root=tmp_path)
    second = rundir.create_run_dir(tiny(), root=tmp_path)
    assert first != second and first.parent == second.parent == tmp_path
    assert first.name.endswith("-tiny")
    info = rundir.read_run_info(first)
    assert (
        info.status == "starting"
        and info.preset_name == "tiny"
        and info.schema == rundir.RUN_SCHEMA_VERSION
    )
    assert (first / rundir.CHECKPOINTS).is_dir()
    assert rundir.load_run_preset(first) == tiny()


def test_create_run_dir_refuses_a_used_folder(tmp_path):
    run_dir = rundir.create_run_dir(tiny(), tmp_path / "r")
    with pytest.raises(rundir.RunError, match="already holds a run"):
        rundir.create_run_dir(tiny(), run_dir)


def test_runs_root_prefers_argument_then_env(tmp_path, monkeypatch):
    assert rundir.runs_root(tmp_path) == tmp_path
    monkeypatch.setenv("GPT_COCKPIT_RUNS", str(tmp_path / "env"))
    assert rundir.runs_root() == tmp_path / "env"
    monkeypatch.delenv("GPT_COCKPIT_RUNS")
    assert rundir.runs_root() == Path("runs")


def test_launch_runs_the_child_to_the_end(tmp_path, monkeypatch):
    run_dir = finished_run(tmp_path, monkeypatch)
    info = rundir.read_run_info(run_dir)
    assert info.status == "finished" and info.detached is True
    assert info.command[-3:] == ["--run-dir", str(run_dir), "--device", "cpu"][-3:]
    assert rundir.run_status(run_dir) == "finished"
    kinds = [r["event"] for r in read_events(run_dir / rundir.EVENTS_JSONL)]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("step") == 20


def test_detached_child_has_its_own_session(tmp_path, monkeypatch):
    use_fake_trainer(monkeypatch, step_s=0.05)
    run_dir = rundir.create_run_dir(tiny(max_steps=200), root=tmp_path)
    handle = runs.launch(run_dir, detach=True)
    try:
        assert wait_status(run_dir, ("running",)) == "running"
        assert os.getsid(handle.pid) == handle.pid != os.getsid(0)
    finally:
        assert rundir.stop_run(run_dir)
        handle.process.wait(timeout=20)
    assert rundir.run_status(run_dir) == "stopped"


def test_a_run_reads_starting_until_its_child_is_set_up(tmp_path, monkeypatch):
    use_fake_trainer(monkeypatch, start_delay=0.5)
    run_dir = rundir.create_run_dir(tiny(max_steps=5), root=tmp_path)
    handle = runs.launch(run_dir)
    assert rundir.run_status(run_dir) == "starting"
    assert rundir.read_run_info(run_dir).pid == handle.pid
    assert handle.process.wait(timeout=20) == 0
    assert rundir.run_status(run_dir) == "finished"


def test_dead_pid_reads_as_crashed_and_only_the_launcher_records_it(tmp_path):
    run_dir = rundir.create_run_dir(tiny(), root=tmp_path)
    pid, started = dead_pid()
    rundir.update_run_info(run_dir, status="running", pid=pid, pid_start_time=started)
    assert rundir.run_status(run_dir) == "crashed"
    assert rundir.read_run_info(run_dir).status == "running"  # a reader writes nothing
    assert rundir.run_status(run_dir, update=True) == "crashed"
    info = rundir.read_run_info(run_dir)
    assert info.status == "crashed" and info.end_reason == "process gone"


def test_reused_pid_with_another_start_time_is_not_the_run(tmp_path):
    run_dir = rundir.create_run_dir(tiny(), root=tmp_path)
    me = os.getpid()
    rundir.update_run_info(
        run_dir, status="running", pid=me, pid_start_time=rundir.process_start_time(me) - 3600
    )
    assert rundir.pid_alive(me) and not rundir.pid_alive(me, rundir.process_start_time(me) - 3600)
    assert rundir.run_status(run_dir) == "crashed"


def test_live_pid_with_matching_start_time_is_running(tmp_path):
    run_dir = rundir.create_run_dir(tiny(), root=tmp_path)
    me = os.getpid()
    rundir.update_run_info(
        run_dir, status="running", pid=me, pid_start_time=rundir.process_start_time(me)
    )
    assert rundir.run_status(run_dir) == "running"


def test_end_event_written_before_death_gives_its_status(tmp_path):
    run_dir = rundir.create_run_dir(tiny(), root=tmp_path)
    pid, started = dead_pid()
    rundir.update_run_info(run_dir, status="running", pid=pid, pid_start_time=started)
    with EventWriter(run_dir / rundir.EVENTS_JSONL) as writer:
        writer.emit(EndEvent(step=7, reason="stopped", message="stopped on request"))
    assert rundir.run_status(run_dir) == "stopped"
    assert rundir.read_run_info(run_dir).end_reason is None  # derived, not written
    assert rundir.run_status(run_dir, update=True) == "stopped"
    assert rundir.read_run_info(run_dir).end_reason == "stopped"


def test_starting_without_pid_is_given_a_grace_period(tmp_path):
    run_dir = rundir.create_run_dir(tiny(), root=tmp_path)
    assert rundir.run_status(run_dir) == "starting"
    rundir.update_run_info(run_dir, created=time.time() - 60)
    assert rundir.run_status(run_dir) == "crashed"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "is not a run directory"),
        ("{not json", "cannot read"),
        ("[1, 2]", "is not a JSON object"),
    ],
)
def test_unreadable_run_json(tmp_path, content, message):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    if content is not None:
        (run_dir / rundir.RUN_JSON).write_text(content)
    with pytest.raises(rundir.RunError, match=message):
        rundir.read_run_info(run_dir)


def test_stop_run_not_running_and_kill(tmp_path, monkeypatch):
    use_fake_trainer(monkeypatch, step_s=0.05, ignore_term=1)
    run_dir = rundir.create_run_dir(tiny(max_steps=500), root=tmp_path)
    handle = runs.launch(run_dir)
    wait_status(run_dir, ("running",))
    assert rundir.stop_run(run_dir)  # SIGTERM, ignored by this child
    time.sleep(0.3)
    assert handle.poll() is None
    assert rundir.stop_run(run_dir, kill=True)
    assert handle.process.wait(timeout=10) == -signal.SIGKILL
    assert rundir.run_status(run_dir) == "killed"  # a kill is not a crash
    info = rundir.read_run_info(run_dir)
    assert info.end_reason == "killed" and "SIGKILL" in (info.end_message or "")
    assert not rundir.stop_run(run_dir)


# --------------------------------------------------------------------------- list / find


def make_listing(tmp_path: Path) -> list[Path]:
    root = tmp_path / "runs"
    made = []
    for i, name in enumerate(("alpha", "beta", "gamma")):
        run_dir = rundir.create_run_dir(tiny(name), root / f"2026010{i}-120000-{name}")
        rundir.update_run_info(run_dir, status="finished", created=1000.0 + i, max_steps=20)
        made.append(run_dir)
    return made


def test_list_runs_newest_first_skips_junk_and_shows_the_damaged(tmp_path):
    made = make_listing(tmp_path)
    (tmp_path / "runs" / "junk").mkdir()
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / rundir.RUN_JSON).write_text("{")
    listed = runs.list_runs(tmp_path / "runs")
    assert [s.run_dir for s in listed if s.status != "damaged"] == made[::-1]
    (broken,) = [s for s in listed if s.status == "damaged"]
    assert broken.run_id == "broken" and "cannot read" in broken.problem
    assert runs.list_runs(tmp_path / "nothing") == []


def test_summary_reads_progress_and_losses(tmp_path, monkeypatch):
    run_dir = finished_run(tmp_path, monkeypatch)
    summary = runs.summarize_run(run_dir)
    assert summary.status == "finished" and summary.step == 20 and summary.max_steps == 20
    assert summary.best_val_loss is not None and summary.last_loss is not None
    assert summary.best_val_loss == pytest.approx(
        min(
            r["val_loss"]
            for r in read_events(run_dir / rundir.EVENTS_JSONL)
            if r["event"] == "eval"
        )
    )


def test_summary_of_a_run_that_died_before_setup_takes_max_steps_from_its_preset(tmp_path):
    run_dir = rundir.create_run_dir(tiny(max_steps=77), root=tmp_path)
    pid, started = dead_pid()
    rundir.update_run_info(run_dir, status="running", pid=pid, pid_start_time=started)
    summary = runs.summarize_run(run_dir)
    assert (summary.status, summary.step, summary.max_steps) == ("crashed", 0, 77)
    assert summary.best_val_loss is None and summary.last_loss is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [("20260100-120000-alpha", 0), ("20260101", 1), ("gamma", 2), ("last", 2), ("latest", 2)],
)
def test_find_run(tmp_path, name, expected):
    made = make_listing(tmp_path)
    assert runs.find_run(name, root=tmp_path / "runs") == made[expected]


def test_find_run_by_path_ambiguous_and_missing(tmp_path):
    made = make_listing(tmp_path)
    assert runs.find_run(str(made[1])) == made[1]
    with pytest.raises(rundir.RunError, match="matches 3 runs"):
        runs.find_run("2026", root=tmp_path / "runs")
    with pytest.raises(rundir.RunError, match="no run 'delta'"):
        runs.find_run("delta", root=tmp_path / "runs")


# --------------------------------------------------------------------------- the commands


def test_runs_command_empty(tmp_path, capsys):
    assert main(["--runs-dir", str(tmp_path / "none"), "runs"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and f"no runs in {tmp_path / 'none'}" in err


def test_runs_command_table_and_json(tmp_path, monkeypatch, capsys):
    run_dir = finished_run(tmp_path, monkeypatch, name="tablerun")
    assert main(["--runs-dir", str(tmp_path / "runs"), "runs"]) == 0
    out = capsys.readouterr().out
    header, row = out.splitlines()[:2]
    for column in ("status", "preset", "step", "best val", "last loss", "age", "run"):
        assert column in header
    assert "finished" in row and "tablerun" in row and "20/20" in row and run_dir.name in row
    assert main(["--runs-dir", str(tmp_path / "runs"), "runs", "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    data = json.loads(line)
    assert data["run_id"] == run_dir.name and data["status"] == "finished" and data["step"] == 20
    assert isinstance(data["best_val_loss"], float)


def test_attach_no_ui_prints_history_of_a_finished_run(tmp_path, monkeypatch, capsys):
    run_dir = finished_run(tmp_path, monkeypatch)
    assert main(["--runs-dir", str(tmp_path / "runs"), "attach", "last", "--no-ui"]) == 0
    out, err = capsys.readouterr()
    assert (
        out.splitlines()[0].startswith("step 1/20") and "step 20/20" in out and "eval 20/20" in out
    )
    assert f"attached to {run_dir}" in err and "end: finished at step 20/20" in err


def test_attach_no_ui_follows_a_live_run_to_its_end(tmp_path, monkeypatch, capsys):
    use_fake_trainer(monkeypatch, step_s=0.01)
    run_dir = rundir.create_run_dir(tiny(max_steps=60), root=tmp_path / "runs")
    handle = runs.launch(run_dir)
    wait_status(run_dir, ("running",))
    assert main(["--runs-dir", str(tmp_path / "runs"), "attach", run_dir.name, "--no-ui"]) == 0
    handle.process.wait(timeout=10)
    out = capsys.readouterr().out
    assert "step 60/60" in out and "eval 60/60" in out


def test_attach_no_ui_reports_a_crash_quickly(tmp_path, monkeypatch, capsys):
    use_fake_trainer(monkeypatch, step_s=0.02, ignore_term=1)
    run_dir = rundir.create_run_dir(tiny(max_steps=5000), root=tmp_path / "runs")
    handle = runs.launch(run_dir)
    wait_status(run_dir, ("running",))

    def kill_soon() -> None:
        time.sleep(0.5)
        handle.process.kill()
        handle.process.wait()

    import threading

    threading.Thread(target=kill_soon, daemon=True).start()
    started = time.monotonic()
    assert main(["--runs-dir", str(tmp_path / "runs"), "attach", run_dir.name, "--no-ui"]) == 1
    assert time.monotonic() - started < 0.5 + 3.0
    assert "without an `end` event (crashed)" in capsys.readouterr().err
    assert rundir.run_status(run_dir) == "crashed"
    assert (
        rundir.read_run_info(run_dir).status == "running"
    )  # attach is a reader: it writes nothing


def test_ctrl_c_detaches_an_attach_and_the_run_goes_on(tmp_path, monkeypatch):
    use_fake_trainer(monkeypatch, step_s=0.02)
    run_dir = rundir.create_run_dir(tiny(max_steps=5000), root=tmp_path / "runs")
    handle = runs.launch(run_dir, detach=True)
    try:
        wait_status(run_dir, ("running",))
        attach = subprocess.Popen(
            cockpit_command(
                "--runs-dir", str(tmp_path / "runs"), "attach", run_dir.name, "--no-ui"
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # a shell without job control starts pytest with SIGINT ignored, and a child
            # inherits that: give attach the terminal's default, as a person's shell does
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        assert attach.stdout is not None and attach.stdout.readline().startswith("step 1/5000")
        attach.send_signal(signal.SIGINT)
        _, err = attach.communicate(timeout=20)
        assert attach.returncode == 0, err
        assert f"detached from {run_dir}" in err
        time.sleep(0.2)
        assert handle.poll() is None and rundir.run_status(run_dir) == "running"
    finally:
        rundir.stop_run(run_dir)
        handle.process.wait(timeout=20)
    assert rundir.run_status(run_dir) == "stopped"


def test_attach_unknown_run(tmp_path, capsys):
    assert main(["--runs-dir", str(tmp_path / "runs"), "attach", "nope", "--no-ui"]) == 2
    assert "gpt-cockpit: error: no run 'nope'" in capsys.readouterr().err


def fake_app(monkeypatch) -> list:
    """Put a stand-in cockpit.tui.app in sys.modules; returns the list its cmd_app records into."""
    calls: list = []
    module = types.ModuleType("cockpit.tui.app")
    module.cmd_app = lambda args: calls.append(args) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cockpit.tui.app", module)
    return calls


def test_attach_without_no_ui_opens_the_app_on_the_run(tmp_path, monkeypatch):
    run_dir = finished_run(tmp_path, monkeypatch)
    calls = fake_app(monkeypatch)
    assert main(["--runs-dir", str(tmp_path / "runs"), "attach", run_dir.name[:12]]) == 0
    assert calls[0].attach == str(run_dir)


def test_resume_refuses_a_live_run(tmp_path, monkeypatch, capsys):
    use_fake_trainer(monkeypatch, step_s=0.05)
    run_dir = rundir.create_run_dir(tiny(max_steps=500), root=tmp_path / "runs")
    handle = runs.launch(run_dir)
    try:
        wait_status(run_dir, ("running",))
        assert main(["--runs-dir", str(tmp_path / "runs"), "resume", run_dir.name, "--no-ui"]) == 2
        assert "is still running; attach to it" in capsys.readouterr().err
    finally:
        rundir.stop_run(run_dir)
        handle.process.wait(timeout=20)


def test_resume_no_ui_continues_past_the_old_end(tmp_path, monkeypatch, capsys):
    run_dir = finished_run(tmp_path, monkeypatch)
    root = ["--runs-dir", str(tmp_path / "runs")]
    assert main([*root, "resume", run_dir.name, "--no-ui"]) == 2
    assert "already finished" in capsys.readouterr().err
    assert main([*root, "resume", run_dir.name, "--no-ui", "--max-steps", "10"]) == 2
    assert "it can only grow" in capsys.readouterr().err
    assert main([*root, "resume", run_dir.name, "--no-ui", "--max-steps", "30"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("step 21/30") and "step 30/30" in out  # only the new steps
    assert "resumed from step 20" in err
    assert rundir.load_run_preset(run_dir).train.max_steps == 30
    launched = json.loads((run_dir / rundir.PRESET_JSON).read_text())
    assert launched["train"]["max_steps"] == 20  # preset.json stays as launched
    info = rundir.read_run_info(run_dir)
    assert info.overrides == {"train.max_steps": 30} and info.max_steps == 30
    assert info.status == "finished"
    starts = [r for r in read_events(run_dir / rundir.EVENTS_JSONL) if r["event"] == "start"]
    assert [s["resumed_from"] for s in starts] == [None, 20]


@pytest.mark.parametrize("ui", [["--no-ui"], []], ids=["no-ui", "app"])
def test_resume_without_a_checkpoint_is_refused_and_leaves_the_run_as_it_was(
    tmp_path, monkeypatch, capsys, ui
):
    """Killed at step 20 before its first checkpoint: exit 2 at once, nothing started or written."""
    calls = fake_app(monkeypatch)
    monkeypatch.setattr(runs, "launch", lambda *a, **k: pytest.fail("nothing may start"))
    run_dir = rundir.create_run_dir(tiny(max_steps=500), root=tmp_path / "runs")
    rundir.update_run_info(run_dir, status="killed", step=20)
    before = (run_dir / rundir.RUN_JSON).read_bytes()
    root = ["--runs-dir", str(tmp_path / "runs")]
    assert main([*root, "resume", run_dir.name, *ui, "--max-steps", "900"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no checkpoint to resume from" in err
    assert "killed at step 20" in err and f"--preset {run_dir / rundir.PRESET_JSON}" in err
    assert (run_dir / rundir.RUN_JSON).read_bytes() == before and calls == []
    (run_dir / rundir.CHECKPOINTS / "last.pt").write_bytes(b"")  # an empty file is no checkpoint
    assert main([*root, "resume", run_dir.name, *ui]) == 2


def test_resume_with_the_app_launches_detached(tmp_path, monkeypatch):
    run_dir = finished_run(tmp_path, monkeypatch)
    calls = fake_app(monkeypatch)
    assert main(["--runs-dir", str(tmp_path / "runs"), "resume", "last", "--max-steps", "25"]) == 0
    assert calls[0].attach == str(run_dir)
    wait_status(run_dir, ("finished",))
    info = rundir.read_run_info(run_dir)
    assert info.detached is True and info.command[-1] == "--resume"


def test_stop_command(tmp_path, monkeypatch, capsys):
    use_fake_trainer(monkeypatch, step_s=0.05)
    run_dir = rundir.create_run_dir(tiny(max_steps=500), root=tmp_path / "runs")
    handle = runs.launch(run_dir)
    wait_status(run_dir, ("running",))
    root = ["--runs-dir", str(tmp_path / "runs")]
    assert main([*root, "stop", run_dir.name]) == 0
    assert "asked" in capsys.readouterr().err
    handle.process.wait(timeout=20)
    assert rundir.run_status(run_dir) == "stopped"
    assert main([*root, "stop", run_dir.name]) == 1
    assert "is not running (status stopped)" in capsys.readouterr().err
    assert main([*root, "stop", "nope"]) == 2


def test_stop_kill_command(tmp_path, monkeypatch, capsys):
    use_fake_trainer(monkeypatch, step_s=0.05, ignore_term=1)
    run_dir = rundir.create_run_dir(tiny(max_steps=500), root=tmp_path / "runs")
    handle = runs.launch(run_dir)
    wait_status(run_dir, ("running",))
    assert main(["--runs-dir", str(tmp_path / "runs"), "stop", run_dir.name, "--kill"]) == 0
    assert "killed" in capsys.readouterr().err
    assert handle.process.wait(timeout=10) == -signal.SIGKILL
    assert rundir.run_status(run_dir) == "killed"  # as the README says: a kill is not a crash
    assert main(["--runs-dir", str(tmp_path / "runs"), "runs"]) == 0
    assert "killed" in capsys.readouterr().out


BAD_LINES = {
    "null step": '{"v":1,"event":"step","time":1.0,"step":null,"loss":1.0}',
    "word step": '{"v":1,"event":"step","time":1.0,"step":"eight","loss":"eight"}',
    "NaN": '{"v":1,"event":"step","time":NaN,"step":NaN,"loss":NaN}',
    "1e400": '{"v":1,"event":"eval","time":1e400,"step":1e400,"val_loss":1e400}',
    "nested 20k": '{"v":1,"event":"step","time":1.0,"step":3,"loss":'
    + "[" * 20_000
    + "]" * 20_000
    + "}",
    "nested 50k": "[" * 50_000 + "]" * 50_000,
}


@pytest.mark.parametrize("bad", list(BAD_LINES.values()), ids=list(BAD_LINES))
def test_one_bad_record_breaks_no_listing_and_is_counted(tmp_path, capsys, bad):
    root = tmp_path / "runs"
    good = rundir.create_run_dir(tiny("good"), root=root)
    damaged = rundir.create_run_dir(tiny("damaged"), root=root)
    for run_dir in (good, damaged):
        rundir.update_run_info(run_dir, status="finished", step=3)
    start = '{"v":1,"event":"start","time":1.0,"step":0}\n'
    end = '{"v":1,"event":"end","time":2.0,"step":3,"reason":"finished"}\n'
    (good / rundir.EVENTS_JSONL).write_text(start + end)
    (damaged / rundir.EVENTS_JSONL).write_text(start + bad + "\n" + end)

    seen = (
        1 if len(bad) < 60_000 else 0
    )  # a listing reads the last 64 KiB: a longer line is cut off
    assert {s.run_id: s.skipped for s in runs.list_runs(root)} == {good.name: 0, damaged.name: seen}
    assert main(["--runs-dir", str(root), "runs"]) == 0
    out, err = capsys.readouterr()
    assert good.name in out and damaged.name in out
    assert (f"{damaged.name}: skipped 1 unreadable line(s)" in err) == bool(seen)
    assert main(["--runs-dir", str(root), "runs", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["run_id"]: r["skipped_lines"] for r in rows} == {good.name: 0, damaged.name: seen}
    assert main(["--runs-dir", str(root), "attach", "--no-ui", damaged.name]) == 0
    assert "skipped 1 unreadable line(s)" in capsys.readouterr().err


def run_files(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(run_dir)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def test_readers_derive_a_dead_runs_status_without_writing(tmp_path, monkeypatch, capsys):
    """`runs`, `attach` and `stop` on a dead run: right status, and not one byte written
    (they work on a read-only mount, as another user, on a full disk)."""
    root = tmp_path / "runs"
    run_dir = rundir.create_run_dir(tiny(), root=root)
    pid, started = dead_pid()
    rundir.update_run_info(run_dir, status="running", pid=pid, pid_start_time=started)
    with EventWriter(run_dir / rundir.EVENTS_JSONL) as writer:
        writer.emit(StartEvent(step=0))
        writer.emit(StepEvent(step=1, loss=2.0))
    before = run_files(run_dir)

    def no_writes(*_args, **_kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(rundir.info, "atomic_write_text", no_writes)  # any write of run.json fails
    assert rundir.run_status(run_dir) == "crashed"
    assert [s.status for s in runs.list_runs(root)] == ["crashed"]
    assert main(["--runs-dir", str(root), "runs"]) == 0
    assert "crashed" in capsys.readouterr().out
    assert main(["--runs-dir", str(root), "runs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "crashed"
    assert main(["--runs-dir", str(root), "attach", "--no-ui", run_dir.name]) == 1
    assert main(["--runs-dir", str(root), "stop", run_dir.name]) == 1
    assert "not running (status crashed)" in capsys.readouterr().err
    assert run_files(run_dir) == before


def test_run_files_are_readable_by_other_users(tmp_path):
    old = os.umask(0o022)
    try:
        run_dir = rundir.create_run_dir(tiny(), root=tmp_path)
        rundir.update_run_info(run_dir, step=3)
        for name in (rundir.RUN_JSON, rundir.PRESET_JSON):
            assert (run_dir / name).stat().st_mode & 0o777 == 0o644, name
    finally:
        os.umask(old)


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_run_with_a_damaged_run_json_is_listed_and_resume_rebuilds_it(
    tmp_path, monkeypatch, capsys, damage
):
    run_dir = finished_run(tmp_path, monkeypatch, name="hurt")
    rundir.update_run_info(run_dir, status="stopped")
    if damage == "missing":
        (run_dir / rundir.RUN_JSON).unlink()
    else:
        (run_dir / rundir.RUN_JSON).write_text('{"run_id": "hurt", "sta')
    root = str(run_dir.parent)
    (summary,) = runs.list_runs(root)
    assert summary.status == "damaged" and summary.preset_name == "hurt" and summary.step == 20
    assert "run.json" in summary.problem
    assert main(["--runs-dir", root, "runs"]) == 0
    out, err = capsys.readouterr()
    assert "damaged" in out and f"{run_dir.name} is damaged:" in err
    assert main(["--runs-dir", root, "runs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "damaged"

    code = main(["--runs-dir", root, "resume", run_dir.name, "--no-ui", "--max-steps", "30"])
    assert code == 0, capsys.readouterr().err
    assert "rebuilt run.json from preset.json" in capsys.readouterr().err
    info = rundir.read_run_info(run_dir)
    assert info.status == "finished" and info.preset_name == "hurt"
    assert (run_dir / "run.json.damaged").exists() == (damage == "corrupt")


def listed_runs(tmp_path: Path) -> list[Path]:
    """Three stopped runs with long preset names and large step counts (no child needed)."""
    made = []
    for name in ("a_rather_long_preset_name", "tiny", "shakespeare_char"):
        run_dir = rundir.create_run_dir(tiny(name), root=tmp_path / "runs")
        rundir.update_run_info(
            run_dir, status="stopped", step=12000, max_steps=200000, best_val_loss=1.25
        )
        made.append(run_dir)
    return made


@pytest.mark.parametrize("width", [80, 60])
def test_runs_table_in_a_narrow_terminal_keeps_names_whole(tmp_path, monkeypatch, capsys, width):
    from rich.console import Console

    from cockpit.cli import runs as runs_cli

    made = listed_runs(tmp_path)
    monkeypatch.setattr(
        runs_cli, "_runs_console", lambda: Console(width=width, soft_wrap=True, highlight=False)
    )
    assert main(["--runs-dir", str(tmp_path / "runs"), "runs"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert "last loss" not in header and "status" in header and "run" in header
    for run_dir in made:
        row = next(r for r in rows if run_dir.name in r)  # the run id whole
        assert rundir.read_run_info(run_dir).preset_name in row.split()  # the preset whole
    if width == 80:  # what fits beside the names is kept, in order
        assert max(len(line.rstrip()) for line in rows) <= width
    else:  # the names alone are wider than the terminal: only they are left
        assert header.split() == ["status", "preset", "run"]


def test_runs_table_into_a_pipe_keeps_every_column(tmp_path, monkeypatch, capsys):
    listed_runs(tmp_path)
    monkeypatch.setenv("COLUMNS", "40")
    assert main(["--runs-dir", str(tmp_path / "runs"), "runs"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.split() == [
        "status",
        "preset",
        "step",
        "best",
        "val",
        "last",
        "loss",
        "age",
        "run",
    ]
