"""Runs on two ranks under torchrun (gloo on CPU): the same losses as one process, only rank 0
writing, a Ctrl-C that stops both with one checkpoint and a resume that continues exactly,
sharded (FSDP2) checkpoints read back whole by sample and export, the launch commands for one
and several machines, and the full-val eval shared out over the ranks.

Each torchrun costs three interpreters importing torch (about 6 s of CPU for FSDP2 on this tiny
model, whose ranks also load torch's compiler for DTensor; compiling ranks add their compile),
so one module fixture trains one run for all the tests here: sharded (`train.parallel=fsdp`,
whose checkpoints and resume are the harder case), launched by `--no-ui --nproc 2`, stopped by
Ctrl-C, resumed by `resume --no-ui` with its blocks compiled. DDP's own runs (the same curve as
one process, eager and compiled, an out-of-memory error on one rank, a killed rank) are in
test_ddp_faults.py.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_runs import (
    TINY,
    events_of,
    home_env,
    make_run,
    make_sp_shards,
    step_losses,
    train_in_process,
    write_corpus,
)

from cockpit import rundir, runs
from cockpit.__main__ import main
from cockpit.plan.presets import Preset, apply_overrides

pytestmark = pytest.mark.slow  # a 2-process torchrun run on CPU

STEPS = 12
RUN = (f"train.max_steps={STEPS}", "train.eval_interval=6", "train.log_interval=2")
SHARDED = "train.parallel=fsdp"
SINGLE_BATCH = "train.batch_size=8"  # one process with the global batch of two ranks of 4


def _wait(predicate, timeout: float = 120.0, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every)


def _cli(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "cockpit", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    """A sharded 2-rank run launched by `--no-ui --nproc 2`, stopped by Ctrl-C (SIGINT to the
    cockpit, which stops rank 0, which stops the others), then resumed by `resume --no-ui` with
    its blocks compiled; and its 1-process twin with the same global batch and seed, trained in
    process (not compiled: on this model the compiled losses are the eager ones to about 1e-7,
    a hundred times inside the rel=1e-5 the tests ask)."""
    root = tmp_path_factory.mktemp("ddp")
    env = dict(os.environ, **home_env(root), PYTHONUNBUFFERED="1")
    corpus = write_corpus(root)
    overrides = [*TINY, *RUN, SHARDED, f"data.source={corpus}"]
    preset = apply_overrides(Preset(name="tiny_ddp"), overrides)
    preset_file = root / "tiny_ddp.json"
    preset_file.write_text(json.dumps(preset.to_dict()), encoding="utf-8")
    run = root / "two"
    cmd = [sys.executable, "-m", "cockpit", "--no-ui", "--preset", str(preset_file)]
    cmd += ["--nproc", "2", "--device", "cpu", "--run-dir", str(run)]
    slow = dict(env, GPT_COCKPIT_FAULT="slow_step_ms=150")  # a sleep: the losses do not change
    cli = subprocess.Popen(cmd, env=slow, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: (run / rundir.EVENTS_JSONL).is_file() and events_of(run, "step"))
        cli.send_signal(signal.SIGINT)
        out, err = cli.communicate(timeout=120)
    finally:
        if cli.poll() is None:
            cli.kill()
    first = {
        "code": cli.returncode,
        "stdout": out,
        "stderr": err,
        "end": events_of(run, "end")[-1],
        "checkpoints": events_of(run, "checkpoint"),
        "files": sorted(p.name for p in run.iterdir()),
        "kinds": [r["event"] for r in events_of(run)],
    }
    rundir.update_run_info(run, overrides={"train.compile": True})
    # a cold compile of both ranks on a loaded 2-core machine takes a minute or two
    resume = _cli("resume", str(run), "--no-ui", "--device", "cpu", env=env, timeout=600)
    assert resume.returncode == 0, resume.stderr

    single = make_run(root, *RUN, SINGLE_BATCH, name="single")
    assert train_in_process(single).returncode == 0
    return {"run": run, "single": single, "first": first, "resume": resume}


def test_two_ranks_train_as_one_process_with_the_same_global_batch(ddp):
    """Every step, before the stop and after the resume, as the 1-process run's (allclose): the
    same global batch and seed give the same curve, and the resume continues it exactly."""
    two, one = step_losses(ddp["run"]), step_losses(ddp["single"])
    assert sorted(two) == sorted(one) == list(range(1, STEPS + 1))
    assert [two[s] for s in sorted(two)] == pytest.approx([one[s] for s in sorted(two)], rel=1e-5)
    start = events_of(ddp["run"], "start")[0]
    assert start["world_size"] == 2
    assert start["tokens_per_step"] == events_of(ddp["single"], "start")[0]["tokens_per_step"]
    info = rundir.read_run_info(ddp["run"])
    assert info.world_size == 2 and info.nnodes == 1 and info.status == "finished"
    assert info.command[1:3] == ["-m", "torch.distributed.run"] and "--standalone" in info.command


def test_only_rank_0_writes_the_run_directory(ddp):
    first = ddp["first"]
    assert first["files"] == sorted(
        ["run.json", "run.json.lock", "preset.json", "events.jsonl", "console.log", "train.lock"]
        + ["checkpoints"]
    )
    kinds = first["kinds"]
    assert kinds.count("start") == 1 and kinds.count("end") == 1
    steps = [r["step"] for r in events_of(ddp["run"], "step")]
    assert steps == sorted(set(steps))  # each step once: rank 1 wrote none
    state = torch.load(ddp["run"] / "checkpoints" / "last.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["ranks"]) == 2  # every rank's data position


def test_headless_nproc_2_shows_the_run_like_any_run(ddp):
    first, resume = ddp["first"], ddp["resume"]
    assert first["code"] == 0 and "step 1/12" in first["stdout"]
    assert "on 2 ranks (torchrun)" in first["stderr"] and "end: stopped" in first["stderr"]
    assert f"step {STEPS}/{STEPS}" in resume.stdout and "end: finished" in resume.stderr


def test_ctrl_c_stops_both_ranks_with_one_checkpoint_and_resume_keeps_the_world_size(ddp):
    first = ddp["first"]
    stop_step = first["end"]["step"]
    assert first["end"]["reason"] == "stopped" and 1 <= stop_step < STEPS
    at_stop = [c for c in first["checkpoints"] if c["step"] == stop_step]
    assert [c["kind"] for c in at_stop] == ["last"]  # one checkpoint, by rank 0
    starts = events_of(ddp["run"], "start")
    assert starts[-1]["resumed_from"] == stop_step and starts[-1]["world_size"] == 2
    assert events_of(ddp["run"], "end")[-1]["reason"] == "finished"


def test_a_resume_with_compiled_blocks_trains_on_as_one_process(ddp):
    """FSDP2 with torch.compile: the blocks compiled one by one before fully_shard (so on a GPU
    each block's reduce-scatter overlaps the backward of the blocks before it) load the sharded
    checkpoint and continue the one-process curve: every step after the stop, as the twin's."""
    starts = events_of(ddp["run"], "start")
    assert [s["compile"] for s in starts] == [False, True]
    stop = starts[-1]["resumed_from"]
    two, one = step_losses(ddp["run"]), step_losses(ddp["single"])
    after = [s for s in sorted(two) if s > stop]
    assert after == list(range(stop + 1, STEPS + 1))
    assert [two[s] for s in after] == pytest.approx([one[s] for s in after], rel=1e-5)


def test_a_graceful_stop_writes_sharded_checkpoints_that_the_resume_loads(ddp):
    """FSDP2: every checkpoint is a last.pt without weights naming a folder of
    torch.distributed.checkpoint shards; the resume loaded the stop's (its curve is the one
    process's, above), and the folders that no checkpoint names any more were removed."""
    from cockpit.train import checkpoint as ckpt

    folder = ddp["run"] / "checkpoints"
    state = ckpt.load_checkpoint(folder / "last.pt")
    assert state["model"] is None and state["shards"] == f"shards-{STEPS:08d}"
    folders = sorted(p.name for p in folder.glob("shards-*"))
    named = {
        ckpt.load_checkpoint(folder / f).get("shards")
        for f in ("last.pt", "last.prev.pt", "best.pt")
    }
    assert set(folders) == named


def test_a_sharded_run_loads_as_one_model_with_the_one_process_weights(ddp) -> None:
    """sample and export read the shards back whole, in one process, without a process group."""
    from cockpit.train.sample import load_run_model

    whole = load_run_model(ddp["run"], "last", "cpu")
    twin = load_run_model(ddp["single"], "last", "cpu")
    assert whole.step == twin.step == STEPS
    mine, theirs = whole.model.state_dict(), twin.model.state_dict()
    assert mine.keys() == theirs.keys()
    for name, tensor in mine.items():
        torch.testing.assert_close(tensor, theirs[name], rtol=1e-4, atol=1e-5, msg=name)
    assert whole.model.lm_head.weight is whole.model.transformer.wte.weight  # still tied


def test_a_sharded_run_samples_and_exports(ddp, tmp_path, capsys) -> None:
    from safetensors import torch as safetensors_torch

    from cockpit.train.sample import load_run_model

    assert main(["sample", str(ddp["run"]), "--tokens", "8", "--device", "cpu"]) == 0
    out, _ = capsys.readouterr()
    assert out.strip()
    folder = tmp_path / "hf"
    assert main(["export", str(ddp["run"]), "--to", str(folder)]) == 0
    # the exported GPT-2 weights are the consolidated model's, not an untrained one's
    exported = safetensors_torch.load_file(str(folder / "model.safetensors"))
    twin = load_run_model(ddp["single"], "best", "cpu", tokenizer=False)
    torch.testing.assert_close(
        exported["transformer.wte.weight"],
        twin.model.transformer.wte.weight.detach(),
        rtol=1e-4,
        atol=1e-5,
    )
    assert len(exported) > 4


def test_missing_shards_are_one_line(ddp, tmp_path) -> None:
    from tiny_runs import copy_run

    from cockpit.train.sample import SampleError, load_run_model

    copy = copy_run(ddp["run"], tmp_path / "copy")
    for folder in (copy / "checkpoints").glob("shards-*"):
        shutil.rmtree(folder)
    with pytest.raises(SampleError) as info:
        load_run_model(copy, "last", "cpu")
    message = str(info.value)
    assert "\n" not in message and "shards are gone" in message
    assert events_of(copy, "end")[-1]["reason"] == "finished"


def test_a_resume_on_another_world_size_is_refused_in_one_line(ddp, tmp_path):
    from tiny_runs import copy_run

    run = copy_run(ddp["run"], tmp_path / "copy")
    rundir.update_run_info(run, overrides={"train.max_steps": STEPS + 2})
    proc = train_in_process(run, resume=True)  # one process
    assert proc.returncode != 0
    error = events_of(run, "error")[-1]
    assert "written by 2 rank(s)" in error["message"] and "--nproc 2" in error["message"]


# --------------------------------------------------------------------------- launch commands


def test_one_process_stays_a_plain_child(tmp_path):
    cmd = runs.child_command(tmp_path, device="cpu", ranks=runs.Ranks(nproc=1))
    assert cmd[1:3] == ["-m", "cockpit.train"]


def test_several_nodes_get_static_rendezvous_and_each_others_commands(tmp_path):
    ranks = runs.Ranks(nproc=4, nnodes=2, endpoint="10.0.0.1:29500")
    assert ranks.problem() is None and ranks.world_size == 8
    cmd = runs.child_command(tmp_path, device="cuda", ranks=ranks)
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    joined = " ".join(cmd)
    assert "--nnodes 2 --node-rank 0 --nproc-per-node 4" in joined
    assert "--master-addr 10.0.0.1 --master-port 29500" in joined
    others = runs.other_node_commands(tmp_path, ranks, device="cuda", resume=False)
    assert len(others) == 1 and "--node-rank 1" in others[0] and str(tmp_path) in others[0]
    assert runs.Ranks(nproc=2, nnodes=2).problem().startswith("several nodes need --rdzv-endpoint")


def test_nproc_auto_is_every_gpu_and_one_without(monkeypatch):
    import cockpit.plan.gpu

    monkeypatch.setattr(cockpit.plan.gpu, "query_gpus", lambda: [])
    assert runs.resolve_nproc("auto") == 1
    monkeypatch.setattr(cockpit.plan.gpu, "query_gpus", lambda: [object()] * 4)
    assert runs.resolve_nproc("auto") == 4 and runs.resolve_nproc("3") == 3
    with pytest.raises(ValueError):
        runs.resolve_nproc("0")


def test_bad_rank_options_are_refused_before_anything_starts(tmp_path):
    env = dict(os.environ, **home_env(tmp_path))
    proc = _cli("--no-ui", "--nproc", "two", env=env, timeout=60)
    assert proc.returncode == 2 and "--nproc must be a number" in proc.stderr
    assert not (tmp_path / "home" / "runs").exists()


def test_rank_sampler_slices_the_global_batch():
    import numpy as np

    from cockpit.train.data import BatchSampler
    from cockpit.train.dist import RankSampler, accum_per_rank

    tokens = np.arange(1000, dtype=np.int64)
    whole = BatchSampler(tokens, 8, 5).sample(6)[0]
    parts = [RankSampler(tokens, 8, 5, "cpu", r, 2).sample(3)[0] for r in range(2)]
    assert (np.concatenate([p.numpy() for p in parts]) == whole.numpy()).all()
    assert accum_per_rank(8, 4, keep_global_batch=True) == 2
    assert accum_per_rank(8, 4, keep_global_batch=False) == 8


class _FakeStore:
    """torchrun's key-value store, as train/dist.py uses it."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def set(self, key: str, value: str) -> None:
        self.data[key] = value.encode()

    def check(self, keys: list[str]) -> bool:
        return all(k in self.data for k in keys)

    def get(self, key: str) -> bytes:
        return self.data[key]


def test_a_rank_that_raises_is_named_with_its_cause(monkeypatch):
    """Rank 1 raised: it left its cause in the store; rank 0, whose collective then failed, names it."""
    from cockpit.train import dist as tdist
    from cockpit.train.runtime import Dist

    store = _FakeStore()
    monkeypatch.setattr(tdist, "_store", lambda: store)
    tdist.publish("pid/1", f"{os.uname().nodename}:{os.getpid()}")  # alive: not a death
    tdist.publish_failure(Dist(1, 1, 2), "error", "data", "DataError: shard 3 is truncated")
    found = tdist.peer_failure(Dist(0, 0, 2), wait_s=0.0)
    assert found == ("error", "data", "rank 1 failed: DataError: shard 3 is truncated")
    assert tdist.peer_failure(Dist(0, 0, 2), wait_s=0.0) is not None
    store.data.clear()
    assert tdist.peer_failure(Dist(0, 0, 2), wait_s=0.0) is None  # nobody says: rank 0's own error


def test_a_sample_runs_the_blocks_compiled_in_place_eagerly():
    """Under torchrun the blocks are compiled in place, so the raw model's generate would run
    them compiled: a batch of one, then a context growing a token a step, two graphs more per
    rank at the first eval. The sample is written eagerly: nothing is compiled for it, and its
    text is the eager model's."""
    import contextlib
    from types import SimpleNamespace

    import torch._dynamo

    from cockpit.text.tokenizers import CharTokenizer
    from cockpit.train.evaluate import Evaluator
    from cockpit.train.models import build_model
    from cockpit.train.runtime import Dist
    from cockpit.train.sharded import compile_blocks

    preset = apply_overrides(Preset(name="tiny_sample"), [*TINY, "train.compile=true"])
    torch.manual_seed(0)
    model = build_model(preset.model)
    tokenizer = CharTokenizer([chr(c) for c in range(10, 10 + preset.model.vocab_size)])
    data = SimpleNamespace(val=[0, 1, 2])

    def sample(net: torch.nn.Module) -> str:
        evaluator = Evaluator(
            preset, net, net, data, tokenizer, torch.device("cpu"), Dist(),
            contextlib.nullcontext(), events=None,
        )  # fmt: skip
        return evaluator.sample_text(step=3)

    eager_text = sample(model)
    assert compile_blocks(model) == preset.model.n_layer
    frames = dict(torch._dynamo.utils.counters["frames"])  # what this process compiled so far
    assert sample(model) == eager_text
    assert dict(torch._dynamo.utils.counters["frames"]) == frames  # no frame of the sample


def test_the_full_val_eval_is_shared_out_and_gives_the_one_process_figures(tmp_path):
    """train.eval_full_val on 2 ranks, DDP and FSDP2 (whose rank with fewer micro-batches runs
    uncounted padding forwards): each rank evaluates its share of the windows and every rank
    ends with one process's val loss and bits per byte, on the whole split, an uneven split,
    an even one and a single window (rank 0 has none)."""
    pytest.importorskip("sentencepiece")
    import full_val_ranks

    shards = make_sp_shards(tmp_path)
    run = make_run(
        tmp_path,
        "train.eval_full_val=true",
        f"data.source={shards['data']}",
        f"data.tokenizer_model={shards['model']}",
        f"model.vocab_size={int(shards['sp'].vocab_size())}",
        name="full_val",
    )
    out = tmp_path / "figures"
    with socket.socket() as sock:  # the ranks' rendezvous port, as torchrun would pick one
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    cmd = [sys.executable, full_val_ranks.__file__, str(run), str(out)]
    env = dict(os.environ, WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    env["COCKPIT_DIST_TIMEOUT_S"] = "60"  # a missing forward fails, not hangs
    ranks = [
        subprocess.Popen(
            cmd, env=dict(env, RANK=r, LOCAL_RANK=r), stderr=subprocess.PIPE, text=True
        )
        for r in ("0", "1")
    ]
    try:
        one = full_val_ranks.figures(full_val_ranks.evaluator(str(run)))  # meanwhile, one process
        for proc in ranks:
            _, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err[-3000:]
    finally:
        for proc in ranks:
            if proc.poll() is None:
                proc.kill()
    assert len({loss for loss, _ in one}) == len(one)  # the cases are different evals
    one_bpb = [loss / math.log(2) * tpb for loss, tpb in one]
    for rank in (0, 1):
        figures = json.loads(Path(f"{out}.{rank}.json").read_text(encoding="utf-8"))
        for parallel in ("ddp", "fsdp"):
            losses = [loss for loss, _ in figures[parallel]]
            bpb = [loss / math.log(2) * tpb for loss, tpb in figures[parallel]]
            assert losses == pytest.approx([loss for loss, _ in one], rel=1e-5), parallel
            assert bpb == pytest.approx(one_bpb, rel=1e-5), parallel
