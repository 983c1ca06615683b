"""Several runs in one view: loss and val curves overlaid, best val per run, the presets' differences."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from cockpit import rundir
from cockpit.runs import compare
from cockpit.tui.widgets.footer import KeyFooter
from cockpit.tui.widgets.metric_plot import MetricPlot


class CurvesRead(Message):
    """The compared runs' curves, read in a worker thread (or why one could not be read)."""

    def __init__(self, curves: list[compare.RunCurves], problem: str = "") -> None:
        self.curves = curves
        self.problem = problem
        super().__init__()


# Line colours in plot order, named alike in plotext and Rich (the table's key column).
LINE_COLORS = ("cyan", "magenta", "green", "yellow", "blue", "red")


def line_color(index: int) -> str:
    return LINE_COLORS[index % len(LINE_COLORS)]


def short_id(run_id: str, all_ids: list[str]) -> str:
    """A run id without the date all the compared runs share ("155754-tiny_char"), whole else."""
    date = run_id.split("-", 1)[0]
    shared = len(date) == 8 and date.isdigit() and all(i.startswith(date + "-") for i in all_ids)
    return run_id[len(date) + 1 :] if shared else run_id


class CompareScreen(Screen):
    """The runs marked on the runs screen, side by side."""

    BINDINGS = [
        Binding("a", "toggle_align", "Align steps/tokens"),
        Binding("escape,r", "back", "Runs"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, run_dirs: list[Path], align: str = "step") -> None:
        super().__init__()
        self.run_dirs = list(run_dirs)
        self.align = align
        self.curves: list[compare.RunCurves] = []
        self.loaded = False
        self._filled_wide = False  # the runs table was last filled for 120 columns or more

    def compose(self) -> ComposeResult:
        # The plots side by side on top, the tables the full width below: in a side panel the
        # runs table was cut even at 200 columns.
        yield Header()
        yield Static(id="compare-status")
        with Horizontal(id="compare-plots"):
            yield MetricPlot("train loss", id="compare-loss")
            yield MetricPlot("val loss", id="compare-val")
        yield DataTable(id="compare-runs", cursor_type="none", zebra_stripes=True)
        yield Static("preset differences", classes="compare-title")
        yield DataTable(id="compare-diffs", cursor_type="none", zebra_stripes=True)
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#compare-status", Static).update(f"reading {len(self.run_dirs)} runs...")
        self.run_worker(self._read, thread=True, exclusive=True, group="compare")

    def _read(self) -> None:
        curves, problem = [], ""
        for run_dir in self.run_dirs:
            try:
                curves.append(compare.read_curves(run_dir))
            except (rundir.RunError, ValueError) as exc:
                problem += f"{run_dir.name}: cannot be read ({exc}); "
        self.post_message(CurvesRead(curves, problem.rstrip("; ")))

    @on(CurvesRead)
    def _curves_read(self, message: CurvesRead) -> None:
        self.curves = message.curves
        if message.problem:
            self.notify(message.problem, severity="warning", timeout=8)
        self._fill_tables()
        self._draw()
        self.loaded = True

    def _fill_tables(self) -> None:
        wide = self.size.width >= 120
        self._filled_wide = wide
        ids = [short_id(c.run_id, [r.run_id for r in self.curves]) for c in self.curves]
        runs = self.query_one("#compare-runs", DataTable)
        runs.clear(columns=True)
        names = ["", "run", "status", "steps", "tokens", "final", "best val", "best at"]
        runs.add_columns(*(names if wide else [n for n in names if n != "status"]), "warnings")
        for i, row in enumerate(compare.summary_rows(self.curves, self.align)):
            cells = compare.summary_text(row, self.align)
            # the line's own colour: the plots' legend is gone when they are small
            key = Text(f"■ #{i + 1}", style=f"bold {line_color(i)}")
            status = [cells[1]] if wide else []
            runs.add_row(key, ids[i], *status, *cells[3:8], cells[8])
        diffs = self.query_one("#compare-diffs", DataTable)
        diffs.clear(columns=True)
        diffs.add_columns("field", *(f"#{i + 1}" for i in range(len(self.curves))))
        found = compare.preset_differences(self.curves)
        for key_name, values in found:
            diffs.add_row(key_name, *(compare.fmt_value(v) for v in values))
        if not found and self.curves:
            diffs.add_row("(none: the same preset)", *([""] * len(self.curves)))

    def _draw(self) -> None:
        ids = [short_id(c.run_id, [r.run_id for r in self.curves]) for c in self.curves]
        names = [f"#{i + 1} {run_id}" for i, run_id in enumerate(ids)]
        colors = [line_color(i) for i in range(len(self.curves))]
        loss = [(n, c.aligned(c.loss, self.align)) for n, c in zip(names, self.curves, strict=True)]
        val = [(n, c.aligned(c.val, self.align)) for n, c in zip(names, self.curves, strict=True)]
        self.query_one("#compare-loss", MetricPlot).show(loss, colors=colors)
        self.query_one("#compare-val", MetricPlot).show(val, colors=colors)
        by = "tokens" if self.align == "tokens" else "step"
        self.query_one("#compare-status", Static).update(
            f"{len(self.curves)} runs, x axis: {by}  (a: align by "
            f"{'step' if by == 'tokens' else 'tokens'})"
        )

    def action_toggle_align(self) -> None:
        self.align = "tokens" if self.align == "step" else "step"
        if self.curves:
            self._fill_tables()
            self._draw()

    def on_resize(self) -> None:
        if self.curves:
            if (self.size.width >= 120) != self._filled_wide:
                self._fill_tables()  # the status column comes and goes at 120 columns
            self._draw()

    def action_back(self) -> None:
        self.app.pop_screen()
