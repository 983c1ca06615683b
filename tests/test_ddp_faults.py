"""DDP runs on two torchrun ranks (gloo on CPU) that a fault on one rank bends or ends: the
ranks agree before any retries, or the run ends in one line naming the rank; never a hang until
the process group's timeout. Their steps prove DDP's curve, eager and compiled, against one
process's with the same global batch.

- An out-of-memory error injected into rank 1 only (GPT_COCKPIT_FAULT oom_rank=1) in the first
  step (a checked one): both ranks halve the micro-batch together (two micro-batches per step,
  so DDP's no_sync path) and the run finishes.
- Rank 1 killed (SIGKILL, no word left) after six steps of one micro-batch: the run ends
  crashed, naming the rank and its pid.
- The out-of-memory error in a later step of a run whose blocks are compiled one by one before
  the DDP wrap (so on a GPU each block's all-reduce overlaps the backward of the blocks before
  it): rank 1 ends the run with one line naming it and the way out.

A torchrun costs three interpreters importing torch (about 4.5 s of CPU for eager DDP here,
whose ranks start without torch's compiler), so the curves ride on the faulted runs rather than
on runs of their own. Compiled FSDP2 blocks are test_ddp.py's sharded run, resumed compiled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from tiny_runs import events_of, make_run, step_losses, train_in_process

from cockpit import rundir, runs

pytestmark = pytest.mark.slow  # 2-process torchrun runs on CPU

STEPS = 6
RUN = (f"train.max_steps={STEPS}", "train.eval_interval=0", "train.log_interval=2")
GROUP_TIMEOUT_S = 90
SINGLE_BATCH = "train.batch_size=8"  # one process with the global batch of two ranks of 4

# The faulted runs go on long after the steps compared (the learning-rate schedule depends on
# max_steps, so the one-process run has the same and stops gracefully after FAULT_STEPS).
FAULT_STEPS = 6
LONG = ("train.max_steps=400", "train.eval_interval=0", "train.log_interval=1")
# A cold compile on a loaded 2-core machine takes a minute or more, and the ranks meet in their
# first collective only once both have compiled: the default 300 s, not the 90 s above.
LONG_GROUP_TIMEOUT_S = 300


def _wait(predicate, timeout: float, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every)


def launch_two(run: Path, fault: str, timeout_s: int = GROUP_TIMEOUT_S) -> runs.RunHandle:
    """Start `run` on two ranks with `fault` and a process-group timeout of `timeout_s`."""
    env = dict(os.environ, GPT_COCKPIT_FAULT=fault, COCKPIT_DIST_TIMEOUT_S=str(timeout_s))
    return runs.launch(run, device="cpu", env=env, ranks=runs.Ranks(nproc=2))


def wait_two(handle: runs.RunHandle, timeout_s: int = GROUP_TIMEOUT_S) -> int:
    """The exit code of a 2-rank run, killing its process group if it outlives 3 timeouts."""
    try:
        return handle.process.wait(timeout=3 * timeout_s)
    finally:
        if handle.process.poll() is None:
            os.killpg(handle.process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def long_single(tmp_path_factory) -> dict[int, float]:
    """The losses of one process (not compiled) with the faulted runs' global batch, to its stop.

    The compiled model's losses are the eager one's to about 1e-7 on this model, a hundred times
    inside the rel=1e-5 the tests ask."""
    root = tmp_path_factory.mktemp("long_single")
    single = make_run(root, *LONG, SINGLE_BATCH, name="single")
    proc = train_in_process(single, fault=f"stop_at_step={FAULT_STEPS}")
    assert proc.returncode == 0, proc.stderr
    return step_losses(single)


def _rank_pid(torchrun: subprocess.Popen, rank: int) -> int | None:
    for child in psutil.Process(torchrun.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank):
                return child.pid
        except psutil.Error:
            continue
    return None


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> dict:
    """An eager DDP run whose rank 1 is killed with SIGKILL once it trained FAULT_STEPS."""
    run = make_run(tmp_path_factory.mktemp("killed"), *LONG, name="killed")
    handle = launch_two(run, "slow_step_ms=50", LONG_GROUP_TIMEOUT_S)
    try:
        _wait(lambda: len(events_of(run, "step")) >= FAULT_STEPS, timeout=300)
        pid = _rank_pid(handle.process, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        _wait(lambda: events_of(run, "end"), timeout=60, every=0.02)
        took = time.monotonic() - killed_at
        handle.process.wait(timeout=60)
    finally:
        if handle.process.poll() is None:
            os.killpg(handle.process.pid, signal.SIGKILL)
    return {"run": run, "pid": pid, "took": took}


@pytest.fixture(scope="module")
def refused(tmp_path_factory) -> dict:
    """A compiled DDP run whose rank 1 runs out of memory in step FAULT_STEPS + 1."""
    run = make_run(tmp_path_factory.mktemp("refused"), *LONG, "train.compile=true")
    fault = f"oom_above_batch=2,oom_rank=1,oom_from_step={FAULT_STEPS + 1}"
    handle = launch_two(run, fault, LONG_GROUP_TIMEOUT_S)
    return {"run": run, "code": wait_two(handle, LONG_GROUP_TIMEOUT_S)}


def test_an_oom_on_one_rank_in_the_first_step_halves_both(tmp_path) -> None:
    run = make_run(tmp_path, *RUN, name="agree")
    t0 = time.monotonic()
    code = wait_two(launch_two(run, "oom_above_batch=2,oom_rank=1"))
    took = time.monotonic() - t0
    log = (run / rundir.CONSOLE_LOG).read_text()
    assert code == 0, log
    assert took < GROUP_TIMEOUT_S * 0.8, took  # no collective waited for its timeout
    end = events_of(run, "end")[-1]
    assert end["reason"] == "finished" and end["step"] == STEPS
    # rank 0 did not run out itself, yet it reports the retry: it took the same split
    ooms = [w for w in events_of(run, "warning") if w["rule"] == "oom"]
    assert len(ooms) == 1 and ooms[0]["step"] == 1, ooms
    assert ooms[0]["evidence"]["new_batch_size"] == 2
    steps = events_of(run, "step")
    assert {(s["micro_batch"], s["grad_accum"]) for s in steps} == {(2, 2)}
    # DDP trains the same global batch as one process (two ranks of 4 = one of 8)
    single = make_run(tmp_path, *RUN, SINGLE_BATCH, name="single")
    assert train_in_process(single).returncode == 0
    two, one = step_losses(run), step_losses(single)
    assert sorted(two) == list(range(1, STEPS + 1))
    assert [two[s] for s in sorted(two)] == pytest.approx([one[s] for s in sorted(two)], rel=1e-5)


def test_an_oom_on_one_rank_in_a_later_step_ends_the_run_in_one_line(refused) -> None:
    run = refused["run"]
    assert refused["code"] != 0
    end = events_of(run, "end")[-1]
    last_step = events_of(run, "step")[-1]
    # the other rank did not wait for its timeout: seconds from the last step to the end
    assert end["time"] - last_step["time"] < LONG_GROUP_TIMEOUT_S * 0.2
    message = end["message"]
    assert end["reason"] in ("error", "crashed") and "\n" not in message
    assert "rank 1" in message and "out of memory" in message, message
    assert "train.grad_accum" in message  # the way out
    assert max(step_losses(run)) == FAULT_STEPS  # the steps before trained, that one did not


def test_killing_one_rank_ends_the_run_with_an_error_naming_it(killed) -> None:
    run, pid = killed["run"], killed["pid"]
    error = events_of(run, "error")[-1]
    assert f"rank 1 (pid {pid}) died" in error["message"], error["message"]
    assert events_of(run, "end")[-1]["reason"] == "crashed"
    assert killed["took"] < 15, killed["took"]  # seconds, not a collective's timeout
    assert rundir.run_status(run) == "crashed"


@pytest.mark.parametrize(("faulted", "compiled"), [("killed", False), ("refused", True)])
def test_ddp_trains_as_one_process_before_the_fault(request, faulted, compiled, long_single):
    """Every step before the fault as the 1-process run's (allclose), eager and compiled."""
    run = request.getfixturevalue(faulted)["run"]
    two = {s: loss for s, loss in step_losses(run).items() if s <= FAULT_STEPS}
    assert sorted(two) == sorted(long_single) == list(range(1, FAULT_STEPS + 1))
    one = [long_single[s] for s in sorted(two)]
    assert [two[s] for s in sorted(two)] == pytest.approx(one, rel=1e-5)
    start = events_of(run, "start")[0]
    assert start["world_size"] == 2 and start["compile"] is compiled
