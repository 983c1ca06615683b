"""An out-of-memory error on one torchrun rank: the ranks agree before any retries, or the run
ends in one line; never a hang until the process group's timeout.

Two 2-rank gloo runs on CPU with an out-of-memory error injected into rank 1 only
(GPT_COCKPIT_FAULT oom_rank=1): in the first step (a checked one) both ranks halve the
micro-batch together and the run finishes; in a later step rank 1 ends the run with one
line naming it and the way out. The process-group timeout is set to 90 s (NCCL's default
is 600 s): each run must end well inside it.
"""

from __future__ import annotations

import os
import time

import pytest
from tiny_runs import events_of, make_run, step_losses, train_in_process

from cockpit import rundir, runs

pytestmark = pytest.mark.slow  # 2-process torchrun runs on CPU

STEPS = 6
RUN = (f"train.max_steps={STEPS}", "train.eval_interval=0", "train.log_interval=2")
GROUP_TIMEOUT_S = 90


def launch_two(run, fault: str) -> tuple[int, float]:
    """Train `run` on two ranks with `fault`; (exit code, seconds it took)."""
    env = dict(os.environ, GPT_COCKPIT_FAULT=fault, COCKPIT_DIST_TIMEOUT_S=str(GROUP_TIMEOUT_S))
    t0 = time.monotonic()
    handle = runs.launch(run, device="cpu", env=env, ranks=runs.Ranks(nproc=2))
    code = handle.process.wait(timeout=3 * GROUP_TIMEOUT_S)
    return code, time.monotonic() - t0


def test_an_oom_on_one_rank_in_the_first_step_halves_both(tmp_path) -> None:
    run = make_run(tmp_path, *RUN, name="agree")
    code, took = launch_two(run, "oom_above_batch=2,oom_rank=1")
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
    # the same global batch as one process trains (two ranks of 4 = one of 8)
    single = make_run(tmp_path, *RUN, "train.batch_size=8", name="single")
    assert train_in_process(single).returncode == 0
    two, one = step_losses(run), step_losses(single)
    assert sorted(two) == list(range(1, STEPS + 1))
    assert [two[s] for s in sorted(two)] == pytest.approx([one[s] for s in sorted(two)], rel=1e-5)


def test_an_oom_on_one_rank_in_a_later_step_ends_the_run_in_one_line(tmp_path) -> None:
    run = make_run(tmp_path, *RUN, name="refuse")
    code, took = launch_two(run, "oom_above_batch=2,oom_rank=1,oom_from_step=3")
    assert code != 0
    assert took < GROUP_TIMEOUT_S * 0.8, took  # the other rank did not wait for its timeout
    end = events_of(run, "end")[-1]
    message = end["message"]
    assert end["reason"] in ("error", "crashed") and "\n" not in message
    assert "rank 1" in message and "out of memory" in message, message
    assert "train.grad_accum" in message  # the way out
    assert max(step_losses(run)) == 2  # steps 1-2 trained, step 3 did not
