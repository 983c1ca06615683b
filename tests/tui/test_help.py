"""Help (? / F1), the cockpit's own actions in the command palette, and what the footers show."""

from __future__ import annotations

from helpers import app_for_tests, wait_for
from test_app_flows import select_preset
from textual.widgets import Footer, Static

from cockpit.tui.screens.editor import EditorScreen
from cockpit.tui.screens.help import HelpScreen
from cockpit.tui.screens.presets import PresetsScreen


def footer_keys(app) -> str:
    footer = app.screen.query_one(Footer)
    return " ".join(str(item.render()) for item in footer.query("FooterKey"))


async def footer_drawn(pilot) -> Footer:
    """The current screen's footer once it shows its keys (it composes them after the screen)."""
    await wait_for(pilot, lambda: pilot.app.screen.query_one(Footer).query("FooterKey"))
    await pilot.pause()  # and laid out: the tests read where each key lands
    return pilot.app.screen.query_one(Footer)


async def test_question_mark_and_f1_open_help_with_every_screens_keys():
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        for key in ("question_mark", "f1"):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            text = str(app.screen.query_one("#help-text", Static).render())
            for expected in ("presets", "editor", "Launch", "Detach", "Attach", "ctrl+p"):
                assert expected in text
            await pilot.press("escape")
            await pilot.pause()
            assert isinstance(app.screen, PresetsScreen)


async def test_f1_opens_help_from_the_editor_where_letters_are_typed():
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, EditorScreen)
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)


async def test_the_command_palette_offers_this_screens_actions():
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in (
            "Edit",
            "Launch",
            "Copy",
            "Next GPU",
            "Queue it",
            "Queue",
            "Runs",
            "Help",
            "Quit",
        ):
            assert title in titles
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "Next GPU")
        command.callback()
        await pilot.pause()
        assert app.screen.gpu_choice == 0  # it ran the screen's own action


def help_within_80_columns(footer: Footer) -> None:
    """The footer's f1 Help key ends inside an 80-column terminal."""
    keys = list(footer.query("FooterKey"))
    last = [k for k in keys if "Help" in str(k.render())]
    assert last and last[0].region.right <= 80, [str(k.render()) for k in keys]


async def test_at_80_columns_footers_show_enter_g_and_esc_and_reach_f1_help():
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, PresetsScreen))
        help_within_80_columns(await footer_drawn(pilot))
        keys = footer_keys(app)
        assert "Edit" in keys and "Prev GPU" in keys and "Queue" in keys
        select_preset(app.screen, "tiny_char")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, EditorScreen))
        footer = await footer_drawn(pilot)
        first = footer.query("FooterKey").first()
        assert "Back" in str(first.render()) and first.region.right <= 80
        help_within_80_columns(footer)


async def test_help_scrolls_from_the_keyboard_and_its_closing_line_always_shows():
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("f1")
        await pilot.pause()
        help_screen = app.screen
        box = help_screen.query_one("#help-scroll")
        assert box.max_scroll_y > 0  # at 80x24 the help is longer than its box
        for key in ("down", "j"):
            before = box.scroll_y
            await pilot.press(key)
            await pilot.pause()
            assert box.scroll_y == before + 1, key
        for key in ("k", "up"):
            before = box.scroll_y
            await pilot.press(key)
            await pilot.pause()
            assert box.scroll_y == before - 1, key
        for key in ("pagedown", "space", "tab"):
            before = box.scroll_y
            await pilot.press(key)
            await pilot.pause()
            assert box.scroll_y > before + 3 or box.scroll_y == box.max_scroll_y, key
        await pilot.press("end")
        await pilot.pause()
        assert box.scroll_y == box.max_scroll_y
        await pilot.press("home")
        await pilot.pause()
        assert box.scroll_y == 0
        keys = help_screen.query_one("#help-keys", Static)
        assert "close" in str(keys.render()) and keys.region.bottom <= 24 and keys.region.height


async def test_help_lists_the_compare_screens_keys_and_fits_at_120x36():
    app = app_for_tests()
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause()
        text = str(app.screen.query_one("#help-text", Static).render())
        assert "compare" in text and "Align steps/tokens" in text
        box = app.screen.query_one("#help-scroll")
        await pilot.press("end")
        await pilot.pause()
        assert box.scroll_y == box.max_scroll_y
        keys = app.screen.query_one("#help-keys", Static)
        assert keys.region.bottom <= 36 and keys.region.height == 1
