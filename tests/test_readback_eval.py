"""Steps queued before an eval are read back before it: the interval that the next read-back
divides by its steps (tokens/s, MFU) then holds only those steps, when eval_interval is not a
multiple of log_interval."""

from __future__ import annotations

from tiny_runs import events_of, make_run

from cockpit import rundir
from cockpit.rundir import EventWriter


def test_pending_steps_are_read_back_before_an_eval(tmp_path, monkeypatch):
    from cockpit.train import readback
    from cockpit.train.loop import Trainer

    run_dir = make_run(
        tmp_path,
        "train.max_steps=12",
        "train.log_interval=4",
        "train.eval_interval=6",  # not a multiple: steps 5 and 6 are pending at the eval
        "train.sample_tokens=0",
    )
    trainer = Trainer(run_dir, device="cpu", events=EventWriter(run_dir / rundir.EVENTS_JSONL))
    trainer.setup()
    batches: list[list[int]] = []  # the steps of each read-back
    real = readback.read_back

    def recording(tr):
        batches.append([p.step for p in tr.pending])
        return real(tr)

    monkeypatch.setattr(readback, "read_back", recording)
    reason, _ = trainer.train()
    assert reason == "finished"
    assert [b for b in batches if b] == [[1, 2, 3, 4], [5, 6], [7, 8], [9, 10, 11, 12]]
    kinds = [(r["event"], r["step"]) for r in events_of(run_dir) if r["event"] in ("step", "eval")]
    eval_at = kinds.index(("eval", 6))
    assert {s for e, s in kinds[:eval_at] if e == "step"} == set(range(1, 7))
