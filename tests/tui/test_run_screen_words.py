"""What the run and runs screens say and do for a person: one word per state, keys that answer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from helpers import app_for_tests, copy_run, notices, wait_for
from rich.text import Text
from textual.widgets import DataTable

from cockpit import runs
from cockpit.tui.screens.presets import PresetsScreen
from cockpit.tui.screens.run import RunScreen
from cockpit.tui.screens.runs import RunsScreen


async def attached(pilot, app) -> RunScreen:
    await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.settled)
    return app.screen


async def test_a_starting_run_says_starting_once(tmp_path):
    run_dir = copy_run(tmp_path)
    app = app_for_tests(attach=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await attached(pilot, app)
        screen.status = "starting"
        screen.history.end = None
        screen.history.start = None  # nothing from the child yet: its phase is starting too
        line1 = Text.from_markup(screen.status_text()).plain.splitlines()[0]
        assert screen.history.phase() == "starting" and line1.count("starting") == 1, line1


async def test_u_on_a_finished_run_asks_how_far_to_train_on_and_g_sample_shows(
    tmp_path, monkeypatch
):
    from cockpit.tui.screens.confirm import PromptScreen

    run_dir = copy_run(tmp_path)  # finished at its 250 steps
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"PK")
    resumed = []
    monkeypatch.setattr(runs, "launch", lambda run_dir, **kw: resumed.append((run_dir, kw)))
    app = app_for_tests(attach=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await attached(pilot, app)
        assert screen.active_bindings["g"].binding.show  # Sample is in the footer
        await pilot.press("u")
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen) and "250 steps" in app.screen.question
        box = app.screen.query_one("#prompt-input")
        assert box.value == "500"
        box.value = "100"  # not more: said, nothing changes
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("more than 250" in n for n in notices(app)))
        assert resumed == []
        await pilot.press("u")
        await pilot.pause()
        app.screen.query_one("#prompt-input").value = "400"
        await pilot.press("enter")
        await pilot.pause()
    assert [(d, kw["resume"]) for d, kw in resumed] == [(run_dir, True)]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["overrides"] == {"train.max_steps": 400} and info["max_steps"] == 400


async def test_detach_after_attach_goes_back_to_the_shell(tmp_path, monkeypatch):
    run_dir = copy_run(tmp_path)
    app = app_for_tests(attach=run_dir, runs_dir=run_dir.parent)
    exits = []
    monkeypatch.setattr(app, "exit", lambda *a, **k: exits.append(k.get("message", "")))
    async with app.run_test(size=(80, 24)) as pilot:
        await attached(pilot, app)
        await pilot.press("r")  # the runs list, and the same run again from there: a detach
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.summaries)
        await pilot.press("enter")  # goes back to that list, it does not close the app
        await attached(pilot, app)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        assert exits == []
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, PresetsScreen))
        app.open_run(run_dir)  # the attached run, straight over the presets: as it was opened
        await attached(pilot, app)
        await pilot.press("d")
        await pilot.pause()
        assert exits and "keeps training" in exits[0]


async def test_detach_from_a_run_opened_in_the_app_goes_back_to_the_presets(tmp_path):
    run_dir = copy_run(tmp_path)
    app = app_for_tests(runs_dir=run_dir.parent)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.open_run(run_dir)
        await attached(pilot, app)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, PresetsScreen)


async def test_home_and_end_move_the_runs_cursor(tmp_path):
    for name in ("a", "b", "c"):
        copy_run(tmp_path, "finished_run")
        (tmp_path / "runs" / "finished_run").rename(tmp_path / "runs" / f"2026010{name}-run")
    app = app_for_tests(runs_dir=tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.summaries)
        table = app.screen.query_one(DataTable)
        await pilot.press("end")
        assert table.cursor_row == 2
        await pilot.press("home")
        assert table.cursor_row == 0


def test_runs_of_the_same_id_in_two_folders_name_their_folder(tmp_path):
    def summary(folder: Path) -> runs.RunSummary:
        run_dir = copy_run(folder)
        info = json.loads((run_dir / "run.json").read_text())
        return next(s for s in runs.list_runs(run_dir.parent) if s.run_id == info["run_id"])

    one, two = summary(tmp_path / "x"), summary(tmp_path / "y")
    assert RunsScreen.run_label(one, [one, two]) != RunsScreen.run_label(two, [one, two])
    assert str(tmp_path / "x") in RunsScreen.run_label(one, [one, two])
    assert RunsScreen.run_label(one, [one]) == one.run_id
    run_a, run_b = copy_run(tmp_path / "z", "finished_run"), tmp_path / "z" / "runs" / "copy"
    shutil.copytree(run_a, run_b)  # one folder, two copies of one run: the folder names differ
    listed = runs.list_runs(run_a.parent)
    assert len({RunsScreen.run_label(s, listed) for s in listed}) == 2


async def test_in_app_words_name_keys_not_cli_flags():
    from textual.widgets import Static

    from cockpit.tui.screens.editor import EditorScreen

    app = app_for_tests()  # no GPU here: the verdict asks for a what-if one
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        detail = str(app.screen.query_one("#preset-detail", Static).render())
        assert "g picks a what-if GPU" in detail and "--gpu" not in detail
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, EditorScreen))
        panel = str(app.screen.query_one("#live-panel", Static).render())
        assert "ctrl+g picks a what-if GPU" in panel and "--gpu" not in panel
        await pilot.press("ctrl+g")
        await pilot.pause()
        panel = str(app.screen.query_one("#live-panel", Static).render())
        assert "[what-if]" in panel  # shown, not swallowed as markup


async def test_a_dialog_over_the_run_screen_rebuilds_no_plot(tmp_path):
    """Help opening and closing over a run repaints from the plots' last drawings: a plotext
    build costs tens of ms, and a key must not wait for three."""
    from cockpit.tui.widgets.metric_plot import MetricPlot

    run_dir = copy_run(tmp_path)
    app = app_for_tests(attach=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await attached(pilot, app)
        plots = list(screen.query(MetricPlot))
        builds = {id(p): 0 for p in plots}
        for plot in plots:
            original = plot.plt.build

            def counted(original=original, plot=plot):
                builds[id(plot)] += 1
                return original()

            plot.plt.build = counted
        for _ in range(3):
            await pilot.press("f1")
            await pilot.pause()
            await pilot.press("escape")
            await pilot.pause()
        assert app.screen is screen and set(builds.values()) == {0}, builds
        await pilot.resize_terminal(100, 30)  # a new size is a new drawing
        await wait_for(pilot, lambda: all(n >= 1 for n in builds.values()))
