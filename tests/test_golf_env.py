"""The golf preset at seed 001's defaults, the seed's env-var overrides, and priming steps."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from tiny_runs import events_of, make_run, step_losses, train_in_process, write_shard

from cockpit import headless
from cockpit.plan.golf_env import ENV_FIELDS, env_overrides
from cockpit.plan.presets import PresetError, apply_overrides, field_paths, load_preset

# Every environment variable seed 001 documents.
SEED_001_NAMES = (
    "DATA_PATH TOKENIZER_PATH RUN_ID SEED VAL_BATCH_SIZE VAL_LOSS_EVERY TRAIN_LOG_EVERY "
    "ITERATIONS WARMDOWN_ITERS WARMUP_STEPS TRAIN_BATCH_TOKENS TRAIN_SEQ_LEN "
    "MAX_WALLCLOCK_SECONDS QK_GAIN_INIT VOCAB_SIZE NUM_LAYERS NUM_KV_HEADS MODEL_DIM NUM_HEADS "
    "MLP_MULT TIE_EMBEDDINGS ROPE_BASE LOGIT_SOFTCAP EMBED_LR HEAD_LR TIED_EMBED_LR "
    "TIED_EMBED_INIT_STD MATRIX_LR SCALAR_LR MUON_MOMENTUM MUON_BACKEND_STEPS "
    "MUON_MOMENTUM_WARMUP_START MUON_MOMENTUM_WARMUP_STEPS BETA1 BETA2 ADAM_EPS GRAD_CLIP_NORM"
).split()

# Seed 001's defaults, by the preset field that holds each.
SEED_DEFAULTS = {
    "train.matrix_lr": 0.04,
    "train.tied_embed_lr": 0.05,
    "train.head_lr": 0.008,
    "train.embed_lr": 0.6,
    "train.scalar_lr": 0.04,
    "train.beta1": 0.9,
    "train.beta2": 0.95,
    "train.adam_eps": 1e-8,
    "train.muon_momentum": 0.95,
    "train.muon_momentum_warmup_start": 0.85,
    "train.muon_momentum_warmup_steps": 500,
    "train.muon_backend_steps": 5,
    "train.warmdown_steps": 1200,
    "train.priming_steps": 20,
    "train.max_time_s": 600.0,
    "train.max_steps": 20000,
    "train.eval_interval": 1000,
    "train.log_interval": 200,
    "train.grad_clip": 0.0,
    "train.seed": 1337,
    "train.optimizer": "muon",
    "model.n_layer": 9,
    "model.n_embd": 512,
    "model.n_head": 8,
    "model.n_kv_head": 4,
    "model.mlp_ratio": 2,
    "model.vocab_size": 1024,
    "model.block_size": 1024,
    "model.tie_embeddings": True,
    "model.rope_base": 10000.0,
    "model.logit_softcap": 30.0,
    "model.qk_gain_init": 1.5,
    "model.tied_embed_init_std": 0.005,
}


@pytest.fixture(scope="module")
def golf():
    return load_preset("golf_baseline")


def test_golf_preset_holds_the_seed_defaults(golf):
    from cockpit.plan.presets import get_field

    for path, value in SEED_DEFAULTS.items():
        assert get_field(golf, path) == value, path
    assert golf.tokens_per_step == 524_288  # TRAIN_BATCH_TOKENS
    assert golf.train.lr == golf.train.matrix_lr  # the reported lr is the Muon rate


def test_every_seed_name_maps_to_a_field_or_says_why_not():
    paths = set(field_paths())
    for name in SEED_001_NAMES:
        assert name in ENV_FIELDS, name
        field = ENV_FIELDS[name]
        assert field.path in paths or (not field.path and field.note), name


def test_docs_table_lists_every_name():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "golf.md").read_text()
    rows = dict(re.findall(r"^\| `([A-Z0-9_]+)` \| (.*?) \|", doc, flags=re.M))
    assert set(rows) == set(ENV_FIELDS)
    for name, field in ENV_FIELDS.items():
        assert (field.path or "no effect") in rows[name], name


def test_the_seed_smoke_test_settings(golf):
    env = {"MAX_WALLCLOCK_SECONDS": "60", "ITERATIONS": "500", "VAL_LOSS_EVERY": "0"}
    found = env_overrides(golf, env)
    assert found.overrides == {
        "train.max_time_s": 60.0,
        "train.max_steps": 500,
        "train.eval_interval": 0,
        "train.warmdown_steps": 500,  # cut to fit the 500 steps
    }
    assert any("warmdown" in n for n in found.notes) and not found.warnings
    effective = apply_overrides(golf, found.overrides)
    assert effective.train.max_steps == 500 and effective.train.eval_interval == 0


def test_derived_fields(golf, tmp_path):
    env = {"TRAIN_SEQ_LEN": "512", "MATRIX_LR": "0.02", "TIE_EMBEDDINGS": "0"}
    env |= {"DATA_PATH": str(tmp_path), "TRAIN_LOG_EVERY": "0", "WARMUP_STEPS": "3"}
    got = env_overrides(golf, env).overrides
    assert got["model.block_size"] == 512 and got["train.batch_size"] == 128  # 524288 tokens kept
    assert got["train.matrix_lr"] == got["train.lr"] == 0.02
    assert got["model.tie_embeddings"] is False
    assert got["data.source"] == str(tmp_path / "fineweb_train_*.bin")
    assert got["train.log_interval"] == 1
    assert got["train.priming_steps"] == 3
    got = env_overrides(golf, {"TRAIN_BATCH_TOKENS": "65536"}).overrides
    assert got["train.batch_size"] == 8  # 65536 / (8 micro-batches x 1024)
    with pytest.raises(PresetError, match="less than one sequence"):
        env_overrides(golf, {"TRAIN_BATCH_TOKENS": "1000"})


def test_unknown_and_bad_names(golf):
    found = env_overrides(golf, {"MATRX_LR": "0.1", "MUON_FOO": "1", "HOME": "/x", "PATH": "/b"})
    assert found.overrides == {}
    assert found.warnings == [
        "MATRX_LR is not a golf setting; did you mean MATRIX_LR? (ignored)",
        "MUON_FOO is not a golf setting (ignored; docs/golf.md lists them)",
    ]
    with pytest.raises(PresetError) as err:
        env_overrides(golf, {"ITERATIONS": "many"})
    assert err.value.path == "train.max_steps" and "whole number" in str(err.value)
    notes = env_overrides(golf, {"RUN_ID": "abc", "VAL_BATCH_SIZE": "8"}).notes
    assert len(notes) == 2 and all("no effect" in n for n in notes)


def test_only_golf_runs_read_the_environment():
    tiny = load_preset("tiny_char")
    assert env_overrides(tiny, {"ITERATIONS": "5", "MATRX_LR": "1"}).overrides == {}


def test_explicit_flags_win_and_the_launch_records_the_environment(golf, tmp_path, monkeypatch):
    shard_dir = tmp_path / "data"
    shard_dir.mkdir()
    write_shard(shard_dir / "fineweb_train_000000.bin", list(range(64)))  # a real, tiny shard
    for key in list(ENV_FIELDS):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ITERATIONS", "50")
    monkeypatch.setenv("SEED", "7")
    monkeypatch.setenv("DATA_PATH", str(shard_dir))
    (shard_dir / "sp.model").write_bytes(b"")
    monkeypatch.setenv("TOKENIZER_PATH", str(shard_dir / "sp.model"))
    args = argparse.Namespace(
        preset="golf_baseline", overrides=["train.seed=3"], max_steps=None, data=None
    )
    preset = headless.resolve_preset(args)
    assert preset.train.max_steps == 50 and preset.train.seed == 3  # --set beats SEED
    assert args.golf_env_overrides["train.max_steps"] == 50
    assert "train.seed" not in args.golf_env_overrides
    assert preset.data.source == str(shard_dir / "fineweb_train_*.bin")


def test_golf_keeps_its_global_batch_on_several_ranks(golf):
    assert (
        golf.train.keep_global_batch
    )  # 8 micro-batches on one GPU, 8 // world_size on each of several
    assert not load_preset("tiny_char").train.keep_global_batch


@pytest.mark.slow
def test_priming_steps_leave_the_run_as_it_was(tmp_path):
    golf = [
        "model.arch=golf",
        "model.n_layer=2",
        "model.n_head=2",
        "model.n_embd=16",
        "model.block_size=16",
        "train.optimizer=muon",
        "train.lr=0.04",
        "train.max_steps=6",
        "train.log_interval=3",
        "train.eval_interval=0",
        "train.sample_tokens=0",
    ]
    plain = make_run(tmp_path, *golf, name="plain")
    primed = make_run(tmp_path, *golf, "train.priming_steps=3", name="primed")
    assert train_in_process(plain).returncode == 0
    assert train_in_process(primed).returncode == 0
    assert step_losses(primed) == step_losses(plain)
    assert sorted(step_losses(plain)) == list(range(1, 7))


@pytest.mark.slow
def test_a_priming_step_out_of_memory_halves_the_micro_batch(tmp_path):
    """Priming goes through the out-of-memory retry: the split it settles on trains the run."""
    golf = [
        "model.arch=golf",
        "model.n_layer=2",
        "model.n_head=2",
        "model.n_embd=16",
        "model.block_size=16",
        "train.optimizer=muon",
        "train.batch_size=4",
        "train.max_steps=4",
        "train.log_interval=2",
        "train.eval_interval=0",
        "train.sample_tokens=0",
    ]
    primed = make_run(tmp_path, *golf, "train.priming_steps=2", name="primed")
    plain = make_run(tmp_path, *golf, name="plain")
    assert train_in_process(primed, fault="oom_above_batch=2").returncode == 0
    assert train_in_process(plain, fault="oom_above_batch=2").returncode == 0
    assert events_of(primed, "end")[-1]["reason"] == "finished"
    ooms = [w for w in events_of(primed, "warning") if w["rule"] == "oom"]
    assert len(ooms) == 1 and ooms[0]["step"] == 0  # in priming, before step 1
    assert {s["micro_batch"] for s in events_of(primed, "step")} == {2}
    assert step_losses(primed) == step_losses(plain)  # and the priming still undone
