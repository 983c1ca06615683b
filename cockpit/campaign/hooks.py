"""The scheduler's extension points, each with a no-op default so call sites never branch.

A `Notifier` hears every notice the scheduler gives (an entry done, failed, halted by a
health rule, pruned, stopped, retried; the queue empty; a budget or deadline reached). The
scheduler always writes each notice to the queue's log (the app's line) and then passes it
to the notifiers it was given; a notifier that raises is reported in the log and never stops
the queue. A `PruningPolicy` is asked once per tick, per sweep group, which running entries
to stop early; the default prunes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from cockpit.campaign.store import Entry

# Notice kinds, in the words the log and a push message use.
NOTICE_KINDS = (
    "started",
    "done",
    "failed",
    "halted",  # a health rule stopped the run
    "pruned",  # the pruning policy stopped it
    "stopped",  # stopped with a checkpoint: budget, deadline, stall, `queue stop --now`, a person
    "retried",  # it died (signal, OOM killer, lost GPU) and goes back in the queue to resume
    "cancelled",
    "adopted",  # a restarted scheduler found it still training
    "queue-empty",
    "budget",  # the budget was reached
    "deadline",  # the --until time was reached
)


@dataclass(frozen=True)
class Notice:
    """One thing worth telling a person, in one line."""

    kind: str  # one of NOTICE_KINDS
    message: str  # one line, e.g. "#3 small[lr=3e-4] done: val 1.482 after 2h 10m, $5.20"
    entry: Entry | None = None  # the entry it is about (None for the queue's own notices)
    at: float = field(default_factory=time.time)


class Notifier(Protocol):
    """Something that passes notices on (Apprise URLs, a webhook, a desktop notification)."""

    def notify(self, notice: Notice) -> None:
        """Send one notice; raising is allowed (the scheduler logs it and goes on)."""


class NullNotifier:
    """The default: tells nobody (the queue's log still has every notice)."""

    def notify(self, notice: Notice) -> None:
        """Do nothing."""


@dataclass(frozen=True)
class GroupRun:
    """What a pruning policy sees of one entry of a sweep group."""

    entry: Entry
    step: int  # the last step it reported
    max_steps: int
    tokens_per_step: int
    evals: tuple[tuple[int, float], ...]  # (tokens seen, val loss) of each eval so far, in order

    @property
    def fraction_done(self) -> float:
        """Share of its steps done, 0 to 1."""
        return min(1.0, self.step / self.max_steps) if self.max_steps else 0.0


class PruningPolicy(Protocol):
    """Decides which running entries of a sweep group stop early, with a checkpoint."""

    def prune(self, group: str, runs: list[GroupRun]) -> dict[int, str]:
        """Entry id -> why (one line) for each running entry to stop now; `runs` holds every
        entry of the group that has trained (running or ended), so medians can use all."""
        ...


class NoPruning:
    """The default: every entry trains to its end."""

    def prune(self, group: str, runs: list[GroupRun]) -> dict[int, str]:
        """Prune nothing."""
        return {}


def configured_notifiers() -> list[Notifier]:
    """The notifiers `queue run` passes to its scheduler (configured once, per user): none yet."""
    return [NullNotifier()]


def configured_pruning() -> PruningPolicy:
    """The pruning policy `queue run` passes to its scheduler: none yet (every entry runs on)."""
    return NoPruning()
