"""The preset editor: every field, validated as you type, beside a live estimate."""

from __future__ import annotations

import dataclasses
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Static

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
from cockpit.tui.exact import ExactFigure, source_label
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


def input_id(path: str) -> str:
    return "f-" + path.replace(".", "--")


def parse_field(path: str, text: str, current: Any) -> Any:
    """The value typed for `path`: strings as typed, everything else read like a --set value."""
    if isinstance(current, str):
        return text
    return parse_override(f"{path}={text}")[1]


class EditorScreen(Screen):
    """Edit one preset; the panel on the right recomputes the estimate after each change."""

    BINDINGS = [
        Binding("escape", "back", "Back"),  # first: an 80-column footer keeps it
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("ctrl+l", "launch", "Launch", priority=True),
        Binding("ctrl+o", "apply_suggestion", "Batch tip", priority=True),
        Binding("ctrl+g", "next_gpu", "What-if GPU", priority=True),
        Binding("ctrl+r", "revert", "Revert", priority=True),
        Binding("ctrl+n", "duplicate", "Duplicate", priority=True),
        Binding("down", "app.focus_next", "Next field", show=False, priority=True),
        Binding("up", "app.focus_previous", "Previous field", show=False, priority=True),
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
        self._refresh_due = False  # a validation is queued behind a burst of field changes
        self.exact = ExactFigure(self, self.refresh_live)  # the traced figure, in the background

    # ---------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="editor-body"):
            with VerticalScroll(id="editor-fields"):
                yield Static(id="editor-title")
                for path in self.paths:
                    with Horizontal(classes="field-row"):
                        yield Label(path, classes="field-label")
                        yield Input(
                            field_text(get_field(self.start, path)), id=input_id(path), compact=True
                        )
                    yield Static("", id=input_id(path) + "-error", classes="field-error")
            with VerticalScroll(id="editor-live"):
                yield Static(id="live-panel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(f"#{input_id('model.n_layer')}", Input).focus()
        self.refresh_form()

    def on_unmount(self) -> None:
        self.exact.cancel()

    # ---------------------------------------------------------------- state

    @property
    def gpu(self) -> GpuSpec | None:
        if self.gpu_choice >= 0:
            return CATALOG[self.gpu_choice]
        return app_of(self).local_gpu_spec()

    def texts(self) -> dict[str, str]:
        return {path: self.query_one(f"#{input_id(path)}", Input).value for path in self.paths}

    def validate_form(self) -> Preset | None:
        """Check each field alone, then all together; set self.errors and return the preset if valid."""
        errors: dict[str, str] = {}
        values: dict[str, Any] = {}
        for path, text in self.texts().items():
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
        """Validate, show messages next to their fields, recompute the live panel."""
        preset = self.validate_form()
        if preset is not None:
            self.preset = preset
        for path in self.paths:
            message = self.errors.get(path, "")
            box = self.query_one(f"#{input_id(path)}-error", Static)
            box.update(f"↑ {message}" if message else "")
            box.display = bool(message)
            self.query_one(f"#{input_id(path)}", Input).set_class(bool(message), "invalid")
        dirty = " (edited)" if self.preset != self.original or self.errors else ""
        kind = "built-in" if self.start.builtin else "user preset"
        self.query_one("#editor-title", Static).update(f"[b]{self.preset.name}[/] · {kind}{dirty}")
        self.refresh_live()

    def refresh_live(self) -> None:
        """Redraw the live panel, and ask for the exact figure of a valid form (a trace in the background)."""
        self.exact.want(None if self.errors else self.preset, estimate(self.preset, self.gpu))
        self.query_one("#live-panel", Static).update(self.live_text())

    def live_text(self) -> str:
        """The live panel: params, FLOPs, tokens, VRAM bar and verdict, batch suggestion."""
        preset, gpu = self.preset, self.gpu
        est = estimate(preset, gpu)
        lines = []
        if self.errors:
            lines.append(
                f"[bold red]{len(self.errors)} field(s) invalid[/]: showing the last valid preset"
            )
        where = f"{gpu.name} ({human_bytes(gpu.memory_bytes)})" if gpu else "no GPU"
        lines.append(f"GPU   {where}{' [what-if]' if self.gpu_choice >= 0 else ''}")
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
        lines.append(f"[{color}]{est.verdict}[/]")
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
        for path in self.paths:
            self.query_one(f"#{input_id(path)}", Input).value = field_text(get_field(preset, path))
        self.refresh_form()

    # ---------------------------------------------------------------- events

    def on_input_changed(self, event: Input.Changed) -> None:
        # Changes arrive as a burst (the form being filled posts one per field): validate once,
        # after the burst, rather than once per field (50 fields x 50 checks took ~1 s).
        if not (event.input.id or "").startswith("f-") or self._refresh_due:
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
            preset = apply_overrides(self.preset, {"name": name})
            preset = dataclasses.replace(preset, extends="")
            path = save_user_preset(preset)
        except (PresetError, OSError) as exc:
            self.notify(f"not saved: {exc}", severity="error", timeout=8)
            return
        self.saved_path = path
        self.clean = preset
        self.notify(f"saved {path}")
        self.set_fields(preset)

    def action_launch(self) -> None:
        from cockpit.tui.screens.confirm import confirm_launch

        if self.errors:
            self.notify("fix the invalid fields first", severity="warning")
            return
        app = app_of(self)
        confirm_launch(app, self.preset, estimate(self.preset, app.local_gpu_spec()))
