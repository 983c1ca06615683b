"""Replay of a recorded run with a real loss spike (bench/record_spike_run.py made the file)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cockpit.health import HealthMonitor, HealthWarning
from cockpit.plan.presets import load_preset_file
from cockpit.rundir import EventTailer, read_events

DATA = Path(__file__).parent / "data"
EVENTS = DATA / "spike_run.events.jsonl"
PRESET = DATA / "spike_run.preset.json"


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return read_events(EVENTS)


@pytest.fixture(scope="module")
def preset():
    return load_preset_file(PRESET)


def jump_step(records: list[dict], lookback: int = 50, factor: float = 1.5) -> int:
    """Where the loss jumps, by a plain rule of its own: the first point above 1.5x the mean of the 50 before it."""
    steps = [r for r in records if r["event"] == "step"]
    losses = [r["loss"] for r in steps]
    for i in range(lookback, len(losses)):
        before = losses[i - lookback : i]
        if losses[i] > factor * sum(before) / lookback:
            return steps[i]["step"]
    raise AssertionError("the recording has no jump")


def test_the_recording_is_a_real_small_run(records: list[dict], preset) -> None:
    steps = [r for r in records if r["event"] == "step"]
    assert 150 <= len(records) <= 600  # a few hundred lines
    assert [r["step"] for r in steps] == list(range(1, len(steps) + 1))
    assert all(math.isfinite(r["loss"]) and r["lr"] > 0 for r in steps)
    assert preset.train.lr >= 0.05  # far above a sane AdamW lr for this model
    first = steps[0]["loss"]
    assert first == pytest.approx(
        math.log(preset.model.vocab_size), rel=0.15
    )  # it starts untrained ...
    assert min(r["loss"] for r in steps[:100]) < 0.7 * first  # ... and learns before the spike


def test_replay_warns_of_the_spike_at_the_step_where_the_loss_jumps(
    records: list[dict], preset
) -> None:
    warnings = HealthMonitor(preset).replay(records)
    spikes = [w for w in warnings if w.rule == "loss_spike"]
    assert len(spikes) == 1, [(w.rule, w.step) for w in warnings]
    (spike,) = spikes
    at = jump_step(records)
    assert spike.step == at
    assert spike.is_anomaly and spike.severity == "warning"
    assert at <= spike.evidence["detected_at_step"] <= at + 2  # confirmed within the patience
    assert spike.evidence["ratio"] > 1.5 and spike.evidence["sigma"] > 6
    assert "reduce train.lr" in spike.tip and "warmup" in spike.tip
    assert not [w for w in warnings if w.is_anomaly and w.step < at]


def test_replay_without_the_preset_finds_the_same_spike(records: list[dict]) -> None:
    spikes = [w.step for w in HealthMonitor().replay(records) if w.rule == "loss_spike"]
    assert spikes == [jump_step(records)]


def test_warnings_the_trainer_wrote_agree_with_the_replay(records: list[dict], preset) -> None:
    """A recording made through the real child carries the trainer's own warning events."""
    written = [
        HealthWarning.from_event(r)
        for r in records
        if r["event"] == "warning" and r.get("rule") == "loss_spike"
    ]
    if not any(r["event"] == "warning" for r in records):
        pytest.skip("recorded by the standalone loop, which writes no warning events")
    replayed = [w for w in HealthMonitor(preset).replay(records) if w.rule == "loss_spike"]
    assert [(w.step, w.message) for w in written] == [(w.step, w.message) for w in replayed]


def test_a_reader_tailing_the_growing_file_sees_the_same_warnings(
    records: list[dict], preset, tmp_path: Path
) -> None:
    """The app and `attach` poll the log as it grows; batch boundaries must not change the findings."""
    whole = [(w.rule, w.step, w.message) for w in HealthMonitor(preset).replay(records)]
    lines = EVENTS.read_bytes().splitlines(keepends=True)
    target = tmp_path / "events.jsonl"
    tailer, monitor, seen = EventTailer(target), HealthMonitor(preset), []
    with open(target, "wb") as handle:
        for i in range(0, len(lines), 7):
            chunk = b"".join(lines[i : i + 7])
            handle.write(chunk[: len(chunk) // 2])  # half a line now, the rest on the next poll
            handle.flush()
            seen += monitor.replay(tailer.poll())
            handle.write(chunk[len(chunk) // 2 :])
            handle.flush()
            seen += monitor.replay(tailer.poll())
    assert [(w.rule, w.step, w.message) for w in seen] == whole


@pytest.mark.parametrize("cut", [100, 151, 153, 200])
def test_replay_resumed_from_a_checkpoint_matches(records: list[dict], preset, cut: int) -> None:
    whole = [(w.rule, w.step, w.message) for w in HealthMonitor(preset).replay(records)]
    first = HealthMonitor(preset)
    before = first.replay([r for r in records if r["step"] <= cut])
    resumed = HealthMonitor(preset)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict(), allow_nan=False)))
    after = resumed.replay([r for r in records if r["step"] > cut])
    assert [(w.rule, w.step, w.message) for w in before + after] == whole


def test_headless_attach_shows_the_spike_at_its_step(preset, tmp_path: Path, capsys) -> None:
    """`gpt-cockpit attach --no-ui` on a run holding the recording prints the spike warning at step 90."""
    from cockpit import rundir
    from cockpit.__main__ import main

    run_dir = rundir.create_run_dir(preset, tmp_path / "spike")
    (run_dir / rundir.EVENTS_JSONL).write_bytes(EVENTS.read_bytes())
    rundir.update_run_info(run_dir, status="finished", end_reason="finished")
    main(["attach", str(run_dir), "--no-ui"])
    err = capsys.readouterr().err
    at = jump_step(read_events(EVENTS))
    lines = [line for line in err.splitlines() if "[loss_spike]" in line]
    assert len(lines) == 1 and f"step {at}" in lines[0], err[-2000:]
    assert "reduce train.lr" in err
