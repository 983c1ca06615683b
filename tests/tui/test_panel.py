"""A panel redraws for new words and not for the words it already shows."""

from __future__ import annotations

from textual.app import App, ComposeResult

from cockpit.tui.widgets.panel import Panel


class OnePanel(App):
    def compose(self) -> ComposeResult:
        yield Panel("step 10", id="words")


async def test_the_same_words_ask_for_no_layout_and_new_words_show():
    app = OnePanel()
    async with app.run_test(size=(40, 5)) as pilot:
        panel = app.query_one(Panel)
        await pilot.pause()
        asked: list[bool] = []
        refresh = panel.refresh

        def counting(*args, **kwargs):
            asked.append(kwargs.get("layout", False))
            return refresh(*args, **kwargs)

        panel.refresh = counting  # type: ignore[method-assign]
        panel.update("step 10")
        assert asked == [] and str(panel.render()) == "step 10"
        panel.update("step 20")
        assert asked == [True] and str(panel.render()) == "step 20"
        await pilot.pause()
        assert "step 20" in "".join(s.text for s in app.screen._compositor.render_strips())
        panel.update("")  # cleared is a change too
        assert asked == [True, True] and str(panel.render()) == ""
