"""The run screen survives resizes, whatever its series hold (log scale, tiny, zero, NaN, inf)."""

from __future__ import annotations

import json
import math

from helpers import app_for_tests, copy_run, wait_for

from cockpit.tui.screens.run import RunScreen
from cockpit.tui.widgets.metric_plot import MetricPlot, log_ticks, step_ticks, value_ticks


def write_awkward_grad_norms(run_dir) -> None:
    """Replace the run's grad norms with values that stress a log axis: tiny, zero, negative, NaN, inf."""
    awkward = [1e-9, 0.0, -1.0, float("nan"), float("inf"), 0.003, 0.5, 1e6]
    lines = []
    for i, line in enumerate((run_dir / "events.jsonl").read_text().splitlines()):
        record = json.loads(line)
        if record.get("event") == "step":
            value = awkward[i % len(awkward)]
            record["grad_norm"] = value if math.isfinite(value) else str(value)
            record["lr"] = 1e-9 * (i + 1)
        lines.append(json.dumps(record))
    (run_dir / "events.jsonl").write_text("\n".join(lines) + "\n")


async def test_resizing_the_run_screen_repeatedly_keeps_the_app_up(tmp_path):
    run_dir = copy_run(tmp_path)
    write_awkward_grad_norms(run_dir)
    app = app_for_tests(attach=run_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.settled)
        grad = app.screen.query_one("#plot-grad", MetricPlot)
        # each size drawn twice: as the resize leaves the plots, then rebuilt at that size;
        # smaller, under the smallest supported, far larger, and back to where it started
        for size in [(100, 30), (80, 24), (60, 15), (200, 60), (120, 40)]:
            await pilot.resize_terminal(*size)
            await pilot.pause()
            app.screen.redraw(force=True)
            await pilot.pause()
        assert app.is_running and isinstance(app.screen, RunScreen)
        assert app.return_code in (None, 0)
        rendered = str(grad.render())
        assert "grad norm" in rendered and "no data yet" not in rendered


def test_log_ticks_label_values_not_their_logs():
    assert log_ticks(-3.0, 1.0) == (
        [-3.0, -2.0, -1.0, 0.0, 1.0],
        ["0.001", "0.01", "0.1", "1", "10"],
    )
    ticks, labels = log_ticks(0.1, 0.5)  # within one decade: low, middle, high
    assert len(ticks) == 3 and labels[0] == "1.3" and labels[-1] == "3.2"
    assert log_ticks(0.0, 0.0) == ([0.0], ["1"])
    assert len(log_ticks(-12.0, 12.0)[0]) <= 5


def test_step_ticks_are_whole_and_small_values_get_e_notation():
    assert step_ticks(1, 250, 3) == [1, 126, 250]
    assert all(isinstance(t, int) for t in step_ticks(1, 15, 5))
    assert step_ticks(7, 7, 4) == [7]
    ticks, labels = value_ticks(0.0, 0.000297)
    assert labels[-1] == "3.0e-04" and len(ticks) == 4
    assert value_ticks(0.5, 9.0) is None  # readable as decimals
