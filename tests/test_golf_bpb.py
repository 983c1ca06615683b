"""Bits per byte on SentencePiece shards, and seed 001's smoke test as written, scaled down."""

from __future__ import annotations

import json
import math
import sys

import pytest
from tiny_runs import events_of, make_sp_shards, train_in_process

from cockpit import rundir
from cockpit.plan.golf_env import ENV_FIELDS
from cockpit.train.bpb import byte_table, load_byte_table, tokens_per_byte
from cockpit.train.runtime import EngineError

spm = pytest.importorskip("sentencepiece")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """A tiny SentencePiece BPE model trained here, two train shards and one val shard made with it."""
    return make_sp_shards(tmp_path_factory.mktemp("golf_shards"))


def test_byte_table_counts_the_bytes_the_tokens_decode_to(shards):
    sp, val = shards["sp"], shards["val"]
    table = byte_table(sp, int(sp.vocab_size()))
    targets = val[1:200]
    text = sp.decode(targets.tolist())  # decode drops the first piece's leading space
    first_space = int(sp.id_to_piece(int(targets[0])).startswith("\u2581"))
    assert table.bytes_of(val[:199], targets) == len(text.encode("utf-8")) + first_space
    spaced = [i for i in range(sp.vocab_size()) if sp.id_to_piece(i).startswith("\u2581")]
    assert spaced and all(table.leading_space[spaced]) and not any(table.boundary[spaced])
    assert table.boundary[sp.unk_id()] and table.base_bytes[sp.unk_id()] == 0


def test_a_vocabulary_that_differs_from_the_preset_is_a_clear_error(shards):
    n = int(shards["sp"].vocab_size())
    with pytest.raises(EngineError) as err:
        load_byte_table(str(shards["model"]), n + 4)
    assert f"has {n} pieces but model.vocab_size is {n + 4}" in str(err.value)
    assert err.value.kind == "data"
    assert tokens_per_byte(load_byte_table(str(shards["model"]), n), shards["val"]) > 0


def test_missing_sentencepiece_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "sentencepiece", None)
    with pytest.raises(EngineError, match=r"pip install 'gpt-cockpit\[golf\]'"):
        load_byte_table(str(tmp_path / "x.model"), 64)


@pytest.mark.slow
def test_seed_smoke_test_as_written_ends_with_val_loss_and_bpb(shards, tmp_path, monkeypatch):
    from cockpit import headless
    from cockpit.__main__ import main

    # the command line as typed; the child trains in this process (the same entry point and argv)
    monkeypatch.setattr(
        headless, "launch_and_follow", lambda run_dir, **_: train_in_process(run_dir).returncode
    )
    sp = shards["sp"]
    vocab = int(sp.vocab_size())
    for name in ENV_FIELDS:
        monkeypatch.delenv(name, raising=False)
    # the seed's smoke test: MAX_WALLCLOCK_SECONDS=60 ITERATIONS=500 VAL_LOSS_EVERY=0,
    # with ITERATIONS and the shape scaled down so it is quick
    env = {"MAX_WALLCLOCK_SECONDS": "60", "ITERATIONS": "4", "VAL_LOSS_EVERY": "0"}
    env |= {"DATA_PATH": str(shards["data"]), "TOKENIZER_PATH": str(shards["model"])}
    env |= {"VOCAB_SIZE": str(vocab), "NUM_LAYERS": "2", "MODEL_DIM": "32", "NUM_HEADS": "2"}
    env |= {"NUM_KV_HEADS": "1", "TRAIN_SEQ_LEN": "32", "TRAIN_BATCH_TOKENS": "256"}
    env |= {"WARMUP_STEPS": "2", "TRAIN_LOG_EVERY": "2"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    runs = tmp_path / "runs"
    argv = ["--no-ui", "--runs-dir", str(runs), "--preset", "golf_baseline"]
    assert main([*argv, "--set", "train.sample_tokens=8", "--set", "train.eval_steps=2"]) == 0
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    evals = events_of(run, "eval")
    assert [e["step"] for e in evals] == [4]  # VAL_LOSS_EVERY=0: the final eval only
    final = evals[0]
    assert math.isfinite(final["val_loss"]) and final["val_bpb"] is not None
    assert events_of(run, "end")[-1]["reason"] == "finished"

    # bits per byte over the whole val split, from bytes counted independently of the table
    val, T = shards["val"], 32
    n = (len(val) - 1) // T * T
    targets = val[1 : n + 1]
    n_bytes = len(sp.decode(targets.tolist()).encode("utf-8"))
    n_bytes += int(sp.id_to_piece(int(targets[0])).startswith("\u2581"))
    expected = final["val_loss"] / math.log(2) * n / n_bytes
    assert final["val_bpb"] == pytest.approx(expected, rel=1e-6)

    info = json.loads((run / rundir.RUN_JSON).read_text())
    assert info["overrides"]["train.max_steps"] == 4
    assert info["overrides"]["train.max_time_s"] == 60.0
    assert info["overrides"]["train.eval_interval"] == 0
    assert info["overrides"]["data.tokenizer_model"] == str(shards["model"])
    assert info["overrides"]["train.batch_size"] == 1  # 256 tokens = 8 micro-batches x 1 x 32
