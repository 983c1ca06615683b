"""Sweep pruning: median stopping and successive halving over a group's eval curves."""

from __future__ import annotations

import math

import pytest

from cockpit.campaign.hooks import GroupRun, NoPruning
from cockpit.campaign.prune import (
    GroupPolicies,
    MedianStopping,
    SuccessiveHalving,
    loss_at,
    policy_named,
)
from cockpit.campaign.store import Entry

TOKENS_PER_STEP = 1000


def entry(entry_id: int, state: str = "running") -> Entry:
    return Entry(
        id=entry_id, preset="tiny_char", overrides={}, device="cpu", gpus=0, priority=0,
        position=entry_id, after=None, group="lr", name="", workdir="/", runs_root="/",
        state=state, reason="", request=None, attempts=1, retries=[], run_dir=None,
        backend="local", backend_job=None, planned_bytes=None, planned_device=None,
        threads=None, planned_seconds=None, run_seconds=0.0, attempt_started=None, gpu_seconds=0.0,
        created=0.0, started=None, ended=None, updated=0.0,
    )  # fmt: skip


def run(entry_id: int, losses: list[float], step: int, *, state: str = "running",
        max_steps: int = 100, every: int = 10) -> GroupRun:  # fmt: skip
    """A run that evaluated every `every` steps with these losses and is now at `step`."""
    evals = tuple(((i + 1) * every * TOKENS_PER_STEP, v) for i, v in enumerate(losses))
    return GroupRun(entry(entry_id, state), step, max_steps, TOKENS_PER_STEP, evals)


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [(10_000, 3.0), (20_000, 2.0), (15_000, 2.5), (5_000, None), (40_000, None)],
)
def test_loss_at_reads_the_curve_linearly_between_evals(tokens, expected):
    evals = ((10_000, 3.0), (20_000, 2.0), (30_000, 1.5))
    assert loss_at(evals, tokens) == expected


def test_median_stops_the_entry_worse_than_its_peers_at_the_same_tokens():
    runs = [
        run(1, [3.0, 2.5, 2.2], 30),
        run(2, [3.0, 2.4, 2.1], 30),
        run(3, [3.2, 2.9, 2.8], 30),  # clearly worse
        run(4, [3.0, 2.5, 2.23], 30),
    ]
    decisions = MedianStopping().prune("lr", runs)
    assert list(decisions) == [3]
    assert "median" in decisions[3] and "lr" in decisions[3]


def test_median_waits_for_the_minimum_share_of_steps_and_for_peers():
    early = [run(1, [3.0], 10), run(2, [3.0], 10), run(3, [9.0], 10)]  # 10% of 100 steps
    assert MedianStopping(min_fraction=0.25).prune("lr", early) == {}
    lonely = [run(1, [3.0, 2.0, 1.9], 30), run(2, [3.0, 2.9, 2.8], 30)]  # one peer only
    assert MedianStopping(min_peers=2).prune("lr", lonely) == {}


def test_median_compares_at_tokens_a_peer_has_reached_only():
    # entry 3 is far ahead: its peers have no figure at its tokens yet, so it is not judged
    runs = [
        run(1, [2.8], 30, every=30),
        run(2, [2.8], 30, every=30),
        run(3, [3.0, 2.9, 2.8, 2.7, 2.6], 50),
    ]
    assert MedianStopping().prune("lr", runs) == {}


def test_median_counts_ended_entries_as_peers_but_stops_only_running_ones():
    runs = [
        run(1, [3.0, 2.5, 2.2], 100, state="done"),
        run(2, [3.0, 2.4, 2.1], 100, state="done"),
        run(3, [3.5, 3.4, 3.3], 30, state="stopped"),  # worse, but already stopped
        run(4, [3.1, 2.9, 2.9], 30),
    ]
    assert list(MedianStopping().prune("lr", runs)) == [4]


def test_a_nan_loss_loses_and_diverged_peers_prune_nobody():
    runs = [
        run(1, [3.0, 2.5, 2.2], 30),
        run(2, [3.0, 2.4, 2.1], 30),
        run(3, [3.0, math.nan, math.nan], 30),
    ]
    assert list(MedianStopping().prune("lr", runs)) == [3]
    diverged = [run(1, [math.inf] * 3, 30), run(2, [math.nan] * 3, 30), run(3, [3.0, 2.9, 2.8], 30)]
    assert MedianStopping().prune("lr", diverged) == {}


def test_halving_keeps_the_best_third_at_a_rung():
    policy = SuccessiveHalving(min_fraction=1 / 9, eta=3)
    assert [round(r, 3) for r in policy.rungs()] == [0.111, 0.333]
    # every entry has passed the 1/3 rung (step 40 of 90; evals every 10 steps)
    runs = [run(i, [3.0, 2.8, 2.6 + 0.1 * i, 2.5 + 0.1 * i], 40, max_steps=90) for i in (1, 2, 3)]
    decisions = policy.prune("lr", runs)
    assert sorted(decisions) == [2, 3] and "successive halving" in decisions[2]


def test_halving_lets_the_first_entries_of_a_rung_go_on():
    runs = [
        run(1, [3.0, 2.8, 2.6, 2.5], 40, max_steps=90),
        run(2, [3.0, 2.9, 2.9, 2.9], 40, max_steps=90),
    ]
    assert SuccessiveHalving().prune("lr", runs) == {}


def test_policies_by_name_and_per_group():
    assert isinstance(policy_named(None), NoPruning)
    assert isinstance(policy_named("median"), MedianStopping)
    assert isinstance(policy_named("halving"), SuccessiveHalving)
    with pytest.raises(ValueError, match="unknown policy 'best'"):
        policy_named("best")
    runs = [run(1, [3.0, 2.5, 2.2], 30), run(2, [3.0, 2.4, 2.1], 30), run(3, [3.2, 2.9, 2.8], 30)]
    policies = GroupPolicies({"lr": "median"})
    assert list(policies.prune("lr", runs)) == [3]
    assert policies.prune("other", runs) == {}


def test_queue_add_prune_records_the_groups_policy(capsys):
    from cockpit.__main__ import main
    from cockpit.campaign.adding import prune_policies
    from cockpit.campaign.store import Queue

    argv = ["queue", "add", "tiny_char", "--device", "cpu", "--set", "train.max_steps=200"]
    assert main([*argv, "--sweep", "lr=1e-3,3e-4", "--prune", "median"]) == 0
    assert main([*argv, "--prune", "halving"]) == 2  # pruning needs a sweep
    assert "--prune stops the losers of a sweep" in capsys.readouterr().err
    with Queue() as queue:
        (group,) = queue.groups()
        assert prune_policies(queue) == {group: "median"}
        assert len(queue.entries()) == 2  # the refused add added nothing
        lookup = GroupPolicies(lambda: prune_policies(queue))
        runs = [
            run(1, [3.0, 2.5, 2.2], 30),
            run(2, [3.0, 2.4, 2.1], 30),
            run(3, [3.2, 2.9, 2.8], 30),
        ]
        assert list(lookup.prune(group, runs)) == [3]
        assert lookup.prune("another", runs) == {}
