"""Small dialogs: a yes/no question and a one-line text prompt."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from cockpit.estimate import Estimate
from cockpit.presets import Preset


class ConfirmScreen(ModalScreen[bool]):
    """Ask a yes/no question; y confirms, n or Escape declines."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, id="question")
            yield Static("[b]y[/] yes    [b]n[/] no", classes="dialog-keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PromptScreen(ModalScreen[str | None]):
    """Ask for one line of text; Enter accepts, Escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, value: str = "") -> None:
        super().__init__()
        self.question = question
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question)
            yield Input(self.value, id="prompt-input")
            yield Static("[b]Enter[/] ok    [b]Esc[/] cancel", classes="dialog-keys")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


def confirm_launch(app: App, preset: Preset, est: Estimate) -> None:
    """Launch `preset`, asking first when the estimate says it would not fit (or it cannot train)."""
    ok, why = preset.trainable
    if not ok:
        app.notify(f"{preset.name} cannot be trained: {why}", severity="error")
        return
    if est.fits is False:
        question = f"[b]{preset.name}[/] probably does not fit:\n{est.verdict}\n\nLaunch anyway?"

        def answered(yes: bool | None) -> None:
            if yes:
                app.launch_preset(preset)  # type: ignore[attr-defined]

        app.push_screen(ConfirmScreen(question), answered)
        return
    app.launch_preset(preset)  # type: ignore[attr-defined]
