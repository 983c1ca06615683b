"""The preset editor: every field, validated as you type, beside a live estimate."""

from __future__ import annotations

import dataclasses
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Header, Input, Label, Static
from textual.widgets.data_table import ColumnKey

from cockpit.common.format import human_bytes, human_count
from cockpit.plan.estimate import Estimate, batch_tip, estimate, suggest_batch
from cockpit.plan.gpu import CATALOG, GpuSpec
from cockpit.plan.presets import (
    Preset,
    PresetError,
    apply_overrides,
    field_paths,
    get_field,
    list_presets,
    parse_override,
    save_user_preset,
    user_dir,
)
from cockpit.tui.access import app_of
from cockpit.tui.exact import ExactFigure, source_label, verdict_words
from cockpit.tui.widgets.footer import KeyFooter
from cockpit.tui.widgets.panel import Panel
from cockpit.tui.widgets.vram_bar import vram_bar

TOP_FIELDS = ["name", "description"]


def duplicate(preset: Preset) -> Preset:
    """An unsaved user copy of `preset` under a new name, with its own full values (no `extends`:
    a copy must not change when the preset it came from does)."""
    return dataclasses.replace(
        preset, name=f"{preset.name}_copy", builtin=False, source_path="", extends=""
    )


def values_of(preset: Preset) -> dict[str, Any]:
    """A preset's own values (where it came from aside), to tell an edited form from a clean one."""
    out = preset.to_dict()
    out.pop("extends", None)
    return out


def field_text(value: Any) -> str:
    """How a field's value reads in its input box (JSON spelling for booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_field(path: str, text: str, current: Any) -> Any:
    """The value typed for `path`: strings as typed, everything else read like a --set value."""
    if isinstance(current, str):
        return text
    return parse_override(f"{path}={text}")[1]


def edited_description(original: Preset, edited: Preset) -> str | None:
    """The description to save when the fields changed but the description did not (it would
    describe the preset before the edits, e.g. "4 heads" after n_head became 6); else None."""
    if edited.description != original.description:
        return None  # written for this preset by its user
    changed = [
        f"{path}={field_text(get_field(edited, path))}"
        for path in field_paths()
        if get_field(edited, path) != get_field(original, path)
    ]
    if not changed:
        return None
    more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
    return f"{original.description} (edited: {', '.join(changed[:4])}{more})"


class EditorScreen(Screen):
    """Edit one preset; the panel on the right recomputes the estimate after each change.

    The fields are one table (field, value, and a field's error beside it) and one input that
    edits the highlighted field: a screen of ~70 inputs took 1-3 s to open, this one opens at
    once (bench/editor_open.py).
    """

    BINDINGS = [
        Binding("escape", "back", "Back"),  # first: an 80-column footer keeps it
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("ctrl+l", "launch", "Launch", priority=True),
        Binding("ctrl+t", "queue_add", "Queue it", priority=True, show=False),  # help, palette
        Binding("ctrl+o", "apply_suggestion", "Batch tip", priority=True),
        Binding("ctrl+g", "next_gpu", "What-if GPU", priority=True),
        Binding("ctrl+r", "revert", "Revert", priority=True),
        Binding("ctrl+n", "duplicate", "Copy", show=False, priority=True),  # in help, palette
        Binding("down", "move(1)", "Next field", show=False, priority=True),
        Binding("up", "move(-1)", "Previous field", show=False, priority=True),
        Binding("pagedown", "move(10)", "10 fields down", show=False, priority=True),
        Binding("pageup", "move(-10)", "10 fields up", show=False, priority=True),
    ]

    def __init__(
        self, preset: Preset, *, gpu_choice: int = -1, original: Preset | None = None
    ) -> None:
        super().__init__()
        self.original = original or preset  # what revert goes back to
        self.start = preset
        self.preset = preset  # the last valid state of the form
        self.clean = (
            preset  # what is on disk (or the unsaved copy as opened): Esc asks if it differs
        )
        self.gpu_choice = gpu_choice
        self.errors: dict[str, str] = {}  # field path -> message next to it
        self.paths = TOP_FIELDS + field_paths()
        # the form's text per field: the table shows it, the input edits the highlighted one
        self.field_texts = {path: field_text(get_field(preset, path)) for path in self.paths}
        self._start_texts = dict(self.field_texts)
        self.current = "model.n_layer" if "model.n_layer" in self.paths else self.paths[0]
        self._shown: dict[str, tuple[str, str]] = {}  # path -> (text, error) the table shows
        self._refresh_due = False  # a validation is queued behind a burst of field changes
        self.exact = ExactFigure(self, self.refresh_live)  # the traced figure, in the background

    # ---------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="editor-body"):
            with Vertical(id="editor-fields"):
                yield Panel(id="editor-title")
                with Horizontal(id="editor-edit"):
                    yield Label(self.current, id="editor-path")
                    yield Input(self.field_texts[self.current], id="editor-input", compact=True)
                yield Panel("", id="editor-error")
                yield DataTable(id="editor-table", cursor_type="row", show_header=False)
            with VerticalScroll(id="editor-live"):
                yield Panel(id="live-panel")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("field", key="field")
        table.add_column("value", key="value")
        for path in self.paths:
            table.add_row(Text(path, style="dim"), Text(self.field_texts[path]), key=path)
        table.move_cursor(row=self.paths.index(self.current))
        self.field_box.focus()
        self.refresh_form()

    def on_resize(self) -> None:
        self.call_after_refresh(self._fit_columns)

    def _fit_columns(self) -> None:
        """Field names whole, the value column to the table's edge (no sideways scrolling)."""
        table = self.query_one(DataTable)
        if not table.size.width:
            return
        field, value = table.columns[ColumnKey("field")], table.columns[ColumnKey("value")]
        field.auto_width, value.auto_width = False, False
        # the longest names give way at 80 columns (the input above shows the whole path)
        field.width = min(max(len(p) for p in self.paths), max(20, table.size.width - 24))
        pads = 4 * table.cell_padding + 1  # both columns' padding and the scrollbar
        value.width = max(8, table.size.width - field.width - pads)
        table.refresh(layout=True)
        table._require_update_dimensions = True

    def on_unmount(self) -> None:
        self.exact.cancel()

    # ---------------------------------------------------------------- state

    @property
    def gpu(self) -> GpuSpec | None:
        if self.gpu_choice >= 0:
            return CATALOG[self.gpu_choice]
        return app_of(self).local_gpu_spec()

    @property
    def field_box(self) -> Input:
        """The input that edits the highlighted field."""
        return self.query_one("#editor-input", Input)

    def texts(self) -> dict[str, str]:
        return dict(self.field_texts)

    def select_field(self, path: str) -> Input:
        """Highlight `path` and put its text in the input; returns the input."""
        self.query_one(DataTable).move_cursor(row=self.paths.index(path))
        self._edit(path)
        return self.field_box

    def set_field(self, path: str, text: str) -> None:
        """Type `text` into `path` (as the input would: validated after the burst)."""
        self.select_field(path).value = text

    def _edit(self, path: str) -> None:
        """Make `path` the field the input edits (what was typed for the last one is kept)."""
        box = self.field_box
        if box.value != self.field_texts[self.current]:  # typed, its Changed not handled yet
            self._take_text(box.value)
        if path == self.current and box.value == self.field_texts[path]:
            return
        self.current = path
        self.query_one("#editor-path", Label).update(path)
        with box.prevent(Input.Changed):  # showing a field's text is not an edit of it
            box.value = self.field_texts[path]
        box.cursor_position = len(box.value)
        self._show_error()

    def validate_form(self) -> Preset | None:
        """Check each field alone, then all together; set self.errors and return the preset if valid."""
        errors: dict[str, str] = {}
        values: dict[str, Any] = {}
        for path, text in self.texts().items():
            if text == self._start_texts[path]:
                continue  # as opened, and the preset opened is valid: only edits are checked
            try:
                value = parse_field(path, text, get_field(self.start, path))
                apply_overrides(self.start, {path: value})
                values[path] = value
            except PresetError as exc:
                errors[path] = exc.message.replace(
                    " (drop the quotes)", ""
                )  # typed text has no quotes to drop
        preset = None
        if not errors:
            try:
                preset = apply_overrides(self.start, values)
            except PresetError as exc:
                where = exc.path if exc.path in self.paths else "name"
                errors[where] = exc.message
        self.errors = errors
        return preset

    def refresh_form(self) -> None:
        """Validate, show messages beside their fields, recompute the live panel."""
        preset = self.validate_form()
        if preset is not None:
            self.preset = preset
        table = self.query_one(DataTable)
        for path in self.paths:  # only the rows whose text or message changed are redrawn
            shown = (self.field_texts[path], self.errors.get(path, ""))
            if self._shown.get(path) == shown:
                continue
            self._shown[path] = shown
            cell = Text(shown[0])
            if shown[1]:
                cell = Text.assemble(cell, ("  ← " + shown[1], "bold red"))
            table.update_cell(path, "value", cell)
            table.update_cell(path, "field", Text(path, style="bold red" if shown[1] else "dim"))
        self._show_error()
        dirty = " (edited)" if self.preset != self.original or self.errors else ""
        kind = "built-in" if self.start.builtin else "user preset"
        self.query_one("#editor-title", Static).update(
            f"[b]{escape(self.preset.name)}[/] · {kind}{dirty}"
        )
        self.refresh_live()

    def _show_error(self) -> None:
        """The highlighted field's message under its input."""
        message = self.errors.get(self.current, "")
        box = self.query_one("#editor-error", Static)
        box.update(f"↑ {escape(message)}" if message else "")
        box.display = bool(message)
        self.field_box.set_class(bool(message), "invalid")

    def refresh_live(self) -> None:
        """Redraw the live panel, and ask for the exact figure of a valid form (a trace in the background)."""
        est = estimate(self.preset, self.gpu)  # once for both: each estimate reads the caches
        self.exact.want(None if self.errors else self.preset, est)
        self.query_one("#live-panel", Static).update(self.live_text(est))

    def live_text(self, est: Estimate) -> str:
        """The live panel for `est` (the form's preset on its GPU): params, FLOPs, tokens,
        VRAM bar and verdict, batch suggestion."""
        gpu = self.gpu
        lines = []
        if self.errors:
            lines.append(
                f"[bold red]{len(self.errors)} field(s) invalid[/]: showing the last valid preset"
            )
        where = f"{gpu.name} ({human_bytes(gpu.memory_bytes)})" if gpu else "no GPU"
        what_if = " \\[what-if]" if self.gpu_choice >= 0 else ""  # escaped: not a markup tag
        lines.append(f"GPU   {where}{what_if}")
        lines.append(
            f"params {human_count(est.params, 2)}   FLOPs/token {human_count(est.flops_per_token, 2)}"
        )
        if est.figures:  # your own model: no formula, the module itself is measured and traced
            lines.append(
                f"[dim]your own model: params and FLOPs {est.figures} (counted on the meta "
                "device, FlopCounterMode); memory traced[/]"
            )
        lines.append(
            f"tokens/step {est.tokens_per_step:,}   run tokens {human_count(est.run_tokens, 2)}"
        )
        lines.append(
            f"dtype {est.dtype}   peak {human_bytes(est.peak_bytes)} ({source_label(est)})"
        )
        note = self.exact.note(est)
        if note:
            lines.append(f"[dim]{note}[/]")
        bar = vram_bar(est, width=30).markup
        lines.append(bar.rstrip("\n"))
        color = {True: "green", False: "bold red", None: "yellow"}[est.fits]
        lines.append(f"[{color}]{verdict_words(est, 'ctrl+g')}[/]")
        tip = self.suggestion(est)
        if tip:
            lines.append(tip)
        return "\n".join(lines)

    def suggestion(self, est: Estimate) -> str:
        suggestion = suggest_batch(self.preset, self.gpu)
        if suggestion is None:
            return "batch tip: pick a GPU (ctrl+g) to get a batch suggestion"
        same = batch_tip(self.preset, suggestion, self.gpu.name if self.gpu else "?")
        if same is not None:
            return f"batch tip: {same}"
        return f"batch tip [b](ctrl+o)[/]: {suggestion.reason}"

    def set_fields(self, preset: Preset) -> None:
        """Put every field of `preset` into the form."""
        self.field_texts = {path: field_text(get_field(preset, path)) for path in self.paths}
        box = self.field_box
        with box.prevent(Input.Changed):
            box.value = self.field_texts[self.current]
        self.refresh_form()

    # ---------------------------------------------------------------- events

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            self._edit(str(event.row_key.value))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.field_box.focus()  # a click on a row: type its new value at once

    def action_move(self, rows: int) -> None:
        """Highlight the field `rows` below (above, when negative) and edit it."""
        i = min(max(self.paths.index(self.current) + rows, 0), len(self.paths) - 1)
        self.select_field(self.paths[i])

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "editor-input":
            self.action_move(1)  # Enter takes the value and goes on, as in a form

    def on_input_changed(self, event: Input.Changed) -> None:
        # Keys arrive in bursts (a paste, fast typing): validate once after the burst.
        if event.input.id != "editor-input" or event.value != event.input.value:
            return  # another input's, or stale: the input moved to another field since
        self._take_text(event.value)

    def _take_text(self, text: str) -> None:
        """`text` is the highlighted field's new text: validate after the burst."""
        if text == self.field_texts[self.current]:
            return
        self.field_texts[self.current] = text
        if self._refresh_due:
            return
        self._refresh_due = True
        self.call_later(self._refresh_once)

    def _refresh_once(self) -> None:
        self._refresh_due = False
        self.refresh_form()

    def action_apply_suggestion(self) -> None:
        if self.errors:
            self.notify("fix the invalid fields first", severity="warning")
            return
        suggestion = suggest_batch(self.preset, self.gpu)
        if suggestion is None:
            self.notify("no GPU to plan for: pick a what-if GPU with ctrl+g", severity="warning")
            return
        self.set_fields(suggestion.apply(self.preset))
        self.notify(
            f"micro-batch {suggestion.micro_batch} x {suggestion.grad_accum} accumulation; tokens per step {suggestion.tokens_per_step:,}"
        )

    def action_revert(self) -> None:
        self.set_fields(self.original)
        self.notify(f"reverted to {self.original.name}")

    def action_duplicate(self) -> None:
        if self.errors:
            self.notify("fix the invalid fields first", severity="warning")
            return
        self.app.switch_screen(
            EditorScreen(duplicate(self.preset), gpu_choice=self.gpu_choice, original=self.original)
        )

    def action_next_gpu(self) -> None:
        self.gpu_choice = self.gpu_choice + 1 if self.gpu_choice + 1 < len(CATALOG) else -1
        self.refresh_form()

    def unsaved(self) -> bool:
        """The form differs from what it opened with (or last saved), or holds an invalid field."""
        return bool(self.errors) or values_of(self.preset) != values_of(self.clean)

    def action_back(self) -> None:
        from cockpit.tui.screens.confirm import ConfirmScreen

        if not self.unsaved():
            self.app.pop_screen()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.app.pop_screen()

        self.app.push_screen(
            ConfirmScreen(f"Discard the unsaved edits to [b]{self.preset.name}[/]?"), answered
        )

    def action_save(self) -> None:
        from cockpit.tui.screens.confirm import PromptScreen

        if self.errors:
            self.notify("fix the invalid fields first", severity="warning")
            return
        default = (
            self.preset.name
            if not self.start.builtin or self.preset.name != self.start.name
            else f"{self.preset.name}_custom"
        )
        self.app.push_screen(PromptScreen("Save as user preset named:", default), self._save_as)

    def _save_as(self, name: str | None) -> None:
        """Save under `name`, asking first before hiding a built-in or replacing another user preset."""
        from cockpit.tui.screens.confirm import ConfirmScreen

        if not name:
            return
        question = self._save_question(name)
        if question is None:
            self._write(name)
            return
        self.app.push_screen(
            ConfirmScreen(question), lambda yes: self._write(name) if yes else None
        )

    def _save_question(self, name: str) -> str | None:
        """Why saving as `name` needs a yes (None when it loses nothing)."""
        if any(p.builtin and p.name == name for p in list_presets()):
            return (
                f"[b]{name}[/] is a built-in preset: a user preset of that name hides it from "
                "the list until you delete the file.\nSave anyway?"
            )
        path = user_dir() / f"{name}.json"
        if path.exists() and str(path) != str(self.start.source_path):
            return f"A user preset [b]{name}[/] exists ({path}).\nReplace it?"
        return None

    def _write(self, name: str) -> None:
        """Save the form as a user preset with its full values (never a diff against a base)."""
        try:
            changes = {"name": name}
            description = edited_description(self.original, self.preset)
            if description is not None:
                changes["description"] = description
            preset = apply_overrides(self.preset, changes)
            preset = dataclasses.replace(preset, extends="")
            path = save_user_preset(preset)
        except (PresetError, OSError) as exc:
            self.notify(f"not saved: {exc}", severity="error", timeout=8)
            return
        self.saved_path = path
        # From here the form edits the saved user preset: its title, revert and "edited" follow it.
        preset = dataclasses.replace(preset, builtin=False, source_path=str(path))
        self.clean = self.original = self.start = preset
        self._start_texts = {p: field_text(get_field(preset, p)) for p in self.paths}
        self.notify(f"saved {path}")
        self.set_fields(preset)

    def action_queue_add(self) -> None:
        """Queue the named preset with this form's edits as overrides (once, or a sweep)."""
        from cockpit.tui.screens.queue_add import edits_of

        if self.errors:
            self.notify("fix the invalid fields first", severity="warning")
            return
        self.app.add_to_queue(self.original.name, edits_of(self.preset, self.original))  # type: ignore[attr-defined]

    def action_launch(self) -> None:
        from cockpit.tui.screens.confirm import confirm_launch

        if self.errors:
            self.notify("fix the invalid fields first", severity="warning")
            return
        app = app_of(self)
        confirm_launch(app, self.preset, estimate(self.preset, app.local_gpu_spec()))
