"""Samples of a run on SentencePiece token shards read as text, not as token ids."""

from __future__ import annotations

import sys

import pytest
import test_golf_bpb
from tiny_runs import TINY, copy_run, events_of, train_in_process

from cockpit import rundir
from cockpit.__main__ import main
from cockpit.plan.presets import DataConfig, Preset, apply_overrides
from cockpit.text.tokenizers import (
    IdTokenizer,
    SentencePieceTokenizer,
    shard_tokenizer,
    tokenizer_from_state,
)
from cockpit.train import checkpoint as ckpt
from cockpit.train.data import load_data
from cockpit.train.export import tokenizer_note

spm = pytest.importorskip("sentencepiece")


# the golf tests' module fixture: a tiny SentencePiece model trained there, shards made with it
shards = test_golf_bpb.shards


def vocab(shards) -> int:
    return int(shards["sp"].vocab_size())


def no_sentencepiece(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sentencepiece", None)


def test_sentencepiece_tokenizer_decodes_what_it_encodes_and_travels_by_state(shards):
    tok = SentencePieceTokenizer(shards["model"])
    ids = tok.encode("the quick fox sat on the mat.")
    assert (
        tok.vocab_size == vocab(shards)
        and tok.decode(ids).strip() == "the quick fox sat on the mat."
    )
    two = tok.encode("the mat")
    second = max(i for i, t in enumerate(two) if shards["sp"].id_to_piece(t).startswith("\u2581"))
    assert second > 0 and tok.decode(two[second:]) == " mat"  # a continuation keeps its space
    assert tok.decode([*ids, 10_000, -1]) == tok.decode(ids)  # ids outside the pieces are dropped
    again = tokenizer_from_state(tok.state_dict())
    assert again.state_dict() == tok.state_dict() and again.decode(ids) == tok.decode(ids)
    assert tok.state_dict()["model_file"] == str(shards["model"].resolve())
    note = tokenizer_note(tok.state_dict(), tok.vocab_size)  # what an export says the ids are
    assert note.startswith("sentencepiece: ") and str(shards["model"].resolve()) in note


def test_without_the_package_or_the_file_the_ids_stay_with_one_line(shards, monkeypatch, tmp_path):
    gone = tmp_path / "gone.model"
    tok, note = shard_tokenizer(str(gone), 64)
    assert isinstance(tok, IdTokenizer) and str(gone) in note and "\n" not in note
    no_sentencepiece(monkeypatch)
    tok, note = shard_tokenizer(str(shards["model"]), 64)
    assert isinstance(tok, IdTokenizer) and tok.decode([3, 4]) == "3 4"
    assert note.startswith("samples show token ids") and "pip install 'gpt-cockpit[golf]'" in note
    tok, note = shard_tokenizer("", 64)  # no model named: ids, nothing to say
    assert isinstance(tok, IdTokenizer) and note is None


def test_shards_with_a_tokenizer_model_load_its_tokenizer(shards, monkeypatch):
    cfg = DataConfig(
        source=str(shards["data"] / "fineweb_train_*.bin"),
        tokenizer="pretokenized",
        tokenizer_model=str(shards["model"]),
    )
    data = load_data(cfg, block_size=16, vocab_size=vocab(shards))
    assert data.tokenizer.name == "sentencepiece"
    no_sentencepiece(monkeypatch)  # the ids stay; the byte table's check ends such a run
    data = load_data(cfg, block_size=16, vocab_size=vocab(shards))
    assert data.tokenizer.name == "pretokenized"


@pytest.fixture(scope="module")
def golf_run(shards, tmp_path_factory):
    """A tiny run on the shards with their SentencePiece model, trained in process."""
    root = tmp_path_factory.mktemp("golf_run")
    overrides = [*TINY, "model.vocab_size=" + str(vocab(shards)), "train.max_steps=4"]
    overrides += ["train.eval_interval=4", "data.tokenizer=pretokenized"]
    overrides += [f"data.source={shards['data'] / 'fineweb_train_*.bin'}"]
    overrides += [f"data.tokenizer_model={shards['model']}"]
    run_dir = rundir.create_run_dir(
        apply_overrides(Preset(name="tiny_golf"), overrides), root / "run"
    )
    proc = train_in_process(run_dir)
    assert proc.returncode == 0, proc.stderr
    return run_dir


def sample(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["sample", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def is_ids(text: str) -> bool:
    return all(part.isdigit() for part in text.split())


@pytest.mark.slow
def test_training_samples_and_gpt_cockpit_sample_show_text(golf_run, capsys, monkeypatch):
    (event,) = events_of(golf_run, "sample")
    assert event["text"].strip() and not is_ids(event["text"])
    pieces = set(shards_pieces(golf_run))
    assert set(event["text"].replace(" ", "")) <= pieces

    code, out, err = sample(
        capsys, str(golf_run), "--prompt", "the", "--tokens", "12", "--seed", "1"
    )
    assert code == 0, err
    assert out.startswith("the") and not is_ids(out[3:]) and "token ids" not in err

    # a checkpoint saved before samples were decoded: its preset names the model
    run = copy_run(golf_run, golf_run.parent / "older")
    for name in ("best.pt", "last.pt"):
        path = run / "checkpoints" / name
        if path.is_file():
            state = ckpt.load_checkpoint(path)
            state["tokenizer"] = {"name": "pretokenized", "vocab_size": 64}
            ckpt.save_checkpoint(path, state)
    code, again, err = sample(capsys, str(run), "--prompt", "the", "--tokens", "12", "--seed", "1")
    assert code == 0 and again == out

    no_sentencepiece(monkeypatch)
    code, out, err = sample(capsys, str(golf_run), "--tokens", "12", "--seed", "1")
    assert code == 0 and is_ids(out) and len(out.split()) == 12
    (line,) = [line for line in err.splitlines() if "token ids" in line]
    assert "pip install 'gpt-cockpit[golf]'" in line and "Traceback" not in err


def shards_pieces(run_dir) -> str:
    """Every character the run's SentencePiece pieces can decode to."""
    preset = rundir.load_run_preset(run_dir)
    sp = spm.SentencePieceProcessor(model_file=preset.data.tokenizer_model)
    return "".join(sp.decode([i]) for i in range(sp.vocab_size())) + " \u2047"
