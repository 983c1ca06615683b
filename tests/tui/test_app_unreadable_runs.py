"""The runs screen lists another user's private run as unreadable and goes on."""

from __future__ import annotations

from helpers import app_for_tests, notices, wait_for
from private_runs import as_another_user, make_runs, the_test_user
from textual.widgets import DataTable

from cockpit.tui.screens.runs import RunsScreen


async def test_runs_screen_lists_a_private_run_as_unreadable_and_refuses_to_open_it(tmp_path):
    user = the_test_user()
    root = tmp_path / "runs"
    readable, private, closed = make_runs(root, user)
    app = app_for_tests(runs_dir=root)
    with as_another_user():
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press("r")
            await wait_for(
                pilot, lambda: isinstance(app.screen, RunsScreen) and len(app.screen.summaries) == 4
            )
            screen = app.screen
            table = screen.query_one(DataTable)
            rows = {str(table.get_row_at(i)[-1]): table.get_row_at(i) for i in range(4)}
            assert {name for name in rows} == {p.name for p in (*readable, private, closed)}
            assert "unreadable" in str(rows[private.name][0])
            assert "finished" in str(rows[readable[0].name][0])
            row = [s.run_dir for s in screen.summaries].index(private)
            table.move_cursor(row=row)
            said = f"{private}: permission denied"
            await pilot.press("enter")
            await wait_for(pilot, lambda: sum(said in n for n in notices(app)) == 1)
            assert app.screen is screen  # not opened: a notice says why
            await pilot.press("x")  # delete: refused without asking, the folder stays
            await wait_for(pilot, lambda: sum(said in n for n in notices(app)) == 2)
            assert app.screen is screen and private.is_dir()
