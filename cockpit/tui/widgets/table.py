"""Rows into a DataTable, writing only the cells that changed."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import DataTable


def show_rows(table: DataTable, rows: Sequence[tuple[str, Sequence[object]]]) -> None:
    """Make `table` list `rows` (each a key and its cells), in that order.

    When the table already lists the same keys in the same order, only the cells whose value
    changed are written: clearing and adding every row, as a poll of a list that rarely changes
    would, redraws and re-lays out the whole table and moves its cursor to the top.
    """
    listed = [row.key.value for row in table.ordered_rows]
    if listed != [key for key, _ in rows]:
        table.clear()
        for key, cells in rows:
            table.add_row(*cells, key=key)
        return
    for key, cells in rows:
        shown = table.get_row(key)
        for column, cell, was in zip(table.columns, cells, shown, strict=True):
            if cell != was:
                table.update_cell(key, column, cell, update_width=True)
