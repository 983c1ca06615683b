"""Sweeps that stop their losers early, so the GPU goes to the next entry.

Two policies, both comparing entries of one sweep group at the same number of tokens seen
(so a sweep over batch sizes is judged fairly), both asked once per scheduler tick:

- `median` (the default, the median stopping rule of Google Vizier, Golovin et al. 2017):
  once an entry has done `min_fraction` of its steps, its latest val loss is compared with
  the other entries' val loss at the same tokens seen (read off their eval curves, linearly
  between two evals; a peer that has not got that far does not count). When at least
  `min_peers` peers have a figure there and the entry is worse than their median by more
  than `margin` (relative), it is stopped with a checkpoint.
- `halving` (asynchronous successive halving, Li et al. 2018, "ASHA"): rungs at
  `min_fraction` x eta^k of the run (1/9, 1/3 with eta=3). An entry reaching a rung goes
  on only while it is in the best 1/eta of the entries that reached that rung so far; the
  first entries of a rung always go on (nothing to compare with yet).

A NaN or infinite val loss is worse than any number. An entry that is stopped this way ends
`stopped` (reason "pruned: ...") with its checkpoint: `gpt-cockpit resume` can still finish
it by hand.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from statistics import median

from cockpit.campaign.hooks import GroupRun, NoPruning, PruningPolicy

POLICIES = ("median", "halving")


def loss_at(evals: tuple[tuple[int, float], ...], tokens: int) -> float | None:
    """The val loss of an eval curve at `tokens` seen: exact, or linear between two evals;
    None before its first eval or past its last (it has not got there)."""
    if not evals or tokens < evals[0][0] or tokens > evals[-1][0]:
        return None
    xs = [t for t, _ in evals]
    i = bisect_left(xs, tokens)
    if xs[i] == tokens:
        return evals[i][1]
    (t0, v0), (t1, v1) = evals[i - 1], evals[i]
    if not (math.isfinite(v0) and math.isfinite(v1)):
        return math.inf
    return v0 + (v1 - v0) * (tokens - t0) / (t1 - t0)


def _worse(value: float) -> float:
    """Loss as a sort key: NaN and inf rank last."""
    return value if math.isfinite(value) else math.inf


@dataclass(frozen=True)
class MedianStopping:
    """Stop an entry whose val loss is worse than its peers' median at the same tokens."""

    min_fraction: float = 0.25  # judge an entry only after this share of its steps
    margin: float = 0.02  # worse than the median by more than 2% (relative) to be stopped
    min_peers: int = 2  # other entries that must have a val loss at those tokens

    def prune(self, group: str, runs: list[GroupRun]) -> dict[int, str]:
        """Entry id -> why, for each running entry that lost to the group's median."""
        decisions: dict[int, str] = {}
        for run in runs:
            if run.entry.state != "running" or not run.evals:
                continue
            if run.fraction_done < self.min_fraction:
                continue
            tokens, loss = run.evals[-1]
            peers = [
                value
                for other in runs
                if other.entry.id != run.entry.id
                and (value := loss_at(other.evals, tokens)) is not None
            ]
            if len(peers) < self.min_peers:
                continue
            mid = median(_worse(v) for v in peers)
            if not math.isfinite(mid):
                continue  # the peers diverged too: no figure to lose against
            if not math.isfinite(loss) or loss > mid * (1 + self.margin):
                decisions[run.entry.id] = (
                    f"val {loss:.4f} at {tokens:,} tokens is worse than the median "
                    f"{mid:.4f} of {len(peers)} other entries of {group} by more than "
                    f"{self.margin:.0%}"
                )
        return decisions


@dataclass(frozen=True)
class SuccessiveHalving:
    """Asynchronous successive halving: at each rung keep the best 1/eta so far."""

    min_fraction: float = 1 / 9  # the first rung, as a share of the run's steps
    eta: int = 3  # keep 1 in eta at each rung

    def rungs(self) -> list[float]:
        """The rungs as shares of a run: min_fraction, x eta, ... below 1."""
        out, at = [], self.min_fraction
        while at < 1.0 - 1e-9:
            out.append(at)
            at *= self.eta
        return out

    def prune(self, group: str, runs: list[GroupRun]) -> dict[int, str]:
        """Entry id -> why, for each running entry not in its top rung's best 1/eta."""
        decisions: dict[int, str] = {}
        for run in runs:
            if run.entry.state != "running" or not run.evals or not run.max_steps:
                continue
            reached = [r for r in self.rungs() if run.fraction_done >= r]
            if not reached:
                continue
            rung = reached[-1]
            tokens = int(rung * run.max_steps * run.tokens_per_step)
            mine = loss_at(run.evals, tokens)
            if mine is None:  # no eval at or past the rung yet: judged at the next tick
                continue
            at_rung = [
                _worse(value)
                for other in runs
                if (value := loss_at(other.evals, tokens)) is not None
            ]
            keep = max(1, len(at_rung) // self.eta)
            if len(at_rung) < self.eta:
                continue  # the first entries of a rung always go on
            cutoff = sorted(at_rung)[keep - 1]
            if _worse(mine) > cutoff:
                decisions[run.entry.id] = (
                    f"val {mine:.4f} at {rung:.0%} of its steps is not in the best {keep} "
                    f"of {len(at_rung)} entries of {group} there (successive halving, eta "
                    f"{self.eta})"
                )
        return decisions


def policy_named(name: str | None) -> PruningPolicy:
    """The policy `--prune NAME` names ("median", "halving"); None or "" prunes nothing.

    ValueError (one line) for another name.
    """
    if not name or name == "none":
        return NoPruning()
    if name == "median":
        return MedianStopping()
    if name == "halving":
        return SuccessiveHalving()
    raise ValueError(f"--prune: unknown policy {name!r} (one of: {', '.join(POLICIES)})")


class GroupPolicies:
    """Each sweep group pruned by the policy it was added with (`queue add --prune`).

    `lookup` gives {group: policy name}; it is asked at every decision, so a sweep added
    while the scheduler runs is pruned too.
    """

    def __init__(self, lookup: Callable[[], dict[str, str]] | dict[str, str]) -> None:
        self.lookup = lookup if callable(lookup) else (lambda: dict(lookup))
        self._policies: dict[str, PruningPolicy] = {}

    def prune(self, group: str, runs: list[GroupRun]) -> dict[int, str]:
        """Ask the group's own policy; a group without one is never pruned."""
        name = self.lookup().get(group)
        if not name:
            return {}
        if group not in self._policies:
            self._policies[group] = policy_named(name)
        return self._policies[group].prune(group, runs)
