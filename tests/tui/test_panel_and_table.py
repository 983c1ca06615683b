"""A panel redraws for new words and not for the words it already shows; a table writes only the
cells that changed."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import DataTable

from cockpit.tui.widgets.panel import Panel
from cockpit.tui.widgets.table import show_rows


class OnePanel(App):
    def compose(self) -> ComposeResult:
        yield Panel("step 10", id="words")


async def test_the_same_words_ask_for_no_layout_and_new_words_show():
    app = OnePanel()
    async with app.run_test(size=(40, 5)) as pilot:
        panel = app.query_one(Panel)
        await pilot.pause()
        asked: list[bool] = []
        refresh = panel.refresh

        def counting(*args, **kwargs):
            asked.append(kwargs.get("layout", False))
            return refresh(*args, **kwargs)

        panel.refresh = counting  # type: ignore[method-assign]
        panel.update("step 10")
        assert asked == [] and str(panel.render()) == "step 10"
        panel.update("step 20")
        assert asked == [True] and str(panel.render()) == "step 20"
        await pilot.pause()
        assert "step 20" in "".join(s.text for s in app.screen._compositor.render_strips())
        panel.update("")  # cleared is a change too
        assert asked == [True, True] and str(panel.render()) == ""


class OneTable(App):
    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="row")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("run", "step", "age")


def listed(table: DataTable) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def test_a_table_writes_only_changed_cells_and_rebuilds_for_other_rows():
    app = OneTable()
    async with app.run_test(size=(40, 8)) as pilot:
        table = app.query_one(DataTable)
        writes: list[tuple[str, str]] = []
        cleared: list[bool] = []
        update_cell, clear = table.update_cell, table.clear

        def counting_update(row, column, value, **kwargs):
            writes.append((row, str(value)))
            return update_cell(row, column, value, **kwargs)

        def counting_clear(*args, **kwargs):
            cleared.append(True)
            return clear(*args, **kwargs)

        table.update_cell = counting_update  # type: ignore[method-assign]
        table.clear = counting_clear  # type: ignore[method-assign]
        show_rows(table, [("a", ("a", "10", "1s")), ("b", ("b", "20", "2s"))])
        assert listed(table) == [["a", "10", "1s"], ["b", "20", "2s"]] and cleared == [True]
        table.move_cursor(row=1)
        await pilot.pause()

        show_rows(table, [("a", ("a", "10", "1s")), ("b", ("b", "20", "2s"))])  # a poll, no news
        assert writes == [] and cleared == [True]
        show_rows(table, [("a", ("a", "10", "3s")), ("b", ("b", "20", "4s"))])  # ages tick
        assert sorted(writes) == [("a", "3s"), ("b", "4s")] and cleared == [True]
        assert listed(table) == [["a", "10", "3s"], ["b", "20", "4s"]]
        assert table.cursor_row == 1  # the cursor stays on its row
        # more changed cells than rows: rebuilt (a narrower cell re-measures its whole column)
        show_rows(table, [("a", ("a", "9", "5s")), ("b", ("b", "25", "6s"))])
        assert cleared == [True, True] and len(writes) == 2
        assert listed(table) == [["a", "9", "5s"], ["b", "25", "6s"]]

        show_rows(table, [("c", ("c", "1", "0s")), ("a", ("a", "10", "3s"))])  # another list
        assert cleared == [True, True, True]
        assert listed(table) == [["c", "1", "0s"], ["a", "10", "3s"]]
        show_rows(table, [])
        assert table.row_count == 0
