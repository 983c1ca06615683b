"""The key footer, rebuilt only when the keys it shows change."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets._footer import FooterKey


class KeyFooter(Footer):
    """Textual's Footer, without its two costs that buy nothing on this app's screens.

    Textual's Footer throws its keys away and builds them again after every focus change,
    screen push and binding refresh (a run screen's status poll refreshes them), even when
    the same keys show. Building a key also restyles it twice: it mounts compact and then
    takes the footer's non-compact value, and each class flip restyles the widget.
    """

    def __init__(self) -> None:
        super().__init__()
        self._shown: tuple[object, ...] | None = None  # the keys as last built or to be built

    def _keys_now(self, screen: Screen) -> tuple[object, ...]:
        """What the footer would show for `screen`: each key, its words, whether it is enabled."""
        return tuple(
            (binding.key, binding.action, binding.description, enabled, tooltip, binding.group)
            for (_, binding, enabled, tooltip) in screen.active_bindings.values()
            if binding.show
        )

    def bindings_changed(self, screen: Screen) -> None:
        """Rebuild the keys, unless those that would show are the ones showing or about to."""
        if self.is_attached and screen is self.screen and screen.app.app_focus:
            keys = self._keys_now(screen)
            if self._bindings_ready and keys == self._shown:
                return
            self._shown = keys  # a rebuild is on its way: the same keys again need no other
        super().bindings_changed(screen)

    def compose(self) -> ComposeResult:
        if self._bindings_ready:
            self._shown = self._keys_now(self.screen)
        for widget in super().compose():  # keys in a group pass through here too
            bound = widget._reactive_connect or {}  # the palette key is not bound: stays compact
            if isinstance(widget, FooterKey) and "compact" in bound:  # born with the footer's
                widget.set_reactive(FooterKey.compact, self.compact)  # value: no restyle
            yield widget
