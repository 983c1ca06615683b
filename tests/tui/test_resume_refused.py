"""A run with no checkpoint: `u` is greyed and says why, the run is left as it was, `n` starts it again."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import app_for_tests, copy_run, notices, wait_for
from textual.widgets import Footer, Static

from cockpit import rundir
from cockpit.rundir import read_events
from cockpit.tui.screens.confirm import LaunchScreen
from cockpit.tui.screens.run import RunScreen


def killed_before_its_first_checkpoint(tmp_path: Path) -> Path:
    """A run killed at step 20 that never wrote a checkpoint."""
    run_dir = copy_run(tmp_path)
    info = json.loads((run_dir / "run.json").read_text())
    info.update(status="killed", step=20, end_reason="killed")
    (run_dir / "run.json").write_text(json.dumps(info))
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    (run_dir / "events.jsonl").write_text("\n".join(lines[:22]) + "\n")
    return run_dir


def footer_text(screen) -> str:
    return " ".join(str(k.render()) for k in screen.query_one(Footer).query("FooterKey"))


async def test_u_is_greyed_says_why_and_n_starts_the_same_preset_again(tmp_path):
    run_dir = killed_before_its_first_checkpoint(tmp_path)
    before = (run_dir / "run.json").read_bytes()
    launched = []

    def launcher(preset, runs_dir):
        launched.append(preset)
        return run_dir  # the test watches the launch, not a new run

    app = app_for_tests(attach=run_dir, launcher=launcher)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.settled)
        screen = app.screen
        await pilot.pause()
        bindings = screen.active_bindings
        assert bindings["u"].enabled is False  # shown, greyed
        assert bindings["n"].enabled is True
        await wait_for(pilot, lambda: "Start again" in footer_text(screen))  # composed after
        status = str(screen.query_one("#run-status", Static).render())
        assert "killed" in status and "no checkpoint to resume" in status
        await pilot.press("u")
        await wait_for(pilot, lambda: any("no checkpoint to resume" in n for n in notices(app)))
        said = notices(app)
        reached = max(r["step"] for r in read_events(run_dir / "events.jsonl"))
        assert reached > 0 and any(  # the step the log reached: run.json's is the last eval's
            "has no checkpoint to resume from" in m and f"killed at step {reached}," in m
            for m in said
        ), said
        assert (run_dir / "run.json").read_bytes() == before  # nothing started, nothing written
        assert screen.status == "killed"
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, LaunchScreen)  # the usual launch question, not a silent start
        await pilot.press("y")
        await pilot.pause()
        assert [p.name for p in launched] == [rundir.load_run_preset(run_dir).name]
        assert launched[0] == rundir.load_run_preset(run_dir)


async def test_a_run_with_a_checkpoint_resumes_as_before(tmp_path):
    run_dir = killed_before_its_first_checkpoint(tmp_path)
    (run_dir / rundir.CHECKPOINTS).mkdir(exist_ok=True)
    (run_dir / rundir.CHECKPOINTS / "last.pt").write_bytes(b"PK")
    app = app_for_tests(attach=run_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.settled)
        bindings = app.screen.active_bindings
        assert bindings["u"].enabled is True and "n" not in bindings


async def test_u_refuses_a_model_file_changed_since_the_run_started(tmp_path, monkeypatch):
    """Your own model's file edited since the start: `u` says so, and nothing starts."""
    from cockpit import runs

    run_dir = killed_before_its_first_checkpoint(tmp_path)
    (run_dir / rundir.CHECKPOINTS).mkdir(exist_ok=True)
    (run_dir / rundir.CHECKPOINTS / "last.pt").write_bytes(b"PK")
    model = tmp_path / "model.py"
    model.write_text("# edited since\n")
    rundir.update_run_info(run_dir, model_file={"path": str(model), "sha256": "0" * 64})
    before = (run_dir / "run.json").read_bytes()
    launched = []
    monkeypatch.setattr(runs, "launch", lambda *a, **kw: launched.append(a))
    app = app_for_tests(attach=run_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.settled)
        await pilot.press("u")
        await wait_for(pilot, lambda: notices(app))
        said = notices(app)
        assert any(
            m.startswith(f"cannot resume: {model} changed since {run_dir.name} started")
            and "--force" in m
            for m in said
        ), said
        assert not launched and app.screen.status == "killed"
    assert (run_dir / "run.json").read_bytes() == before
