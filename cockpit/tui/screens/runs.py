"""Every run in the runs folder: status, preset, step, best val loss, age; attach to any."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from cockpit import rundir, runs
from cockpit.common.format import counted, fmt_float, human_duration, status_markup
from cockpit.tui.access import app_of, services_of
from cockpit.tui.messages import RunsListed
from cockpit.tui.widgets.footer import KeyFooter
from cockpit.tui.widgets.table import show_rows

REFRESH_S = 2.0


def short_path(path: Path) -> str:
    """`path` with the home folder as ~ (a folder name for a person, not for a script)."""
    home = Path.home()
    try:
        return "~/" + str(path.relative_to(home)) if path != home else "~"
    except ValueError:
        return str(path)


class RunsScreen(Screen):
    """The runs list, refreshed every couple of seconds in a worker thread."""

    BINDINGS = [
        Binding("enter", "attach", "Attach", priority=True),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare marked"),
        Binding("delete,x", "delete", "Delete"),
        Binding("escape,p", "back", "Presets"),
        Binding("q", "app.quit", "Quit"),
        Binding("home", "edge(0)", "First run", show=False, priority=True),
        Binding("end", "edge(1)", "Last run", show=False, priority=True),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.summaries: list[runs.RunSummary] = []
        self.marked: list[Path] = []  # runs marked for the compare view, in the order marked

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="runs-where")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("status", "preset", "step", "best val", "age", "run")
        root = rundir.runs_root(services_of(self).runs_dir)
        self.query_one("#runs-where", Static).update(f"runs in {root}  (reading...)")
        table.focus()
        self.refresh_list()
        self.set_interval(REFRESH_S, self.refresh_list)

    def refresh_list(self) -> None:
        self.run_worker(self._list, thread=True, exclusive=True, group="runs")

    def _list(self) -> None:
        def note(text: str) -> None:  # a run index entry whose folder is gone
            self.app.call_from_thread(self.app.notify, text, timeout=8)

        self.post_message(RunsListed(runs.list_runs(services_of(self).runs_dir, note=note)))

    @on(RunsListed)
    def _listed(self, message: RunsListed) -> None:
        table = self.query_one(DataTable)
        keep = table.cursor_row
        self.summaries = message.summaries
        now = services_of(self).clock()
        rows = []
        for s in self.summaries:
            step = f"{s.step}/{s.max_steps}" if s.max_steps else str(s.step)
            age = human_duration(max(0.0, now - (s.updated or s.created)))
            cells = (
                status_markup(s.status),
                s.preset_name,
                step,
                fmt_float(s.best_val_loss),
                age,
                ("* " if s.run_dir in self.marked else "") + self.run_label(s, self.summaries),
            )
            rows.append((str(s.run_dir), cells))
        show_rows(table, rows)
        if self.summaries:
            table.move_cursor(row=min(max(keep, 0), len(self.summaries) - 1))
        root = rundir.runs_root(services_of(self).runs_dir)
        n = len(self.summaries)
        where = f"from {root}" + (
            " and the run index" if root.resolve() == rundir.runs_root().resolve() else ""
        )
        count = (
            f"{counted(n, 'run')} {where}"
            if n
            else f"no runs yet {where} (launch one from the presets screen)"
        )
        self.query_one("#runs-where", Static).update(count)

    @staticmethod
    def run_label(run: runs.RunSummary, listed: list[runs.RunSummary]) -> str:
        """The run id, and where it is when another listed run has the same id: its folder's
        name where that differs (a copy), else the folder that holds it."""
        same = [s for s in listed if s.run_id == run.run_id]
        if len(same) < 2:
            return run.run_id
        if sum(s.run_dir.name == run.run_dir.name for s in same) == 1:
            return f"{run.run_id} (folder {run.run_dir.name})"
        return f"{run.run_id} (in {short_path(run.run_dir.parent)})"

    def action_edge(self, last: int) -> None:
        """Home and End: the first or the last run."""
        table = self.query_one(DataTable)
        if self.summaries:
            table.move_cursor(row=len(self.summaries) - 1 if last else 0)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_attach()

    def action_attach(self) -> None:
        table = self.query_one(DataTable)
        if self.summaries and 0 <= table.cursor_row < len(self.summaries):
            run = self.summaries[table.cursor_row]
            if run.status == "unreadable":  # another user's private run: say why, open nothing
                self.notify(f"{run.run_dir}: {run.problem}", severity="warning", timeout=8)
                return
            app_of(self).open_run(run.run_dir)

    def action_mark(self) -> None:
        """Mark the highlighted run for the compare view (or unmark it); the cursor moves on."""
        table = self.query_one(DataTable)
        if not self.summaries or not 0 <= table.cursor_row < len(self.summaries):
            return
        run = self.summaries[table.cursor_row]
        if run.run_dir in self.marked:
            self.marked.remove(run.run_dir)
        else:
            self.marked.append(run.run_dir)
        row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        column_key = list(table.columns)[-1]
        mark = "* " if run.run_dir in self.marked else ""
        label = self.run_label(run, self.summaries)
        table.update_cell(row_key, column_key, f"{mark}{label}")
        table.move_cursor(row=min(table.cursor_row + 1, len(self.summaries) - 1))

    def action_compare(self) -> None:
        """Open the compare view on the marked runs (two or more)."""
        from cockpit.tui.screens.compare import CompareScreen

        present = {s.run_dir for s in self.summaries}
        chosen = [d for d in self.marked if d in present]
        if len(chosen) < 2:
            self.notify("mark two or more runs with space, then press c", severity="warning")
            return
        self.app.push_screen(CompareScreen(chosen))

    def action_delete(self) -> None:
        """Delete the highlighted run's folder (checkpoints included) after a yes; never a live one."""
        import shutil

        from cockpit.tui.screens.confirm import ConfirmScreen

        table = self.query_one(DataTable)
        if not self.summaries or not 0 <= table.cursor_row < len(self.summaries):
            return
        run = self.summaries[table.cursor_row]
        if run.status in (*rundir.LIVE_STATUSES, *rundir.WAITING_STATUSES):
            self.notify(f"{run.run_id} is {run.status}: stop it first", severity="warning")
            return
        if run.status == "unreadable":  # whether it is live cannot even be read: not ours to delete
            self.notify(f"{run.run_dir}: {run.problem}", severity="warning", timeout=8)
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                shutil.rmtree(run.run_dir)
            except OSError as exc:
                self.notify(f"not deleted: {exc}", severity="error", timeout=8)
                return
            self.notify(f"deleted {run.run_dir}")
            self.refresh_list()

        self.app.push_screen(
            ConfirmScreen(
                f"Delete run [b]{run.run_id}[/] ({run.status}, step {run.step})?\n"
                f"{run.run_dir} and its checkpoints go; this cannot be undone."
            ),
            answered,
        )

    def action_back(self) -> None:
        self.app.pop_screen()
