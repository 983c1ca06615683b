"""Typed access from a screen or widget to the app it runs in and the app's services.

Every screen and widget of the cockpit runs inside a `CockpitApp`; `node.app` is typed
as Textual's `App`, so these two functions say which app it is, once, for the checker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.dom import DOMNode

if TYPE_CHECKING:
    from cockpit.tui.app import CockpitApp, Services


def app_of(node: DOMNode) -> CockpitApp:
    """The CockpitApp that `node` runs in."""
    return cast("CockpitApp", node.app)


def services_of(node: DOMNode) -> Services:
    """What the app reaches outside itself (launcher, clock, pollers, runs folder), typed."""
    return app_of(node).services
