"""The training loop's parts alone: each is built from explicit inputs, with no Trainer behind it."""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cockpit import rundir
from cockpit.health import HealthWarning
from cockpit.plan.presets import Preset
from cockpit.rundir import CheckpointEvent, Event, StepEvent, WarningEvent
from cockpit.train.data import BatchSampler
from cockpit.train.readback import MetricsReader, PendingStep
from cockpit.train.respond import Responder
from cockpit.train.runtime import Dist, HaltTraining
from cockpit.train.snapshot import Checkpointer
from cockpit.train.state import TrainState

TRAIN_DIR = Path(__file__).resolve().parent.parent / "cockpit" / "train"


class Recorder:
    """An event writer that keeps the typed events it is given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> Event:
        self.events.append(event)
        return event

    def write_many(self, events) -> None:
        self.events.extend(events)

    def sync(self) -> None:
        pass


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_no_part_imports_the_trainer():
    """Only the process entry point knows the Trainer: the parts get explicit inputs."""
    importers = sorted(
        p.name
        for p in TRAIN_DIR.glob("*.py")
        if p.name not in ("loop.py", "__main__.py") and "cockpit.train.loop" in imported_modules(p)
    )
    assert importers == []


def test_train_state_saves_its_counters_and_a_rewind_keeps_them():
    state = TrainState(batch_size=4, grad_accum=2)
    state.step, state.tokens_seen, state.lr_scale, state.rollbacks = 30, 960, 0.5, 1
    state.micro_batch, state.grad_accum, state.best_val_loss = 2, 4, 1.25  # after an OOM retry
    saved = state.state_dict()
    fresh = TrainState(batch_size=4, grad_accum=2)
    fresh.load_state_dict(saved)
    assert fresh == state
    later = TrainState(batch_size=4, grad_accum=2, step=50, tokens_seen=1600, rollbacks=1)
    later.rewind(saved)
    assert (later.step, later.best_val_loss, later.tokens_seen, later.rollbacks) == (
        30,
        1.25,
        1600,
        1,
    )


def test_a_resume_whose_split_no_longer_covers_a_step_takes_the_presets():
    state = TrainState(batch_size=8, grad_accum=2)  # 16 sequences a step now
    state.load_state_dict({"step": 5, "micro_batch": 2, "grad_accum": 4})  # 8 then
    assert (state.micro_batch, state.grad_accum) == (8, 2)


def pending(step: int, loss: float) -> PendingStep:
    return PendingStep(
        step, 1e-3, torch.tensor(loss), torch.tensor(0.5), None, 10.0, 100.0 + step, 4, 1
    )


def test_metrics_reader_writes_one_step_event_per_pending_step():
    events = Recorder()
    reader = MetricsReader(torch.device("cpu"), Dist(), tokens_per_step=256, events=events)
    state = TrainState(batch_size=4, grad_accum=1, step=3, tokens_seen=768)
    for step, loss in ((1, 3.0), (2, 2.5), (3, 2.0)):
        reader.add(pending(step, loss))
    found = reader.read_back(state, stop_local=True)
    assert reader.pending == [] and found.anomalies == [] and found.stop
    steps = [e for e in events.events if isinstance(e, StepEvent)]
    assert [(e.step, e.loss, e.tokens, e.time) for e in steps] == [
        (1, 3.0, 256, 101.0),
        (2, 2.5, 512, 102.0),
        (3, 2.0, 768, 103.0),
    ]
    assert steps[0].tokens_per_s == pytest.approx(256 / 0.010)  # host time is the step time on CPU
    assert reader.read_back(state).anomalies == [] and len(events.events) == 3  # nothing pending


def tiny_checkpointer(tmp_path: Path, events: Recorder) -> Checkpointer:
    model = torch.nn.Linear(4, 4)
    sampler = BatchSampler(np.arange(100), 8, seed=1)
    return Checkpointer(
        run_dir=tmp_path,
        preset=Preset(name="tiny"),
        dist=Dist(),
        device=torch.device("cpu"),
        raw_model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        sampler=sampler,
        tokenizer=SimpleNamespace(state_dict=lambda: {"kind": "char"}),
        monitor=None,
        events=events,  # type: ignore[arg-type]
    )


def test_checkpointer_saves_and_a_rollback_keeps_the_data_position(tmp_path):
    events = Recorder()
    saver = tiny_checkpointer(tmp_path, events)
    state = TrainState(batch_size=4, grad_accum=1, step=10, tokens_seen=320)
    weights = saver.raw_model.weight.detach().clone()
    saver.save(state, best=True)
    written = [e for e in events.events if isinstance(e, CheckpointEvent)]
    assert [(e.kind, e.path, e.step) for e in written] == [
        ("last", "checkpoints/last.pt", 10),
        ("best", "checkpoints/best.pt", 10),
    ]
    assert (tmp_path / rundir.CHECKPOINTS / "last.pt").is_file() and saver.last_step == 10
    with torch.no_grad():
        saver.raw_model.weight.add_(1.0)
    saver.sampler.sample(3)  # the data moves on
    position = saver.sampler.state_dict()
    state.step, state.tokens_seen = 15, 480
    assert saver.roll_back(state).name == "last.pt"
    assert torch.equal(saver.raw_model.weight, weights)
    assert state.step == 10 and state.tokens_seen == 480  # counters kept
    assert torch.equal(saver.sampler.state_dict()["generator"], position["generator"])


def test_checkpointer_resume_restores_counters_and_position(tmp_path):
    saver = tiny_checkpointer(tmp_path, Recorder())
    state = TrainState(batch_size=4, grad_accum=1, step=10, tokens_seen=320, lr_scale=0.5)
    saver.sampler.sample(2)
    position = saver.sampler.state_dict()
    saver.save(state)
    again = tiny_checkpointer(tmp_path, Recorder())
    fresh = TrainState(batch_size=4, grad_accum=1)
    assert again.resume(fresh) == 10
    assert (fresh.tokens_seen, fresh.lr_scale, again.last_step) == (320, 0.5, 10)
    assert torch.equal(again.sampler.state_dict()["generator"], position["generator"])
    assert torch.equal(again.raw_model.weight, saver.raw_model.weight)


def anomaly(step: int) -> HealthWarning:
    return HealthWarning("nonfinite", "critical", step, f"loss is NaN at step {step}", "")


def test_responder_halts_or_rolls_back_and_says_so(tmp_path):
    events = Recorder()
    saver = tiny_checkpointer(tmp_path, events)
    reader = MetricsReader(torch.device("cpu"), Dist(), tokens_per_step=64, events=events)
    train = Preset(name="tiny").train
    train.on_anomaly, train.max_rollbacks, train.rollback_lr_factor = "rollback", 1, 0.5
    responder = Responder(train, saver, reader, events)  # type: ignore[arg-type]
    state = TrainState(batch_size=4, grad_accum=1, step=8)
    saver.save(state)
    state.step = 12
    responder.respond(anomaly(12), state)
    note = events.events[-1]
    assert isinstance(note, WarningEvent) and note.rule == "rollback"
    assert note.evidence["from_step"] == 12 and note.evidence["to_step"] == 8
    assert (state.step, state.rollbacks, state.lr_scale) == (8, 1, 0.5)
    with pytest.raises(HaltTraining, match="halted after 1 rollbacks"):
        responder.respond(anomaly(12), state)
    train.on_anomaly = "halt"
    with pytest.raises(HaltTraining, match=r"halted \(train.on_anomaly=halt\)"):
        responder.respond(anomaly(12), state)
