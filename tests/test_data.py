"""Data: sources, the fixed split, the token cache, token files and shards, and the sampler."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cockpit.presets import DataConfig
from cockpit.train import data as datamod
from cockpit.train.data import SHARD_MAGIC, BatchSampler, DataError, load_data

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(200))


def write_shard(
    path: Path,
    tokens: np.ndarray,
    magic: int = SHARD_MAGIC,
    version: int = 1,
    count: int | None = None,
) -> None:
    header = np.zeros(256, dtype=np.int32)
    header[:3] = (magic, version, len(tokens) if count is None else count)
    path.write_bytes(header.tobytes() + tokens.astype(np.uint16).tobytes())


def cfg(source: str | Path, tokenizer: str = "char", val_fraction: float = 0.1) -> DataConfig:
    return DataConfig(source=str(source), tokenizer=tokenizer, val_fraction=val_fraction)


def test_text_file_char_split_is_the_last_fraction(tmp_path) -> None:
    path = tmp_path / "input.txt"
    path.write_text(TEXT)
    d = load_data(cfg(path), block_size=32, vocab_size=256)
    n = len(TEXT)
    assert len(d.train) + len(d.val) == n and len(d.val) == int(n * 0.1)
    assert d.tokenizer.decode(np.asarray(d.val).tolist()) == TEXT[-len(d.val) :]
    assert d.vocab_size_needed == len(set(TEXT)) == d.tokenizer.vocab_size
    assert d.val_bytes == len(d.val)  # ASCII: one byte per char
    assert "input.txt" in d.description and "char" in d.description
    assert np.asarray(d.train).dtype == np.uint16


def test_second_load_uses_the_cache(tmp_path, monkeypatch) -> None:
    path = tmp_path / "input.txt"
    path.write_text(TEXT)
    calls = []
    real = datamod.encode_text
    monkeypatch.setattr(
        datamod, "encode_text", lambda tok, text: calls.append(1) or real(tok, text)
    )
    first = load_data(cfg(path), block_size=32, vocab_size=256)
    second = load_data(cfg(path), block_size=32, vocab_size=256)
    assert len(calls) == 1
    assert (
        np.array_equal(first.train, second.train)
        and second.tokenizer.chars == first.tokenizer.chars
    )
    cached = list((Path(os.environ["GPT_COCKPIT_CACHE"]) / "tokens").iterdir())
    assert sorted(p.suffix for p in cached) == [".json", ".npy"]
    load_data(
        cfg(path, tokenizer="byte"), block_size=32, vocab_size=256
    )  # another tokenizer: its own entry
    assert len(calls) == 2
    path.write_text(TEXT + "more text\n")  # a changed source is tokenized again
    assert len(load_data(cfg(path), block_size=32, vocab_size=256).train) > len(first.train)
    assert len(calls) == 3


def test_damaged_cache_is_rebuilt(tmp_path) -> None:
    path = tmp_path / "input.txt"
    path.write_text(TEXT)
    first = load_data(cfg(path), block_size=32, vocab_size=256)
    for p in (Path(os.environ["GPT_COCKPIT_CACHE"]) / "tokens").glob("*.npy"):
        p.write_bytes(b"garbage")
    again = load_data(cfg(path), block_size=32, vocab_size=256)
    assert np.array_equal(first.train, again.train)


def test_folder_is_sorted_recursive_and_skips_binary(tmp_path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.md").write_text("B" * 300)
    (tmp_path / "a.txt").write_text("A" * 300)
    (tmp_path / "blob.txt").write_bytes(b"\x00\x01binary" * 50)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.txt").write_text("H" * 300)
    d = load_data(cfg(tmp_path, val_fraction=0.2), block_size=16, vocab_size=256)
    text = d.tokenizer.decode(np.concatenate([d.train, d.val]).tolist())
    assert text == "A" * 300 + "\n\n" + "B" * 300
    assert "3 files under" in d.description  # blob.txt is listed, then skipped as binary


def test_byte_tokenizer_keeps_utf8_bytes(tmp_path) -> None:
    path = tmp_path / "u.txt"
    path.write_text("héllo wörld ✓ " * 40, encoding="utf-8")
    d = load_data(cfg(path, tokenizer="byte"), block_size=16, vocab_size=256)
    assert np.concatenate([d.train, d.val]).tobytes() != b""
    assert bytes(np.concatenate([d.train, d.val]).astype(np.uint8)) == path.read_bytes()
    assert d.vocab_size_needed == 256 and d.val_bytes == len(d.val)


def test_default_corpus_source(monkeypatch) -> None:
    monkeypatch.setattr(datamod, "read_default_corpus", lambda: TEXT)
    d = load_data(DataConfig(), block_size=32, vocab_size=256)
    assert "default corpus" in d.description and len(d.train) + len(d.val) == len(TEXT)


@pytest.mark.parametrize(
    ("make", "source", "message"),
    [
        (lambda p: None, "missing.txt", "no such file"),
        (lambda p: (p / "empty").mkdir(), "empty", "no text files"),
        (lambda p: (p / "tiny.txt").write_text("abc"), "tiny.txt", "fewer than model.block_size"),
        (lambda p: (p / "blank.txt").write_text(""), "blank.txt", "no text"),
        (lambda p: None, "nothing_*.bin", "no files match"),
    ],
)
def test_unusable_sources_say_why(tmp_path, make, source, message) -> None:
    make(tmp_path)
    with pytest.raises(DataError, match=message):
        load_data(cfg(tmp_path / source), block_size=32, vocab_size=256)


def test_pretokenized_needs_token_files(tmp_path) -> None:
    (tmp_path / "t.txt").write_text(TEXT)
    with pytest.raises(DataError, match="pretokenized"):
        load_data(cfg(tmp_path / "t.txt", tokenizer="pretokenized"), block_size=32, vocab_size=256)


def test_nanogpt_train_and_val_bin(tmp_path) -> None:
    np.arange(1000, dtype=np.uint16).tofile(tmp_path / "train.bin")
    (np.arange(200, dtype=np.uint16) + 5).tofile(tmp_path / "val.bin")
    d = load_data(
        cfg(tmp_path / "train.bin", tokenizer="pretokenized"), block_size=32, vocab_size=1024
    )
    assert len(d.train) == 1000 and len(d.val) == 200 and int(d.val[0]) == 5
    assert d.vocab_size_needed == 1000
    assert d.tokenizer.decode([1, 2]) == "1 2"
    same = load_data(
        cfg(tmp_path, tokenizer="pretokenized"), block_size=32, vocab_size=1024
    )  # the folder
    assert len(same.train) == 1000 and len(same.val) == 200


def test_single_bin_is_split_and_ids_checked(tmp_path) -> None:
    np.arange(1000, dtype=np.uint16).tofile(tmp_path / "tokens.bin")
    d = load_data(
        cfg(tmp_path / "tokens.bin", tokenizer="pretokenized", val_fraction=0.25),
        block_size=32,
        vocab_size=1000,
    )
    assert len(d.val) == 250 and int(d.val[0]) == 750
    with pytest.raises(DataError, match="id 999.*at least 1000"):
        load_data(
            cfg(tmp_path / "tokens.bin", tokenizer="pretokenized"), block_size=32, vocab_size=512
        )
    (tmp_path / "odd.bin").write_bytes(b"\x01\x02\x03")
    with pytest.raises(DataError, match="odd number of bytes"):
        load_data(
            cfg(tmp_path / "odd.bin", tokenizer="pretokenized"), block_size=32, vocab_size=512
        )


def test_shard_glob_with_val_shards(tmp_path) -> None:
    write_shard(tmp_path / "fineweb_train_000001.bin", np.full(500, 1))
    write_shard(tmp_path / "fineweb_train_000002.bin", np.full(500, 2))
    write_shard(tmp_path / "fineweb_val_000000.bin", np.full(300, 3))
    d = load_data(
        cfg(tmp_path / "fineweb_train_*.bin", tokenizer="pretokenized"),
        block_size=32,
        vocab_size=1024,
    )
    assert len(d.train) == 1000 and int(d.train[0]) == 1 and int(d.train[-1]) == 2
    assert len(d.val) == 300 and set(np.asarray(d.val).tolist()) == {3}
    assert "2 token file(s)" in d.description
    # the tokenizer the preset names decodes samples when it is available
    byte = load_data(
        cfg(tmp_path / "fineweb_train_*.bin", tokenizer="byte"), block_size=32, vocab_size=256
    )
    assert byte.tokenizer.name == "byte"


def test_shard_without_val_is_split(tmp_path) -> None:
    write_shard(tmp_path / "data_000.bin", np.arange(400))
    d = load_data(
        cfg(tmp_path / "data_*.bin", tokenizer="pretokenized", val_fraction=0.5),
        block_size=32,
        vocab_size=1024,
    )
    assert len(d.train) == 200 and int(d.val[0]) == 200


def test_unavailable_tiktoken_falls_back_to_ids_for_token_files(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty"))
    write_shard(tmp_path / "s_000.bin", np.arange(400))
    d = load_data(cfg(tmp_path / "s_*.bin", tokenizer="gpt2"), block_size=32, vocab_size=50304)
    assert d.tokenizer.name == "pretokenized"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"magic": 12345}, "not an llm.c token shard"),
        ({"version": 7}, "unsupported shard version 7"),
        ({"count": 900}, "truncated"),
    ],
)
def test_bad_shards(tmp_path, kw, message) -> None:
    path = tmp_path / "bad_000.bin"
    write_shard(path, np.arange(400), **kw)
    with pytest.raises(DataError, match=message):
        datamod.read_shard(path)
    if "magic" not in kw:  # a wrong magic reads as a raw uint16 file instead
        with pytest.raises(DataError, match=message):
            load_data(cfg(path, tokenizer="pretokenized"), block_size=32, vocab_size=1024)


# --------------------------------------------------------------------------- sampler

TOKENS = np.arange(5000, dtype=np.uint16)


def test_sample_shapes_and_shift() -> None:
    s = BatchSampler(TOKENS, 16, seed=1)
    x, y = s.sample(8)
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(y - x, torch.ones_like(x))  # consecutive tokens of the arange
    assert int(y.max()) < len(TOKENS)


def test_same_seed_same_batches_other_seed_others() -> None:
    a, b, c = BatchSampler(TOKENS, 16, 7), BatchSampler(TOKENS, 16, 7), BatchSampler(TOKENS, 16, 8)
    xa, _ = a.sample(4)
    assert torch.equal(xa, b.sample(4)[0])
    assert not torch.equal(xa, c.sample(4)[0])


def test_resume_from_state_draws_the_same_batches() -> None:
    s = BatchSampler(TOKENS, 16, 3)
    s.sample(4)
    state = s.state_dict()
    expected = [s.sample(4)[0] for _ in range(3)]
    resumed = BatchSampler(TOKENS, 16, 999)
    resumed.load_state_dict(state)
    assert all(torch.equal(e, resumed.sample(4)[0]) for e in expected)


def test_torch_save_round_trip_of_state(tmp_path) -> None:
    s = BatchSampler(TOKENS, 16, 3)
    torch.save(s.state_dict(), tmp_path / "s.pt")
    expected = s.sample(2)[0]
    resumed = BatchSampler(TOKENS, 16, 0)
    resumed.load_state_dict(torch.load(tmp_path / "s.pt"))
    assert torch.equal(resumed.sample(2)[0], expected)


def test_skip_advances_like_sample() -> None:
    a, b = BatchSampler(TOKENS, 16, 5), BatchSampler(TOKENS, 16, 5)
    a.sample(6)
    b.skip(6)
    assert torch.equal(a.sample(4)[0], b.sample(4)[0])


def test_one_draw_split_into_micro_batches_is_the_same_data() -> None:
    a, b = BatchSampler(TOKENS, 16, 11), BatchSampler(TOKENS, 16, 11)
    big, _ = a.sample(8)
    halves = torch.cat(b.sample(8)[0].split(4))
    assert torch.equal(big, halves)


def test_memmap_tokens_and_too_few(tmp_path) -> None:
    TOKENS.tofile(tmp_path / "t.bin")
    mm = np.memmap(tmp_path / "t.bin", dtype=np.uint16, mode="r")
    x, _ = BatchSampler(mm, 16, 0).sample(3)
    assert x.shape == (3, 16)
    with pytest.raises(DataError, match="too few"):
        BatchSampler(np.arange(17, dtype=np.uint16), 16, 0)


def test_val_shards_found_beside_train_in_a_training_folder(tmp_path) -> None:
    folder = tmp_path / "training_data"
    folder.mkdir()
    write_shard(folder / "fw_train_000.bin", np.full(400, 1))
    write_shard(folder / "fw_val_000.bin", np.full(100, 2))
    d = load_data(
        cfg(folder / "fw_train_*.bin", tokenizer="pretokenized"), block_size=32, vocab_size=16
    )
    assert len(d.train) == 400 and len(d.val) == 100
