"""The GPT_COCKPIT_FAULT test hook: parsing and one-shot behaviour, then each anomaly response in a real run."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from cockpit.train.faults import SPIKE_FACTOR, FaultSpecError, faults_from_env, parse_faults


def test_parse_all_items():
    f = parse_faults(
        "nan_at_step=5, spike_at_step=7,spike_steps=3,oom_above_batch=4,slow_step_ms=2.5,die_at_step=9,stop_at_step=3"
    )
    assert (f.nan_at_step, f.spike_at_step, f.spike_steps, f.oom_above_batch) == (5, 7, 3, 4)
    assert (f.slow_step_ms, f.die_at_step, f.stop_at_step) == (2.5, 9, 3)
    assert f.active
    assert parse_faults("hold_at_step=4").active


def test_a_hold_waits_for_the_stop_and_every_rank_leaves_on_rank_zeros_word():
    f = parse_faults("hold_at_step=4")
    assert [f.holds_after(s) for s in (3, 4, 5)] == [False, True, False]
    asked = iter([False, False, True])
    f.hold(lambda: next(asked))  # returns once asked, having looked three times
    assert next(asked, None) is None
    f.rank = 1  # waits too, asking rank 0 (here a stand-in for the broadcast) each time
    words = iter([False, False, True])
    said: list[bool] = []
    f.hold(
        lambda: pytest.fail("rank 1 is not asked to stop"),
        lambda mine: said.append(mine) or next(words),
    )
    assert said == [False, False, False] and next(words, None) is None
    f = parse_faults("hold_at_step=4,hold_s=0.1")
    looks = []
    f.hold(lambda: looks.append(1) and False)  # never asked: it trains on after hold_s
    assert f.hold_s == 0.1 and 2 <= len(looks) <= 10


def test_a_hold_ends_when_its_release_file_appears(tmp_path):
    release = tmp_path / "go"
    f = parse_faults(f"hold_at_step=4,hold_until={release}")
    assert f.hold_until == str(release) and f.active
    looks: list[int] = []

    def asked() -> bool:  # never asked to stop; the third look makes the file
        looks.append(1)
        if len(looks) == 3:
            release.touch()
        return False

    f.hold(asked)  # returns once the file is there, long before HOLD_MAX_S
    assert len(looks) == 3
    looks.clear()
    f.hold(lambda: looks.append(1) and False)  # the file is there: one look, no wait
    assert len(looks) == 1


def test_empty_means_no_fault(monkeypatch):
    monkeypatch.delenv("GPT_COCKPIT_FAULT", raising=False)
    f = faults_from_env()
    assert not f.active
    assert f.loss_factor(1) == 1.0
    f.check_oom(10_000)  # never raises


@pytest.mark.parametrize("spec", ["nan_at_step", "nan_at_step=x", "explode=1", "slow_step_ms=fast"])
def test_bad_specs_name_the_item(spec):
    with pytest.raises(FaultSpecError, match="GPT_COCKPIT_FAULT"):
        parse_faults(spec)


def test_nan_fires_once():
    f = parse_faults("nan_at_step=3")
    assert [f.loss_factor(s) for s in (1, 2)] == [1.0, 1.0]
    assert math.isnan(f.loss_factor(3))
    assert f.loss_factor(3) == 1.0  # a replayed step 3 (after a rollback) is clean


def test_spike_spans_its_steps_once():
    f = parse_faults("spike_at_step=5,spike_steps=2")
    assert [f.loss_factor(s) for s in (4, 5, 6, 7)] == [1.0, SPIKE_FACTOR, SPIKE_FACTOR, 1.0]
    assert f.loss_factor(5) == 1.0


def test_oom_above_batch_raises_torch_oom():
    f = parse_faults("oom_above_batch=4")
    f.check_oom(4)
    with pytest.raises(torch.OutOfMemoryError, match="micro-batch 5"):
        f.check_oom(5)


# --------------------------------------------------------------------------- faults in a real run

ENGINE_READY = all(
    importlib.util.find_spec(m) is not None for m in ("cockpit.train.models", "cockpit.train.data")
)
needs_engine = pytest.mark.skipif(
    not ENGINE_READY, reason="the model and data modules have not landed yet"
)
ANOMALY_RUN = ("train.max_steps=50", "train.eval_interval=10", "train.log_interval=5")


def finite_weights(path) -> bool:
    from cockpit.train import checkpoint as ckpt

    state = ckpt.load_checkpoint(path)
    return all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


@pytest.mark.slow
@needs_engine
def test_halt_stops_with_the_checkpoint_from_before(tmp_path):
    """A halt exits 1 with its reason on stderr (the child's entry point, here: a real child's
    one-line error exit is test_train_loop's test_missing_data_is_one_line_and_error)."""
    from tiny_runs import events_of, make_run, train_in_process

    from cockpit import rundir
    from cockpit.train import checkpoint as ckpt

    run_dir = make_run(tmp_path, *ANOMALY_RUN, "train.on_anomaly=halt")
    proc = train_in_process(run_dir, fault="nan_at_step=23")
    assert proc.returncode == 1
    assert "halted" in proc.stderr and "Traceback" not in proc.stderr
    nonfinite = [w for w in events_of(run_dir, "warning") if w["rule"] == "nonfinite"]
    assert nonfinite and nonfinite[0]["step"] == 23
    end = events_of(run_dir, "end")[-1]
    assert (
        end["reason"] == "halted"
        and "step 20" in end["message"]
        and "on_anomaly=halt" in end["message"]
    )
    last = run_dir / "checkpoints" / "last.pt"
    assert ckpt.load_checkpoint(last)["step"] == 20 and finite_weights(last)
    assert (
        max(c["step"] for c in events_of(run_dir, "checkpoint")) == 20
    )  # the bad state was never saved
    assert rundir.read_run_info(run_dir).status == "halted"


@pytest.mark.slow
@needs_engine
def test_rollback_recovers_and_finishes(tmp_path):
    from tiny_runs import events_of, make_run, train_in_process

    from cockpit import rundir

    run_dir = make_run(
        tmp_path, *ANOMALY_RUN, "train.on_anomaly=rollback", "train.rollback_lr_factor=0.5"
    )
    proc = train_in_process(run_dir, fault="nan_at_step=23")
    assert proc.returncode == 0, proc.stderr
    rollback = [w for w in events_of(run_dir, "warning") if w["rule"] == "rollback"]
    assert len(rollback) == 1
    ev = rollback[0]["evidence"]
    assert (ev["from_step"], ev["to_step"], ev["cause"], ev["lr_scale"]) == (
        25,
        20,
        "nonfinite",
        0.5,
    )
    assert events_of(run_dir, "end")[-1]["reason"] == "finished"
    losses = {r["step"]: r for r in events_of(run_dir, "step")}  # the latest record of each step
    assert sorted(losses) == list(range(1, 51))
    assert all(math.isfinite(r["loss"]) for r in losses.values())
    assert losses[30]["lr_scale"] == 0.5
    assert finite_weights(run_dir / "checkpoints" / "last.pt")
    assert rundir.read_run_info(run_dir).status == "finished"


@pytest.mark.slow
@needs_engine
def test_rollbacks_used_up_halt(tmp_path):
    from tiny_runs import events_of, make_run, train_in_process

    run_dir = make_run(tmp_path, *ANOMALY_RUN, "train.on_anomaly=rollback", "train.max_rollbacks=0")
    proc = train_in_process(run_dir, fault="nan_at_step=23")
    assert proc.returncode == 1
    end = events_of(run_dir, "end")[-1]
    assert end["reason"] == "halted" and "max_rollbacks=0" in end["message"]


@pytest.mark.slow
@needs_engine
def test_spike_is_reported_at_its_step_and_warn_keeps_going(tmp_path):
    from tiny_runs import events_of, make_run, train_in_process

    run_dir = make_run(tmp_path, *ANOMALY_RUN)
    proc = train_in_process(run_dir, fault="spike_at_step=35")
    assert proc.returncode == 0, proc.stderr
    spikes = [w for w in events_of(run_dir, "warning") if w["rule"] == "loss_spike"]
    assert spikes and spikes[0]["step"] == 35
    assert {r["step"]: r["loss"] for r in events_of(run_dir, "step")}[35] > 10
    assert events_of(run_dir, "end")[-1]["reason"] == "finished"


@pytest.mark.slow
@needs_engine
def test_a_held_run_writes_its_step_then_waits_for_the_stop(tmp_path):
    """hold_at_step in the loop: the held step is on disk (log_interval 5 would keep step 7
    pending), no step is trained while it waits, and a stop ends it there with a checkpoint."""
    import threading
    import time

    from tiny_runs import events_of, make_run

    from cockpit import rundir
    from cockpit.rundir import EventWriter
    from cockpit.train.loop import Trainer

    run_dir = make_run(tmp_path, "train.max_steps=20", "train.log_interval=5")
    writer = EventWriter(run_dir / rundir.EVENTS_JSONL)
    trainer = Trainer(run_dir, device="cpu", events=writer, faults=parse_faults("hold_at_step=7"))
    trainer.setup()
    seen: list[int] = []

    def stop_when_held() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            steps = events_of(run_dir, "step")
            if steps and steps[-1]["step"] >= 7:
                break
            time.sleep(0.02)
        seen.append(events_of(run_dir, "step")[-1]["step"])
        time.sleep(0.3)  # held: still at the same step after a while
        seen.append(trainer.state.step)
        trainer.request_stop("test")

    helper = threading.Thread(target=stop_when_held)
    helper.start()
    reason, _ = trainer.train()
    helper.join()
    writer.close()
    assert reason == "stopped"
    assert seen == [7, 7] and trainer.state.step == 7
    assert trainer.checkpointer.last_step == 7


def test_oom_on_one_rank_from_one_step_on():
    f = parse_faults("oom_above_batch=2,oom_rank=1,oom_from_step=3")
    f.rank = 0
    f.check_oom(4)  # another rank: fits
    f.rank = 1
    f.check_oom(4)  # step 1: before oom_from_step
    f.after_step(2)
    with pytest.raises(torch.OutOfMemoryError):
        f.check_oom(4)  # step 3
    f.check_oom(2)  # at or below the limit: fits
