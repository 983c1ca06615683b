"""SVG snapshots of what a person sees: presets, the editor with an error, a run (80x24 and 120x40).

Each snapshot must come out the same on every run: the app gets fixed GPU facts and a fixed
clock, and `steady` stops the text cursor blinking just before the picture is taken.
"""

from __future__ import annotations

import pytest
from helpers import app_for_tests, copy_run, fake_gpu, steady_cursors, wait_for
from textual.widgets import DataTable

from cockpit.tui.screens.run import RunScreen

SIZES = [(80, 24), (120, 40)]


async def steady(pilot) -> None:
    """The last step before each snapshot: nothing on screen may change with time from here."""
    steady_cursors(pilot.app)
    await pilot.pause()


def t4() -> list:
    """A fixed 16 GiB T4, so the plan screens show the VRAM bar and verdict against a real GPU."""
    return [fake_gpu()]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_presets_screen(snap_compare, size):
    async def run_before(pilot):
        await wait_for(pilot, lambda: pilot.app.local_gpus is not None)
        await steady(pilot)

    assert snap_compare(app_for_tests(gpu_query=t4), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_editor_with_a_validation_error(snap_compare, size):
    async def run_before(pilot):
        await wait_for(pilot, lambda: pilot.app.local_gpus is not None)
        screen = pilot.app.screen
        table = screen.query_one(DataTable)
        table.move_cursor(row=[p.name for p in screen.presets].index("shakespeare_char"))
        await pilot.press("enter")
        await pilot.pause()
        box = pilot.app.screen.select_field("model.n_layer")
        box.value = "six"
        box.focus()
        await steady(pilot)

    assert snap_compare(app_for_tests(gpu_query=t4), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_run_screen_from_a_fixed_events_file(snap_compare, size, tmp_path):
    run_dir = copy_run(tmp_path)

    async def run_before(pilot):
        await wait_for(
            pilot, lambda: isinstance(pilot.app.screen, RunScreen) and pilot.app.screen.settled
        )
        await steady(pilot)

    assert snap_compare(app_for_tests(attach=run_dir), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help_screen(snap_compare, size):
    async def run_before(pilot):
        # the presets show through the dialog: their GPU line once this machine's GPUs are known
        await wait_for(pilot, lambda: pilot.app.local_gpus is not None)
        await pilot.press("f1")
        await steady(pilot)

    assert snap_compare(app_for_tests(), terminal_size=size, run_before=run_before)


def dated_runs(tmp_path) -> None:
    """Two runs with ids as a launch names them (date-time-preset), one with another lr."""
    import json
    import shutil

    from helpers import DATA

    root = tmp_path / "runs"
    shutil.copytree(DATA / "finished_run", root / "20261206-155754-tiny_char")
    b = shutil.copytree(DATA / "finished_run", root / "20261206-161020-tiny_char")
    preset = json.loads((b / "preset.json").read_text())
    preset["train"]["lr"] = 0.5
    (b / "preset.json").write_text(json.dumps(preset))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_compare_screen(snap_compare, size, tmp_path):
    from cockpit.tui.screens.compare import CompareScreen
    from cockpit.tui.screens.runs import RunsScreen

    dated_runs(tmp_path)

    async def run_before(pilot):
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunsScreen))
        await wait_for(pilot, lambda: pilot.app.screen.summaries)
        await pilot.press("space", "space", "c")
        await wait_for(
            pilot, lambda: isinstance(pilot.app.screen, CompareScreen) and pilot.app.screen.loaded
        )
        await steady(pilot)

    app = app_for_tests(runs_dir=tmp_path / "runs")
    assert snap_compare(app, terminal_size=size, run_before=run_before)
