"""DDP and FSDP2 with torch.compile on two gloo ranks: the blocks compiled one by one before
the wrap or fully_shard (so on a GPU each block's all-reduce or reduce-scatter overlaps the
backward of the blocks before it) train as one compiled process with the same global batch."""

from __future__ import annotations

import os

import pytest
from tiny_runs import make_run, step_losses, train_in_process

from cockpit import rundir, runs

pytestmark = pytest.mark.slow  # two compiling torchrun ranks on CPU (a minute or two)

STEPS = 6
RUN = (
    f"train.max_steps={STEPS}",
    "train.eval_interval=0",
    "train.log_interval=2",
    "train.compile=true",
)


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_compiled_per_block_trains_as_one_compiled_process(tmp_path, parallel):
    run = make_run(tmp_path, *RUN, f"train.parallel={parallel}", name=parallel)
    env = dict(os.environ, GPT_COCKPIT_FAULT="")
    handle = runs.launch(run, device="cpu", env=env, ranks=runs.Ranks(nproc=2))
    assert handle.process.wait(timeout=900) == 0, (run / rundir.CONSOLE_LOG).read_text()
    single = make_run(tmp_path, *RUN, "train.batch_size=8", name="single")
    assert train_in_process(single).returncode == 0
    two, one = step_losses(run), step_losses(single)
    assert sorted(two) == list(range(1, STEPS + 1))
    assert [two[s] for s in sorted(two)] == pytest.approx([one[s] for s in sorted(two)], rel=1e-5)
