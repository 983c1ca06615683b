"""The first screen: every preset with its key facts, against this GPU or a what-if one."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from cockpit.common.format import human_bytes, human_params
from cockpit.plan.estimate import Estimate, estimate
from cockpit.plan.gpu import CATALOG, GpuSpec
from cockpit.plan.presets import Preset, scan_presets
from cockpit.tui.access import app_of
from cockpit.tui.exact import verdict_words
from cockpit.tui.widgets.footer import KeyFooter
from cockpit.tui.widgets.panel import Panel
from cockpit.tui.widgets.table import show_rows


class PresetsScreen(Screen):
    """Pick a preset: facts per row, the highlighted one described below."""

    BINDINGS = [
        Binding("enter", "edit", "Edit", priority=True),
        Binding("l", "launch", "Launch"),
        Binding("d", "duplicate", "Copy", show=False),  # in help: the 80-column footer reaches f1
        Binding("g", "next_gpu", "Next GPU"),  # what-if GPUs from the catalog
        Binding("G", "previous_gpu", "Prev GPU"),
        Binding("a", "queue_add", "Queue it", show=False),  # in help and the queue screen's hint
        Binding("Q", "queue", "Queue"),
        Binding("r", "runs", "Runs"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.presets: list[Preset] = []
        self.problems: list[tuple[Path, str]] = []  # preset files that do not load, with why
        self.gpu_choice = -1  # -1: this machine's GPU; else an index into CATALOG
        self.ready = False  # the table has its columns
        self.placed = False  # the cursor has been put on the smallest preset once
        self.away = False  # another screen is or was on top since the presets were read
        self.estimates: dict[tuple[str, GpuSpec | None], Estimate] = {}  # since the last read

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="presets-body"):
            yield Panel(id="gpu-line")
            yield DataTable(id="presets-table", cursor_type="row", zebra_stripes=True)
            yield Panel(id="preset-detail")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(
            "kind", "preset", "params", "block", "batch", "tok/step", "est. VRAM", "fits"
        )
        self.ready = True
        self.reload()
        table.focus()
        for path, why in self.problems:  # as the CLI says it: a broken file is not silent
            self.notify(f"skipped {path.name}: {why}", severity="warning", timeout=10)

    def on_screen_suspend(self) -> None:
        self.away = True

    def on_screen_resume(self) -> None:
        if self.away:  # back from another screen: a save in the editor adds a user preset
            self.away = False  # (the first showing follows the mount, which has just read them)
            self.reload()

    def gpus_known(self) -> None:
        """This machine's GPU is now known: re-estimate against it."""
        if self.ready:
            self.reload(read=False)

    @property
    def gpu(self) -> GpuSpec | None:
        """The GPU the estimates are for."""
        if self.gpu_choice >= 0:
            return CATALOG[self.gpu_choice]
        return app_of(self).local_gpu_spec()

    def gpu_label(self) -> str:
        if self.gpu_choice >= 0:
            what_if = CATALOG[self.gpu_choice]
            n = f"{self.gpu_choice + 1}/{len(CATALOG)}"
            return f"what-if GPU {n}: {what_if.name}  (g/G: next/back; past the ends, this machine)"
        local = self.gpu
        if local is not None:
            return (
                f"this machine: {local.name}, {human_bytes(local.memory_bytes)}  (g/G: what-if GPU)"
            )
        if app_of(self).local_gpus is None:
            return "this machine: looking for a GPU...  (g/G: what-if GPU)"
        return "this machine: no GPU (runs train on the CPU)  (g/G: what-if GPU)"

    def reload(self, read: bool = True) -> None:
        """Re-read the presets (unless `read` is False: another GPU, the same files) and
        re-estimate every row."""
        table = self.query_one(DataTable)
        keep = table.cursor_row
        if read:
            self.presets, self.problems = scan_presets()  # one read of the files for both
            self.estimates.clear()  # a trace or a probe may have landed since: estimate afresh
        gpu = self.gpu
        sizes = []
        rows: list[tuple[str, tuple[str, ...]]] = []
        for preset in self.presets:
            est = self.estimate_of(preset, gpu)
            sizes.append(est.params)
            fits = {True: "yes", False: "[bold red]no[/]", None: "-"}[est.fits]
            kind = "built-in" if preset.builtin else "[bold cyan]user[/]"
            t = preset.train
            cells = (
                kind,
                preset.name,
                human_params(est.params),
                str(preset.model.block_size),
                f"{t.batch_size}x{t.grad_accum}",
                str(preset.tokens_per_step),
                human_bytes(est.peak_bytes),
                fits,
            )
            rows.append((preset.name, cells))
        show_rows(table, rows)
        if self.presets and not self.placed:  # start on the smallest: a stray launch costs least
            self.placed = True
            keep = sizes.index(min(sizes))
        if self.presets:
            table.move_cursor(row=min(max(keep, 0), len(self.presets) - 1))
        self.query_one("#gpu-line", Static).update(self.gpu_label())
        self.show_detail()

    def estimate_of(self, preset: Preset, gpu: GpuSpec | None) -> Estimate:
        """The estimate of `preset` on `gpu`, made once per reading of the presets: a cursor
        move, the GPU query and a what-if GPU seen before re-estimate nothing."""
        key = (preset.name, gpu)
        if key not in self.estimates:
            self.estimates[key] = estimate(preset, gpu)
        return self.estimates[key]

    def selected(self) -> Preset | None:
        """The highlighted preset."""
        table = self.query_one(DataTable)
        if not self.presets or table.cursor_row < 0:
            return None
        return self.presets[min(table.cursor_row, len(self.presets) - 1)]

    def show_detail(self) -> None:
        preset = self.selected()
        detail = self.query_one("#preset-detail", Static)
        if preset is None:
            detail.update("no presets found")
            return
        est = self.estimate_of(preset, self.gpu)
        where = "built-in" if preset.builtin else f"user preset ({preset.source_path})"
        problems = self.problems  # read with the list: a cursor move reads no file
        broken = (
            f"\n[red]{len(problems)} preset file(s) do not load: {problems[0][1]}[/]"
            if problems
            else ""
        )
        verdict = verdict_words(est, "g")
        detail.update(f"[b]{preset.name}[/] ({where})\n{preset.description}\n{verdict}{broken}")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_edit()

    def action_edit(self) -> None:
        from cockpit.tui.screens.editor import EditorScreen

        preset = self.selected()
        if preset is not None:
            self.app.push_screen(EditorScreen(preset, gpu_choice=self.gpu_choice))

    def action_duplicate(self) -> None:
        from cockpit.tui.screens.editor import EditorScreen, duplicate

        preset = self.selected()
        if preset is not None:
            self.app.push_screen(
                EditorScreen(duplicate(preset), gpu_choice=self.gpu_choice, original=preset)
            )

    def action_launch(self) -> None:
        from cockpit.tui.screens.confirm import confirm_launch

        preset = self.selected()
        if preset is not None:
            # the run trains on this machine, so the fit question is about its GPU, not a what-if one
            app = app_of(self)
            confirm_launch(app, preset, estimate(preset, app.local_gpu_spec()))

    def action_next_gpu(self) -> None:
        """The next catalog GPU; after the last, this machine's again."""
        self.gpu_choice = self.gpu_choice + 1 if self.gpu_choice + 1 < len(CATALOG) else -1
        self.reload(read=False)

    def action_previous_gpu(self) -> None:
        """The catalog the other way (T4 is one key from this machine, not 23)."""
        self.gpu_choice = self.gpu_choice - 1 if self.gpu_choice >= 0 else len(CATALOG) - 1
        self.reload(read=False)

    def action_queue_add(self) -> None:
        preset = self.selected()
        if preset is not None:
            self.app.add_to_queue(preset.name)  # type: ignore[attr-defined]

    def action_queue(self) -> None:
        self.app.open_queue()  # type: ignore[attr-defined]

    def action_runs(self) -> None:
        app_of(self).open_runs()
