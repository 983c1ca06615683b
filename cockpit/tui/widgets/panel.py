"""A text panel that is laid out and drawn again only when its text changes."""

from __future__ import annotations

from textual.visual import VisualType
from textual.widgets import Static


class Panel(Static):
    """A Static that ignores an update to the text it already shows.

    Every Static update lays the whole screen out again and redraws the panel, and the screens
    rewrite their panels on each poll, cursor move and GPU change, mostly with the same words.
    """

    def update(self, content: VisualType = "", *, layout: bool = True) -> None:
        """Show `content`, unless it is the text already shown."""
        if isinstance(content, str) and content == self.content:
            return
        super().update(content, layout=layout)
