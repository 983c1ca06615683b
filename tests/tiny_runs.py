"""Tiny real training runs for the engine tests: a preset, a corpus, and two ways to train it.

`run_child` starts the real training process (`python -m cockpit.train`), as runs.launch
does: tests about the process itself (signals, kill -9, exit codes, the command line) use it.
`train_in_process` calls that process's entry point, `cockpit.train.__main__.main`, with the
argv `runs.child_command` builds, in this process: the same events, run.json, checkpoints,
exit code and stderr lines, without paying for a new interpreter and a torch import each time.
Tests about what a run writes use it.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cockpit import rundir, runs
from cockpit.plan.presets import Preset, apply_overrides
from cockpit.rundir import read_events
from cockpit.train.data import SHARD_HEADER_INTS, SHARD_MAGIC, SHARD_VERSION

FAULT_ENV = "GPT_COCKPIT_FAULT"

TINY = [
    "model.n_layer=1",
    "model.n_head=2",
    "model.n_embd=32",
    "model.block_size=32",
    "model.vocab_size=64",
    "train.batch_size=4",
    "train.max_steps=40",
    "train.warmup_steps=0",
    "train.lr=3e-3",
    "train.min_lr=3e-4",
    "train.eval_interval=20",
    "train.eval_steps=2",
    "train.log_interval=5",
    "train.sample_tokens=16",
    "data.tokenizer=char",
]

# The tiny run the engine tests share (conftest: finished_run, stopped_run): 60 steps, an eval
# and a checkpoint every 20; the stopped one stops between two evals, so last.pt is at step 25
# and last.prev.pt at step 20.
SHARED_RUN = ("train.max_steps=60",)
SHARED_STOP_STEP = 25

WORDS = "the quick brown fox jumps over lazy dog and cat sat on mat while bird sings".split()


def write_corpus(folder: Path, n_chars: int = 30_000) -> Path:
    """A small, learnable text: random sentences from a few words."""
    rng = random.Random(0)
    lines, size = [], 0
    while size < n_chars:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10))) + ".\n"
        lines.append(line)
        size += len(line)
    path = folder / "corpus.txt"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def make_run(tmp_path: Path, *overrides: str, name: str = "run") -> Path:
    """A run directory for the tiny preset on a corpus in tmp_path."""
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        write_corpus(tmp_path)
    preset = apply_overrides(Preset(name="tiny_test"), [*TINY, f"data.source={corpus}", *overrides])
    return rundir.create_run_dir(preset, tmp_path / name)


def copy_run(run_dir: Path, dest: Path) -> Path:
    """A private copy of a shared run directory, for a test that changes or resumes it."""
    shutil.copytree(run_dir, dest)
    return dest


def home_env(root: Path) -> dict[str, str]:
    """Config, runs and cache folders under root/home, for what starts before a test's own home."""
    home = root / "home"
    return {
        "GPT_COCKPIT_CONFIG": str(home / "config"),
        "GPT_COCKPIT_RUNS": str(home / "runs"),
        "GPT_COCKPIT_CACHE": str(home / "cache"),
        "GPT_COCKPIT_STATE": str(home / "state"),
    }


def run_child(
    run_dir: Path, *, fault: str = "", resume: bool = False, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """The real child process, as runs.launch starts it."""
    env = dict(os.environ, GPT_COCKPIT_FAULT=fault, PYTHONUNBUFFERED="1")
    cmd = runs.child_command(run_dir, device="cpu", resume=resume)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def train_in_process(
    run_dir: Path, *, fault: str = "", resume: bool = False
) -> subprocess.CompletedProcess[str]:
    """The child's entry point on the child's own argv, here: its exit code and stderr."""
    from cockpit.train.__main__ import main

    cmd = runs.child_command(run_dir, device="cpu", resume=resume)
    assert cmd[:3] == [sys.executable, "-m", "cockpit.train"], cmd
    err = io.StringIO()
    before = os.environ.get(FAULT_ENV)
    os.environ[FAULT_ENV] = fault
    path = list(sys.path)  # a model file's folder goes on it, as in the child: not for later tests
    try:
        with contextlib.redirect_stderr(err):
            code = main(cmd[3:])
    finally:
        sys.path[:] = path
        if before is None:
            del os.environ[FAULT_ENV]
        else:
            os.environ[FAULT_ENV] = before
    return subprocess.CompletedProcess(cmd, code, "", err.getvalue())


def train_in_fork(run_dir: Path, *, fault: str = "", timeout: float = 180) -> int:
    """The child's entry point in a forked copy of this process: its exit status. For a run
    that ends its process (os._exit) without needing a new interpreter and torch; the copy's
    stdout and stderr go nowhere (it shares this process's descriptors)."""
    pid = os.fork()
    if pid == 0:  # the copy: train, and never return into pytest
        try:
            quiet = os.open(os.devnull, os.O_WRONLY)
            os.dup2(quiet, 1)
            os.dup2(quiet, 2)
            os._exit(train_in_process(run_dir, fault=fault).returncode)
        finally:
            os._exit(70)  # an exception: EX_SOFTWARE
    return wait_forked(pid, "the forked trainer", timeout)


def wait_forked(pid: int, what: str, timeout: float) -> int:
    """The exit status of the forked copy `pid`; killed, and AssertionError naming `what`,
    past `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (done := os.waitpid(pid, os.WNOHANG))[0]:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"{what} did not end within {timeout:.0f} s")
        time.sleep(0.01)
    return os.waitstatus_to_exitcode(done[1])


def events_of(run_dir: Path, kind: str | None = None) -> list[dict]:
    records = read_events(run_dir / rundir.EVENTS_JSONL)
    return [r for r in records if kind is None or r["event"] == kind]


def assert_stopped_with_a_checkpoint(run_dir: Path, sig: signal.Signals) -> None:
    """The run ended `stopped` by `sig` at a step whose checkpoint and step record are there."""
    from cockpit.train import checkpoint as ckpt

    end = events_of(run_dir, "end")[-1]
    assert end["reason"] == "stopped" and signal.Signals(sig).name in end["message"]
    state = ckpt.load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["step"] == end["step"] > 0
    assert events_of(run_dir, "step")[-1]["step"] == end["step"]  # every step trained was logged
    assert events_of(run_dir, "checkpoint")[-1]["step"] == end["step"]
    assert rundir.read_run_info(run_dir).status == "stopped"
    assert rundir.run_status(run_dir) == "stopped"


def step_losses(run_dir: Path) -> dict[int, float]:
    """The latest loss recorded for each step."""
    return {r["step"]: r["loss"] for r in events_of(run_dir, "step")}


# --------------------------------------------------------------------------- token shards


def sentences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [
        " ".join(rng.choice(WORDS, size=rng.integers(4, 10))).capitalize() + "." for _ in range(n)
    ]


def write_shard(path: Path, tokens: Any) -> None:
    """The reference's shard format: 256 int32 header (magic, version, count), then uint16 tokens."""
    header = np.zeros(SHARD_HEADER_INTS, dtype=np.int32)
    header[:3] = (SHARD_MAGIC, SHARD_VERSION, len(tokens))
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens, dtype=np.uint16).tobytes())


def make_sp_shards(root: Path) -> dict[str, Any]:
    """A tiny SentencePiece BPE model trained here, two train shards and one val shard made
    with it, under root: {"model": its .model, "data": the shard folder, "sp", "val" ids}."""
    import sentencepiece as spm

    model = root / "tiny_sp.model"
    with open(model, "wb") as f:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences(400, 0)),
            model_writer=f,
            vocab_size=60,
            model_type="bpe",
            character_coverage=1.0,
            hard_vocab_limit=False,
            minloglevel=2,
        )
    sp = spm.SentencePieceProcessor(model_file=str(model))
    data = root / "data"
    data.mkdir()
    for i, seed in enumerate((1, 2)):
        ids = [t for s in sentences(300, seed) for t in sp.encode(s)]
        write_shard(data / f"fineweb_train_00000{i}.bin", ids)
    val_ids = [t for s in sentences(40, 3) for t in sp.encode(s)]
    write_shard(data / "fineweb_val_000000.bin", val_ids)
    return {"model": model, "data": data, "sp": sp, "val": np.array(val_ids)}


def wait_for(check: Callable[[], object], what: str, timeout: float = 120.0) -> Any:
    """`check()`'s first truthy value, looked for every 0.2 s; AssertionError naming `what`
    after `timeout` seconds (jobs and detached schedulers that start in their own time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"no {what} after {timeout:.0f} s")
