"""The compare view: mark runs on the runs screen with space, open them side by side with c."""

from __future__ import annotations

import json
import shutil

from helpers import DATA, app_for_tests, wait_for
from textual.widgets import DataTable

from cockpit.tui.screens.compare import CompareScreen
from cockpit.tui.screens.runs import RunsScreen
from cockpit.tui.widgets.metric_plot import MetricPlot


def two_runs(tmp_path):
    shutil.copytree(DATA / "finished_run", tmp_path / "runs" / "run-a")
    b = shutil.copytree(DATA / "finished_run", tmp_path / "runs" / "run-b")
    preset = json.loads((b / "preset.json").read_text())
    preset["train"]["lr"] = 0.5
    (b / "preset.json").write_text(json.dumps(preset))


async def test_mark_two_runs_and_compare_them(tmp_path):
    two_runs(tmp_path)
    app = app_for_tests(runs_dir=tmp_path / "runs")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.summaries)
        await pilot.press("c")  # nothing marked yet: a hint, no view
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("space", "space")
        assert len(app.screen.marked) == 2
        table = app.screen.query_one("#runs-table", DataTable)
        assert str(table.get_row_at(0)[-1]).startswith("* ")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.loaded)
        screen = app.screen
        assert [c.run_id for c in screen.curves] == [d.name for d in screen.run_dirs]
        runs = screen.query_one("#compare-runs", DataTable)
        assert runs.row_count == 2 and str(runs.get_row_at(0)[6]) == "3.2160"
        labels = [str(c.label) for c in runs.columns.values()]
        assert labels[-2:] == ["best at", "warnings"]  # every column, none cut
        diffs = screen.query_one("#compare-diffs", DataTable)
        assert [str(c) for c in diffs.get_row_at(0)][0] == "train.lr"
        assert sorted(str(c) for c in diffs.get_row_at(0)[1:]) == ["0.5", "1.5"]
        loss = screen.query_one("#compare-loss", MetricPlot)
        drawn = loss.plt.build()  # both runs overlaid, each named in the legend
        assert "#1 run-" in drawn and "#2 run-" in drawn
        await pilot.press("a")
        await pilot.pause()
        assert screen.align == "tokens" and "x axis: tokens" in str(
            screen.query_one("#compare-status").render()
        )
        best_at = str(screen.query_one("#compare-runs", DataTable).get_row_at(0)[7])
        assert best_at.endswith("k") and "step" not in best_at  # where best val was, in tokens
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)


def test_compare_view_snapshot(snap_compare, tmp_path):
    two_runs(tmp_path)

    async def run_before(pilot):
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunsScreen))
        await wait_for(pilot, lambda: pilot.app.screen.summaries)
        await pilot.press("space", "space", "c")
        await wait_for(
            pilot, lambda: isinstance(pilot.app.screen, CompareScreen) and pilot.app.screen.loaded
        )
        await pilot.pause()

    async def open_runs(pilot):
        await pilot.press("r")
        await run_before(pilot)

    app = app_for_tests(runs_dir=tmp_path / "runs")
    assert snap_compare(app, terminal_size=(120, 40), run_before=open_runs)


async def test_at_80x24_every_column_shows_and_each_run_is_keyed_by_its_line_colour(tmp_path):
    from textual.widgets import Footer

    from cockpit.tui.screens.compare import line_color

    two_runs(tmp_path)
    for name, when in (("run-a", "155754"), ("run-b", "161020")):  # ids as a launch names them
        (tmp_path / "runs" / name).rename(tmp_path / "runs" / f"20261206-{when}-tiny")
    app = app_for_tests(runs_dir=tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.summaries)
        await pilot.press("space", "space", "c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.loaded)
        await pilot.pause()
        runs = app.screen.query_one("#compare-runs", DataTable)
        assert runs.virtual_size.width <= runs.size.width  # nothing cut off to the right
        assert [str(c.label) for c in runs.columns.values()][-1] == "warnings"
        key = runs.get_row_at(0)[0]
        assert str(key) == "■ #1" and line_color(0) in str(key.style)
        first = str(runs.get_row_at(0)[1])
        assert first in ("155754-tiny", "161020-tiny")  # whole, less the shared date
        legend = app.screen.query_one("#compare-loss", MetricPlot).plt.build()
        assert f"#1 {first}" in legend  # no first character lost
        assert app.screen.query_one(Footer).region.bottom == 24
