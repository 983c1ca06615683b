"""Rows into a DataTable, writing only the cells that changed."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey


def show_rows(table: DataTable, rows: Sequence[tuple[str, Sequence[object]]]) -> None:
    """Make `table` list `rows` (each a key and its cells), in that order.

    When the table already lists the same keys in the same order, only the cells whose value
    changed are written, and none when none changed: clearing and adding every row, as a poll
    of a list that rarely changes would, redraws and re-lays out the whole table and moves its
    cursor to the top. More changed cells than rows (a GPU change re-estimates every row) are
    rebuilt instead: a cell that narrows makes the table measure its whole column again.
    """
    listed = [row.key.value for row in table.ordered_rows]
    changed: list[tuple[str, ColumnKey, object]] = []  # row key, column key, new value
    if listed == [key for key, _ in rows]:
        for key, cells in rows:
            shown = table.get_row(key)
            for column, cell, was in zip(table.columns, cells, shown, strict=True):
                if cell != was:
                    changed.append((key, column, cell))
        if len(changed) <= len(rows):
            for key, column_key, cell in changed:
                table.update_cell(key, column_key, cell, update_width=True)
            return
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
