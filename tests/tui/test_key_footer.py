"""The footer rebuilds its keys only when the keys it shows change, and draws them as Textual's."""

from __future__ import annotations

from helpers import app_for_tests, wait_for
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input

from cockpit.tui.widgets.footer import KeyFooter


class TwoKeys(Screen):
    """Two inputs to move the focus between, and a key that can be greyed."""

    BINDINGS = [Binding("f2", "alpha", "Alpha"), Binding("f3", "beta", "Beta")]

    def __init__(self) -> None:
        super().__init__()
        self.beta_greyed = False
        self.betas = 0

    def compose(self) -> ComposeResult:
        yield Input(id="one")
        yield Input(id="two")
        yield KeyFooter()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "beta" and self.beta_greyed:
            return None  # shown, greyed
        return True

    def action_beta(self) -> None:
        self.betas += 1


class FooterApp(App):
    def on_mount(self) -> None:
        self.push_screen(TwoKeys())


def shown(footer: Footer) -> dict[str, object]:
    """Each key's words, as the footer's widget for it."""
    return {str(key.render()).strip(): key for key in footer.query("FooterKey")}


async def test_the_same_keys_are_kept_and_a_greyed_key_is_rebuilt():
    app = FooterApp()
    async with app.run_test(size=(80, 10)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, TwoKeys))
        screen = app.screen
        footer = screen.query_one(KeyFooter)
        await wait_for(pilot, lambda: "f3 Beta" in shown(footer))
        await pilot.pause()  # a rebuild asked for before the first one ran has run too
        first = shown(footer)
        assert "f2 Alpha" in first and not first["f3 Beta"].has_class("-disabled")
        for key in first.values():  # spaced as Textual's footer draws them: the palette key tight
            assert key.has_class("-compact") == key.has_class("-command-palette"), key.classes

        for focus in ("#two", "#one", "#two"):  # each focus change refreshes the bindings
            screen.query_one(focus).focus()
            await pilot.pause()
        screen.refresh_bindings()
        await pilot.pause()
        assert shown(footer) == first
        assert all(a is b for a, b in zip(shown(footer).values(), first.values(), strict=True))

        screen.beta_greyed = True
        screen.refresh_bindings()
        await wait_for(pilot, lambda: shown(footer)["f3 Beta"].has_class("-disabled"))
        assert shown(footer)["f2 Alpha"] is not first["f2 Alpha"]  # rebuilt, all of it
        await pilot.press("f3")
        await pilot.pause()
        assert screen.betas == 0  # greyed means refused too

        screen.beta_greyed = False
        screen.refresh_bindings()
        await wait_for(pilot, lambda: not shown(footer)["f3 Beta"].has_class("-disabled"))
        await pilot.press("f3")
        await wait_for(pilot, lambda: screen.betas == 1)


async def test_the_presets_footer_keeps_its_keys_while_the_cursor_and_screens_move():
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.screen.query(KeyFooter))
        footer = app.screen.query_one(KeyFooter)
        await wait_for(pilot, lambda: "f1 Help" in shown(footer) and app.screen.focused)
        await pilot.pause()  # a rebuild asked for before the first one ran has run too
        first = shown(footer)
        await pilot.press("down", "down", "question_mark")
        await pilot.pause()
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen.query(KeyFooter))
        await pilot.pause()
        assert app.screen.query_one(KeyFooter) is footer
        assert all(a is b for a, b in zip(shown(footer).values(), first.values(), strict=True))
