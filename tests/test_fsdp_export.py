"""A sharded (FSDP) run sampled and exported: its shards consolidated into one model in one
process, with the weights a 1-process run with the same global batch trains.

A sharded checkpoint's last.pt holds no weights (`model` is None, `shards` names the folder
of torch.distributed.checkpoint files); sample and export read the shards without a process
group. One 2-rank gloo run on CPU (slow on a 2-core machine), shared by the tests.
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from safetensors import torch as safetensors_torch
from tiny_runs import events_of, make_run, train_in_process

from cockpit import rundir, runs
from cockpit.__main__ import main
from cockpit.train import checkpoint as ckpt
from cockpit.train.sample import SampleError, load_run_model

pytestmark = pytest.mark.slow  # a 2-process torchrun run on CPU

STEPS = 6
RUN = (f"train.max_steps={STEPS}", "train.eval_interval=3", "train.log_interval=3")


@pytest.fixture(scope="module")
def fsdp_runs(tmp_path_factory):
    """A 2-rank FSDP run and its 1-process twin (the global batch of 2 ranks of 4)."""
    root = tmp_path_factory.mktemp("fsdp")
    sharded = make_run(root, *RUN, "train.parallel=fsdp", name="fsdp")
    env = dict(os.environ, GPT_COCKPIT_FAULT="")
    handle = runs.launch(sharded, device="cpu", env=env, ranks=runs.Ranks(nproc=2))
    assert handle.process.wait(timeout=240) == 0, (sharded / rundir.CONSOLE_LOG).read_text()
    single = make_run(root, *RUN, "train.batch_size=8", name="single")
    assert train_in_process(single).returncode == 0
    return {"sharded": sharded, "single": single}


def test_a_sharded_run_loads_as_one_model_with_the_one_process_weights(fsdp_runs) -> None:
    sharded = fsdp_runs["sharded"]
    state = ckpt.load_checkpoint(sharded / "checkpoints" / "last.pt")
    assert state["model"] is None and state["shards"]  # nothing to load without the shards
    whole = load_run_model(sharded, "last", "cpu")
    twin = load_run_model(fsdp_runs["single"], "last", "cpu")
    assert whole.step == twin.step == STEPS
    mine, theirs = whole.model.state_dict(), twin.model.state_dict()
    assert mine.keys() == theirs.keys()
    for name, tensor in mine.items():
        torch.testing.assert_close(tensor, theirs[name], rtol=1e-4, atol=1e-5, msg=name)
    assert whole.model.lm_head.weight is whole.model.transformer.wte.weight  # still tied


def test_a_sharded_run_samples_and_exports(fsdp_runs, tmp_path, capsys) -> None:
    sharded = fsdp_runs["sharded"]
    assert main(["sample", str(sharded), "--tokens", "8", "--device", "cpu"]) == 0
    out, _ = capsys.readouterr()
    assert out.strip()
    folder = tmp_path / "hf"
    assert main(["export", str(sharded), "--to", str(folder)]) == 0
    # the exported GPT-2 weights are the consolidated model's, not an untrained one's
    exported = safetensors_torch.load_file(str(folder / "model.safetensors"))
    twin = load_run_model(fsdp_runs["single"], "best", "cpu", tokenizer=False)
    torch.testing.assert_close(
        exported["transformer.wte.weight"],
        twin.model.transformer.wte.weight.detach(),
        rtol=1e-4,
        atol=1e-5,
    )
    assert len(exported) > 4


def test_missing_shards_are_one_line(fsdp_runs, tmp_path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(fsdp_runs["sharded"], copy)
    for folder in (copy / "checkpoints").glob("shards-*"):
        shutil.rmtree(folder)
    with pytest.raises(SampleError) as info:
        load_run_model(copy, "last", "cpu")
    message = str(info.value)
    assert "\n" not in message and "shards are gone" in message
    assert events_of(copy, "end")[-1]["reason"] == "finished"
