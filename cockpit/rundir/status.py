"""The statuses a run can be in, and which status each `end` reason leaves."""

from __future__ import annotations

LIVE_STATUSES = ("starting", "running")
# `queued`: a cluster's scheduler holds the run's job (Slurm); no process yet, and not over.
WAITING_STATUSES = ("queued",)
# `killed`: the launcher killed its own child (a second Ctrl-C) and recorded so.
FINAL_STATUSES = ("finished", "stopped", "halted", "crashed", "error", "killed")
END_REASONS = ("finished", "stopped", "max-time", "halted", "crashed", "error")

# run.json status for each `end` reason; any other reason reads as crashed.
END_STATUS = {
    "finished": "finished",
    "max-time": "finished",
    "stopped": "stopped",
    "halted": "halted",
    "error": "error",
}


def status_for_end_reason(reason: str) -> str:
    """run.json status that goes with an `end` event's reason."""
    return END_STATUS.get(reason, "crashed")
