"""A run whose events hold 1e308 and infinities in every numeric field: the app stays up and draws."""

from __future__ import annotations

import json

import pytest
from helpers import app_for_tests, copy_run, wait_for
from textual.widgets import DataTable, Static

from cockpit.rundir.events import decode_record, encode_record
from cockpit.tui.screens.run import RunScreen
from cockpit.tui.screens.runs import RunsScreen
from cockpit.tui.widgets.metric_plot import MetricPlot

HUGE = (1e308, -1e308, float("inf"), float("-inf"), 1e307)


def flood(record: dict, value: float) -> dict:
    """Every numeric field but the step (a step is an int) set to `value`."""
    out = {}
    for key, field in record.items():
        numeric = isinstance(field, (int, float)) and not isinstance(field, bool)
        out[key] = value if numeric and key not in ("v", "step") else field
    return out


def write_huge_run(tmp_path, every: bool = False):
    """The recorded run with two records in three flooded (1e308, -1e308, inf, -inf, 1e307);
    `every`: all of them, the start record and run.json's numbers too."""
    run_dir = copy_run(tmp_path)
    events = run_dir / "events.jsonl"
    lines = []
    for i, line in enumerate(events.read_text().splitlines()):
        record = decode_record(line)
        if every or (record["event"] != "start" and i % 3):
            record = flood(record, HUGE[i % len(HUGE)])
        lines.append(encode_record(record))
    events.write_text("\n".join(lines) + "\n")
    info = json.loads((run_dir / "run.json").read_text())
    info = flood(info, 1e308) if every else info
    info["best_val_loss"] = 1e308
    (run_dir / "run.json").write_text(json.dumps(info))
    return run_dir


@pytest.mark.parametrize("every", [False, True], ids=["two in three", "every record"])
async def test_huge_and_infinite_values_leave_the_app_up_and_drawing(tmp_path, every):
    run_dir = write_huge_run(tmp_path, every)
    app = app_for_tests(attach=run_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.settled)
        await pilot.resize_terminal(90, 30)
        await wait_for(pilot, lambda: app.screen.size == (90, 30) and app.screen.settled)
        screen = app.screen
        assert screen.history.step == 250
        for widget in screen.query(Static):
            for line in str(widget.render()).splitlines():
                assert len(line) < 200, line[:80]
        for plot_id in ("#plot-loss", "#plot-lr", "#plot-grad"):
            plot = screen.query_one(plot_id, MetricPlot)
            plot.show(*plot_series(screen, plot_id))  # once more, here: a raise fails the test
            rendered = str(plot.render())
            assert rendered.strip(), plot_id
            if not every:  # a third of the records keep their plain values: those are drawn
                assert "no data yet" not in rendered, plot_id
        assert app.is_running
    assert app.return_code in (0, None)


def plot_series(screen, plot_id: str) -> tuple:
    h = screen.history
    return {
        "#plot-loss": ([("train", h.loss), ("val", h.val_loss)],),
        "#plot-lr": ([("lr", h.lr)],),
        "#plot-grad": ([("norm", h.grad_norm)],),
    }[plot_id]


async def test_the_runs_screen_lists_a_huge_best_val_loss_compactly(tmp_path):
    write_huge_run(tmp_path)
    app = app_for_tests(runs_dir=tmp_path / "runs")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.summaries)
        row = app.screen.query_one(DataTable).get_row_at(0)
        assert row[3] == "1.0e+308"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.settled)
        assert app.screen.history.step == 250
