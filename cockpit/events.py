"""The event log moved to cockpit.rundir (cockpit.rundir.events); these names stay for cockpit/train."""

from __future__ import annotations

from cockpit.rundir.events import (  # noqa: F401
    EventWriter,  # transitional: cockpit/train moves to cockpit.rundir
    NullEventWriter,  # transitional: cockpit/train moves to cockpit.rundir
    make_record,  # transitional: cockpit/train moves to cockpit.rundir
)
