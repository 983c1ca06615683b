"""DDP and FSDP2 runs on two torchrun ranks (gloo on CPU) that a fault on one rank ends or bends:
the ranks agree before any retries, or the run ends in one line naming the rank; never a hang
until the process group's timeout. The same runs prove the compiled blocks.

- An out-of-memory error injected into rank 1 only (GPT_COCKPIT_FAULT oom_rank=1) in the first
  step (a checked one): both ranks halve the micro-batch together and the DDP run finishes
  with the curve of one process with the same global batch.
- The same error in a later step: rank 1 ends the run with one line naming it and the way out.
- Rank 1 killed (SIGKILL, no word left): the run ends crashed, naming the rank and its pid.

The last two runs compile their blocks one by one before the DDP wrap or fully_shard (so on a
GPU each block's all-reduce or reduce-scatter overlaps the backward of the blocks before it):
their steps before the fault are compared with one compiled process's. A torchrun costs three
interpreters importing torch (about 8 s of CPU here), so the compiled runs are the faulted
ones (FSDP2 refused after an out-of-memory error, DDP killed), not two runs more.
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

# The compiled runs go on long after the steps compared (the learning rate schedule depends on
# max_steps, so the one-process run has the same and stops gracefully after COMPILED_STEPS).
COMPILED_STEPS = 6
COMPILED = ("train.max_steps=400", "train.eval_interval=0", "train.log_interval=1")
COMPILED += ("train.compile=true",)
# A cold compile on a loaded 2-core machine takes a minute or more, and the ranks meet in their
# first collective only once both have compiled: the default 300 s, not the 90 s above.
COMPILED_GROUP_TIMEOUT_S = 300


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
def compiled_single(tmp_path_factory) -> dict[int, float]:
    """The losses of one compiled process with the compiled runs' global batch, to its stop."""
    root = tmp_path_factory.mktemp("compiled_single")
    single = make_run(root, *COMPILED, SINGLE_BATCH, name="single")
    proc = train_in_process(single, fault=f"stop_at_step={COMPILED_STEPS}")
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
    """A compiled DDP run whose rank 1 is killed with SIGKILL once it trained COMPILED_STEPS."""
    run = make_run(tmp_path_factory.mktemp("killed"), *COMPILED, name="killed")
    handle = launch_two(run, "slow_step_ms=50", COMPILED_GROUP_TIMEOUT_S)
    try:
        _wait(lambda: len(events_of(run, "step")) >= COMPILED_STEPS, timeout=600)
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
    """A compiled FSDP2 run whose rank 1 runs out of memory in step COMPILED_STEPS + 1."""
    run = make_run(tmp_path_factory.mktemp("refused"), *COMPILED, "train.parallel=fsdp")
    fault = f"oom_above_batch=2,oom_rank=1,oom_from_step={COMPILED_STEPS + 1}"
    handle = launch_two(run, fault, COMPILED_GROUP_TIMEOUT_S)
    return {"run": run, "code": wait_two(handle, COMPILED_GROUP_TIMEOUT_S)}


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
    assert end["time"] - last_step["time"] < COMPILED_GROUP_TIMEOUT_S * 0.2
    message = end["message"]
    assert end["reason"] in ("error", "crashed") and "\n" not in message
    assert "rank 1" in message and "out of memory" in message, message
    assert "train.grad_accum" in message  # the way out
    assert max(step_losses(run)) == COMPILED_STEPS  # the steps before trained, that one did not


def test_killing_one_rank_ends_the_run_with_an_error_naming_it(killed) -> None:
    run, pid = killed["run"], killed["pid"]
    error = events_of(run, "error")[-1]
    assert f"rank 1 (pid {pid}) died" in error["message"], error["message"]
    assert events_of(run, "end")[-1]["reason"] == "crashed"
    assert killed["took"] < 15, killed["took"]  # seconds, not a collective's timeout
    assert rundir.run_status(run) == "crashed"


@pytest.mark.parametrize("faulted", ["killed", "refused"])  # DDP, FSDP2
def test_compiled_per_block_trains_as_one_compiled_process(request, faulted, compiled_single):
    """Every step before the fault as the compiled 1-process run's (allclose)."""
    run = request.getfixturevalue(faulted)["run"]
    two = {s: loss for s, loss in step_losses(run).items() if s <= COMPILED_STEPS}
    assert sorted(two) == sorted(compiled_single) == list(range(1, COMPILED_STEPS + 1))
    assert [two[s] for s in sorted(two)] == pytest.approx(
        [compiled_single[s] for s in sorted(two)], rel=1e-5
    )
    start = events_of(run, "start")[0]
    assert start["world_size"] == 2 and start["compile"] is True
