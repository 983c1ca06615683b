"""The run screen's clock ticks between records: elapsed, ETA counting down, last update, phase."""

from __future__ import annotations

import json
import os

from helpers import app_for_tests, copy_run, wait_for
from textual.widgets import Static

from cockpit import rundir
from cockpit.tui.screens.run import RunScreen


def live_run(tmp_path, keep_lines: int = 150):
    """The fixed run cut after `keep_lines` records, owned by this (live) test process."""
    run_dir = copy_run(tmp_path)
    info = json.loads((run_dir / "run.json").read_text())
    pid = os.getpid()
    info.update(status="running", pid=pid, pid_start_time=rundir.process_start_time(pid))
    info.pop("end_reason", None)
    (run_dir / "run.json").write_text(json.dumps(info))
    lines = (run_dir / "events.jsonl").read_text().splitlines()[:keep_lines]
    (run_dir / "events.jsonl").write_text("\n".join(lines) + "\n")
    return run_dir, json.loads(lines[-1])


async def test_the_status_lines_tick_while_no_record_arrives(tmp_path):
    run_dir, last = live_run(tmp_path)
    now = [last["time"] + 2.0]
    app = app_for_tests(attach=run_dir, clock=lambda: now[0])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.settled)
        screen = app.screen
        looks: list[bool] = []  # each tail poll's look at the file, and each read it started
        reads: list[int] = []
        has_news, tail_worker = screen.tailer.has_news, screen._tail_worker
        screen.tailer.has_news = lambda: looks.append(has_news()) or looks[-1]
        screen._tail_worker = lambda: reads.append(1) or tail_worker()
        status = screen.query_one("#run-status", Static)
        await wait_for(pilot, lambda: "last update 2s ago" in str(status.render()))
        eta_before = screen.history.eta_s(now[0])
        text = str(status.render())
        assert "running" in text and "training" in text and "elapsed" in text
        now[0] += 30.0
        await wait_for(pilot, lambda: "last update 32s ago" in str(status.render()), timeout=3)
        assert screen.history.eta_s(now[0]) == max(0.0, eta_before - 30.0)
        await wait_for(pilot, lambda: len(looks) >= 3)
        assert not any(looks) and reads == []  # no record came: no thread read the file
        ingested = screen.ingested
        with open(run_dir / "events.jsonl", "a") as handle:
            handle.write(json.dumps({**last, "step": last["step"] + 1}) + "\n")
        await wait_for(pilot, lambda: screen.ingested == ingested + 1)
        assert reads == [1] and screen.history.step == last["step"] + 1


async def test_a_run_still_setting_up_says_so_and_counts_from_its_launch(tmp_path):
    run_dir, _ = live_run(tmp_path, keep_lines=1)
    info = json.loads((run_dir / "run.json").read_text())
    info["status"] = "starting"
    (run_dir / "run.json").write_text(json.dumps(info))
    (run_dir / "events.jsonl").write_text("")
    now = [info["created"] + 12.0]
    app = app_for_tests(attach=run_dir, clock=lambda: now[0])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.settled)
        status = app.screen.query_one("#run-status", Static)
        await wait_for(pilot, lambda: "elapsed 12.0s" in str(status.render()))
        assert (
            str(status.render()).count("starting") == 1
        )  # the status; what it is doing is the same
        now[0] += 5.0
        await wait_for(pilot, lambda: "elapsed 17.0s" in str(status.render()), timeout=3)


async def stall_note_after(tmp_path, keep_lines: int) -> str:
    run_dir, last = live_run(tmp_path, keep_lines=keep_lines)
    now = [last["time"] + 2.0]
    app = app_for_tests(attach=run_dir, clock=lambda: now[0], status_poll_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.settled)
        screen = app.screen
        polls = screen.status_polls
        now[0] += 600.0  # ten minutes of silence
        # each status poll after this checks for a stall (by the clock read then): two of them
        await wait_for(pilot, lambda: screen.status_polls >= polls + 2 and screen.settled)
        status = str(screen.query_one("#run-status", Static).render())
        return screen.stall_note + "|" + status


async def test_no_stall_note_while_an_eval_is_due_but_one_after_training_goes_quiet(tmp_path):
    during_eval = await stall_note_after(tmp_path / "a", keep_lines=51)  # ends at step 50's record
    assert during_eval.startswith("|") and "evaluating" in during_eval
    training = await stall_note_after(tmp_path / "b", keep_lines=48)
    assert "no events for" in training and "training" in training
