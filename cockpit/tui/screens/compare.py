"""Several runs in one view: loss and val curves overlaid, best val per run, the presets' differences."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from cockpit import rundir
from cockpit.runs import compare
from cockpit.tui.widgets.metric_plot import MetricPlot


class CurvesRead(Message):
    """The compared runs' curves, read in a worker thread (or why one could not be read)."""

    def __init__(self, curves: list[compare.RunCurves], problem: str = "") -> None:
        self.curves = curves
        self.problem = problem
        super().__init__()


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

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="compare-status")
        with Horizontal(id="compare-body"):
            with Vertical(id="compare-plots"):
                yield MetricPlot("train loss", id="compare-loss")
                yield MetricPlot("val loss", id="compare-val")
            with VerticalScroll(id="compare-side"):
                yield DataTable(id="compare-runs", cursor_type="row", zebra_stripes=True)
                yield Static("preset differences", classes="compare-title")
                yield DataTable(id="compare-diffs", cursor_type="row", zebra_stripes=True)
        yield Footer()

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
        runs = self.query_one("#compare-runs", DataTable)
        runs.clear(columns=True)
        runs.add_columns("run", "steps", "tokens", "final", "best val", "best at")
        for row in compare.summary_rows(self.curves, self.align):
            cells = compare.summary_text(row, self.align)
            runs.add_row(cells[0], cells[3], cells[4], cells[5], cells[6], cells[7])
        diffs = self.query_one("#compare-diffs", DataTable)
        diffs.clear(columns=True)
        diffs.add_columns("field", *(f"#{i + 1}" for i in range(len(self.curves))))
        found = compare.preset_differences(self.curves)
        for key, values in found:
            diffs.add_row(key, *(compare.fmt_value(v) for v in values))
        if not found and self.curves:
            diffs.add_row("(none: the same preset)", *([""] * len(self.curves)))

    def _draw(self) -> None:
        names = [f"#{i + 1} {c.run_id[-24:]}" for i, c in enumerate(self.curves)]
        loss = [(n, c.aligned(c.loss, self.align)) for n, c in zip(names, self.curves, strict=True)]
        val = [(n, c.aligned(c.val, self.align)) for n, c in zip(names, self.curves, strict=True)]
        self.query_one("#compare-loss", MetricPlot).show(loss)
        self.query_one("#compare-val", MetricPlot).show(val)
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
            self._draw()

    def action_back(self) -> None:
        self.app.pop_screen()
