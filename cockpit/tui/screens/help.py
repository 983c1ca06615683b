"""The help screen (? or F1): every screen's keys, and where to read more."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

INTRO = (
    "[b]gpt-cockpit[/]: pick a preset, check its estimate, launch it, watch it train.\n"
    "Runs go on when the app closes; `gpt-cockpit attach last` (or [b]r[/] here) finds them again.\n"
    "ctrl+p opens the command palette: every action of the screen you are on."
)


def key_name(key: str) -> str:
    """A binding's keys as a person types them."""
    names = {
        "escape": "Esc",
        "enter": "Enter",
        "question_mark": "?",
        "f1": "F1",
        "space": "space",
        "delete": "Del",
    }
    return "/".join(names.get(k, k) for k in key.split(","))


def screen_keys() -> list[tuple[str, list[tuple[str, str]]]]:
    """(screen title, [(keys, what they do)]) for each cockpit screen, from their bindings."""
    from cockpit.tui.screens.compare import CompareScreen
    from cockpit.tui.screens.editor import EditorScreen
    from cockpit.tui.screens.presets import PresetsScreen
    from cockpit.tui.screens.run import RunScreen
    from cockpit.tui.screens.runs import RunsScreen

    out = []
    for title, screen in (
        ("presets (first screen)", PresetsScreen),
        ("editor", EditorScreen),
        ("run", RunScreen),
        ("runs", RunsScreen),
        ("compare (c on the runs screen)", CompareScreen),
    ):
        keys = [
            (key_name(b.key), b.description)
            for b in screen.BINDINGS
            if isinstance(b, Binding) and b.description
        ]
        out.append((title, keys))
    out.append(
        ("everywhere", [("?/F1", "this help"), ("ctrl+p", "command palette"), ("ctrl+q", "quit")])
    )
    return out


def help_text() -> str:
    lines = [INTRO, ""]
    for title, keys in screen_keys():
        lines.append(f"[b]{title}[/]")
        lines.extend(f"  [b]{k:<10}[/] {what}" for k, what in keys)
    lines.append("\n[dim]docs/app.md has the whole story.[/]")
    return "\n".join(lines)


CLOSING = "[b]↑↓ j k[/] scroll  [b]PgUp PgDn space[/] page  [b]Esc q ?[/] close"


class HelpScreen(ModalScreen[None]):
    """Keys of every screen; Esc, q or ? closes it."""

    BINDINGS = [
        Binding("escape,q,question_mark,f1", "close", "Close"),
        Binding("down,j", "scroll(1)", "Down", show=False),
        Binding("up,k", "scroll(-1)", "Up", show=False),
        Binding("pagedown,space,tab", "page(1)", "Page down", show=False),
        Binding("pageup,b,shift+tab", "page(-1)", "Page up", show=False),
        Binding("home,g", "edge(0)", "Top", show=False),
        Binding("end,G", "edge(1)", "Bottom", show=False),
    ]

    def compose(self) -> ComposeResult:
        # The closing line sits outside the scrolled text, so it shows at every terminal size.
        with Vertical(classes="dialog help"):
            with VerticalScroll(id="help-scroll"):
                yield Static(help_text(), id="help-text")
            yield Static(CLOSING, id="help-keys", classes="dialog-keys")

    @property
    def scroller(self) -> VerticalScroll:
        return self.query_one("#help-scroll", VerticalScroll)

    def action_scroll(self, lines: int) -> None:
        self.scroller.scroll_relative(y=lines, animate=False)

    def action_page(self, pages: int) -> None:
        box = self.scroller
        box.scroll_relative(
            y=pages * max(1, box.scrollable_content_region.height - 1), animate=False
        )

    def action_edge(self, end: int) -> None:
        box = self.scroller
        box.scroll_end(animate=False) if end else box.scroll_home(animate=False)

    def action_close(self) -> None:
        self.dismiss(None)
