"""`gpt-cockpit sample`: text from a run's checkpoint with the run's own tokenizer, and its errors."""

from __future__ import annotations

import pytest
from tiny_runs import copy_run, make_run

from cockpit.__main__ import main
from cockpit.train import checkpoint as ckpt

pytestmark = pytest.mark.slow


def sample(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["sample", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_sample_continues_the_prompt_with_the_runs_tokenizer(capsys, finished_run):
    code, out, err = sample(
        capsys, str(finished_run), "--prompt", "the ", "--tokens", "30", "--seed", "1"
    )
    assert code == 0, err
    assert out.startswith("the ") and len(out.rstrip("\n")) == len("the ") + 30  # char tokens
    assert set(out) <= set(
        "the quick brown fox jumps over lazy dog and cat sat on mat while bird sings.\n "
    )
    assert "best.pt (step " in err and "on cpu" in err
    again = sample(capsys, str(finished_run), "--prompt", "the ", "--tokens", "30", "--seed", "1")
    assert again[1] == out  # the same seed, the same text

    code, out, err = sample(
        capsys,
        str(finished_run),
        "--checkpoint",
        "last",
        "--tokens",
        "5",
        "--top-k",
        "0",
        "--temperature",
        "1.5",
        "--device",
        "cpu",
    )
    assert code == 0 and "last.pt (step 60)" in err and len(out.rstrip("\n")) >= 5


def test_sample_errors_are_one_line(capsys, tmp_path, finished_run, monkeypatch):
    code, _, err = sample(capsys, str(tmp_path / "nowhere"))
    assert code == 2 and err.count("\n") == 1 and "error:" in err

    fresh = make_run(tmp_path, name="fresh")  # created, never trained
    code, _, err = sample(capsys, str(fresh))
    assert code == 2 and "has no checkpoint yet" in err and err.count("\n") == 1
    code, _, err = sample(capsys, str(fresh), "--checkpoint", "best")
    assert code == 2 and "no best.pt" in err

    code, _, err = sample(capsys, str(finished_run), "--prompt", "Zebra!")
    assert code == 2 and "cannot be encoded" in err and "'Z'" in err

    # a run trained with a tiktoken encoding whose BPE files are not on this machine
    run = copy_run(finished_run, tmp_path / "bpe")
    best = run / "checkpoints" / "best.pt"
    state = ckpt.load_checkpoint(best)
    state["tokenizer"] = {"name": "gpt2"}
    ckpt.save_checkpoint(best, state)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    code, _, err = sample(capsys, str(run))
    assert code == 2 and "tiktoken" in err and "TIKTOKEN_CACHE_DIR" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_damaged_checkpoint_is_named(capsys, tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path / "damaged")
    best = run / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:100])
    code, _, err = sample(capsys, str(run), "--checkpoint", "best")
    assert code == 2 and "best.pt" in err and err.count("\n") == 1
