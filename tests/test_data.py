"""Data: sources (text, folders, token files, llm.c shards, the default corpus), the fixed
split, the token cache, and the resumable sampler."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import cockpit.train.data as datamod
from cockpit.plan.presets import DataConfig
from cockpit.text.corpus import read_default_corpus
from cockpit.text.tokenizers import CharTokenizer
from cockpit.train.data import SHARD_MAGIC, BatchSampler, DataError, cache_dir, load_data

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(200))


def cfg(source: Path | str, tokenizer: str = "byte", val_fraction: float = 0.1) -> DataConfig:
    return DataConfig(source=str(source), tokenizer=tokenizer, val_fraction=val_fraction)


def write_shard(
    path: Path,
    tokens: np.ndarray,
    *,
    magic: int = SHARD_MAGIC,
    version: int = 1,
    count: int | None = None,
) -> None:
    """An llm.c shard: 256 int32 header (magic, version, token count), then uint16 tokens."""
    header = np.zeros(256, dtype=np.int32)
    header[:3] = (magic, version, len(tokens) if count is None else count)
    path.write_bytes(header.tobytes() + np.asarray(tokens, dtype=np.uint16).tobytes())


def joined(data: datamod.TokenData) -> np.ndarray:
    return np.concatenate([np.asarray(data.train), np.asarray(data.val)])


def write_text(tmp_path: Path, text: str = TEXT) -> Path:
    path = tmp_path / "input.txt"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- text


def test_text_file_char_split_is_the_last_fraction(tmp_path: Path) -> None:
    d = load_data(cfg(write_text(tmp_path), "char"), block_size=32, vocab_size=256)
    n = len(TEXT)
    assert len(d.train) + len(d.val) == n and len(d.val) == int(n * 0.1)
    assert d.tokenizer.decode(joined(d).tolist()) == TEXT
    assert d.tokenizer.decode(np.asarray(d.val).tolist()) == TEXT[-len(d.val) :]
    assert d.vocab_size_needed == len(set(TEXT)) == d.tokenizer.vocab_size
    assert d.val_bytes == len(d.val)  # ASCII: one byte per char
    assert "input.txt" in d.description and "char" in d.description
    assert np.asarray(d.train).dtype == np.uint16


def test_text_file_bytes_and_the_tail_split(tmp_path: Path) -> None:
    path = write_text(tmp_path, TEXT + "héllo wörld ✓")
    data = load_data(cfg(path), block_size=16, vocab_size=256)
    raw = path.read_bytes()
    assert joined(data).tobytes() == np.frombuffer(raw, dtype=np.uint8).astype(np.uint16).tobytes()
    assert len(data.val) == int(len(raw) * 0.1)
    assert bytes(np.asarray(data.val).astype(np.uint8)) == raw[-len(data.val) :]  # val is the tail
    assert data.vocab_size_needed == 256
    assert data.val_bytes == len(data.val)


def test_a_latin1_file_says_how_many_bytes_were_replaced(tmp_path: Path) -> None:
    """Latin-1 accents are not UTF-8: each byte becomes U+FFFD, and the data line says how many
    (the same from the token cache on the second load); a clean UTF-8 file says nothing."""
    path = tmp_path / "latin1.txt"
    path.write_bytes(("café naïve ½ \ufffd\n" * 100).encode("latin-1", errors="ignore"))
    for _ in range(2):  # the second load comes from the cache
        data = load_data(cfg(path, "char"), block_size=16, vocab_size=256)
        assert "300 bytes were not UTF-8 and read as U+FFFD" in data.description
    clean = load_data(cfg(write_text(tmp_path), "char"), block_size=16, vocab_size=256)
    assert "UTF-8" not in clean.description
    mixed = tmp_path / "mixed.txt"  # a U+FFFD written in the file is not a replaced byte
    mixed.write_text("a real \ufffd sign\n" * 100, encoding="utf-8")
    assert "U+FFFD" not in load_data(cfg(mixed, "char"), block_size=16, vocab_size=256).description


def test_split_is_fixed(tmp_path: Path) -> None:
    path = write_text(tmp_path)
    a = load_data(cfg(path, "byte", 0.2), block_size=16, vocab_size=256)
    b = load_data(cfg(path, "byte", 0.2), block_size=16, vocab_size=256)
    assert np.array_equal(np.asarray(a.train), np.asarray(b.train))
    assert np.array_equal(np.asarray(a.val), np.asarray(b.val))
    assert len(a.val) == int(len(TEXT) * 0.2)
    assert bytes(np.asarray(a.val).astype(np.uint8)).decode() == TEXT[-len(a.val) :]


def test_folder_sorted_recursive_skipping_binary_and_hidden(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "b.md").write_text("B" * 300)
    (root / "a.txt").write_text("A" * 300)
    (root / "sub" / "c.txt").write_text("C" * 300)
    (root / "blob.txt").write_bytes(b"\x00\x01binary" * 50)  # a NUL byte: skipped
    (root / "image.png").write_bytes(b"\x89PNG" * 50)  # not a text suffix: skipped
    (root / ".git" / "HEAD.txt").write_text("X" * 300)  # hidden folder: skipped
    data = load_data(cfg(root), block_size=16, vocab_size=256)
    text = bytes(joined(data).astype(np.uint8)).decode()
    assert text == "A" * 300 + "\n\n" + "B" * 300 + "\n\n" + "C" * 300
    assert "4 files under" in data.description  # blob.txt is listed, then skipped as binary


def test_default_corpus_is_deterministic_ascii_with_a_small_char_vocab(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = read_default_corpus(max_bytes=200_000)
    assert first == read_default_corpus(max_bytes=200_000)
    assert len(first) == 200_000 and first.isascii()
    assert CharTokenizer.from_text(first).vocab_size < 128
    monkeypatch.setattr(
        datamod, "read_default_corpus", lambda: read_default_corpus(max_bytes=200_000)
    )
    data = load_data(DataConfig(source="default", tokenizer="char"), block_size=64, vocab_size=256)
    assert data.tokenizer.vocab_size < 256
    assert data.tokenizer.decode(joined(data).tolist()) == first
    assert len(data.train) + len(data.val) == len(first)
    assert "default corpus" in data.description


@pytest.mark.parametrize(
    ("make", "source", "tokenizer", "message"),
    [
        (None, "nowhere/at/all.txt", "byte", "no such file or folder"),
        (None, "nowhere/shard_*.bin", "byte", "no files match"),
        ("small", "small.txt", "byte", r"fewer than model.block_size\+2=66"),
        ("text", "input.txt", "pretokenized", "pretokenized needs .bin token files"),
        ("empty", "empty.txt", "byte", "holds no text"),
        ("odd", "odd.bin", "pretokenized", "odd number of bytes"),
        ("emptydir", "emptydir", "byte", "holds no text files"),
    ],
)
def test_unusable_sources_raise_data_error(
    tmp_path: Path, make: str | None, source: str, tokenizer: str, message: str
) -> None:
    if make == "small":
        (tmp_path / source).write_text("x" * 200)  # val split: 20 tokens
    elif make == "text":
        (tmp_path / source).write_text(TEXT)
    elif make == "empty":
        (tmp_path / source).write_text("")
    elif make == "odd":
        (tmp_path / source).write_bytes(b"\x01" * 301)
    elif make == "emptydir":
        (tmp_path / source).mkdir()
    with pytest.raises(DataError, match=message):
        load_data(cfg(tmp_path / source, tokenizer), block_size=64, vocab_size=256)


# --------------------------------------------------------------------------- token files


def test_nanogpt_train_and_val_bin(tmp_path: Path) -> None:
    train = np.arange(1000, dtype=np.uint16) % 500
    val = (np.arange(200, dtype=np.uint16) * 3) % 500
    train.tofile(tmp_path / "train.bin")
    val.tofile(tmp_path / "val.bin")
    data = load_data(cfg(tmp_path / "train.bin", "pretokenized"), block_size=32, vocab_size=512)
    assert np.array_equal(np.asarray(data.train), train)
    assert np.array_equal(np.asarray(data.val), val)
    assert data.vocab_size_needed == 500
    assert data.tokenizer.decode([3, 4]) == "3 4"
    # the folder holding them names the same data
    same = load_data(cfg(tmp_path, "pretokenized"), block_size=32, vocab_size=512)
    assert np.array_equal(np.asarray(same.train), train)
    assert np.array_equal(np.asarray(same.val), val)


def test_single_bin_is_split(tmp_path: Path) -> None:
    np.arange(1000, dtype=np.uint16).tofile(tmp_path / "tokens.bin")
    d = load_data(
        cfg(tmp_path / "tokens.bin", "pretokenized", 0.25), block_size=32, vocab_size=1000
    )
    assert len(d.val) == 250 and int(d.val[0]) == 750


def test_token_id_beyond_vocab_size(tmp_path: Path) -> None:
    (np.arange(2000, dtype=np.uint16)).tofile(tmp_path / "tokens.bin")
    with pytest.raises(
        DataError,
        match=r"id 1999, beyond model.vocab_size=1024; raise model.vocab_size to at least 2000",
    ):
        load_data(cfg(tmp_path / "tokens.bin", "pretokenized"), block_size=32, vocab_size=1024)


def test_llmc_shards_by_glob_with_val_shards(tmp_path: Path) -> None:
    parts = [np.arange(i * 300, i * 300 + 300) % 1000 for i in range(3)]
    write_shard(tmp_path / "fineweb_train_000001.bin", parts[0])
    write_shard(tmp_path / "fineweb_train_000002.bin", parts[1])
    write_shard(tmp_path / "fineweb_val_000000.bin", parts[2])
    data = load_data(cfg(tmp_path / "fineweb_train_*.bin", "gpt2"), block_size=32, vocab_size=50304)
    assert np.array_equal(np.asarray(data.train), np.concatenate(parts[:2]))
    assert np.array_equal(np.asarray(data.val), parts[2])
    assert "2 token file(s)" in data.description
    # the tokenizer the preset names decodes samples when it is available
    byte = load_data(cfg(tmp_path / "fineweb_train_*.bin", "byte"), block_size=32, vocab_size=1024)
    assert byte.tokenizer.name == "byte"


def test_val_shards_found_beside_train_in_a_training_folder(tmp_path: Path) -> None:
    folder = tmp_path / "training_data"
    folder.mkdir()
    write_shard(folder / "fw_train_000.bin", np.full(400, 1))
    write_shard(folder / "fw_val_000.bin", np.full(100, 2))
    d = load_data(cfg(folder / "fw_train_*.bin", "pretokenized"), block_size=32, vocab_size=16)
    assert len(d.train) == 400 and len(d.val) == 100


def test_shard_without_val_is_split(tmp_path: Path) -> None:
    write_shard(tmp_path / "data_000.bin", np.arange(400))
    d = load_data(cfg(tmp_path / "data_*.bin", "pretokenized", 0.5), block_size=32, vocab_size=1024)
    assert len(d.train) == 200 and int(d.val[0]) == 200


def test_unavailable_tiktoken_falls_back_to_ids_for_token_files(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty"))
    write_shard(tmp_path / "s_000.bin", np.arange(400))
    d = load_data(cfg(tmp_path / "s_*.bin", "gpt2"), block_size=32, vocab_size=50304)
    assert d.tokenizer.name == "pretokenized"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {"magic": 20240521},
            r" is not an llm.c token shard \(magic 20240521, expected 20240520\)",
        ),
        ({"version": 7}, r": unsupported shard version 7"),
        ({"count": 900}, r" is truncated or damaged"),
    ],
)
def test_bad_shards_are_clear_errors(tmp_path: Path, bad: dict, message: str) -> None:
    lone = tmp_path / "bad_000.bin"
    write_shard(lone, np.arange(400), **bad)
    with pytest.raises(DataError, match=re.escape(str(lone)) + message):
        datamod.read_shard(lone)
    # alone, with a shard's layout, it is a damaged shard, not a raw file of tokens
    with pytest.raises(DataError, match=message):
        load_data(cfg(lone, "pretokenized"), block_size=32, vocab_size=1024)
    # in a set of shards, the message names the bad one
    (tmp_path / "set").mkdir()
    write_shard(tmp_path / "set" / "s_train_000001.bin", np.arange(400))
    write_shard(tmp_path / "set" / "s_train_000002.bin", np.arange(400), **bad)
    with pytest.raises(DataError, match="s_train_000002.bin" + message):
        load_data(
            cfg(tmp_path / "set" / "s_train_*.bin", "pretokenized"), block_size=32, vocab_size=1024
        )


def test_shard_cut_short_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "only_train_000.bin"
    write_shard(path, np.arange(400))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        load_data(cfg(path, "pretokenized"), block_size=32, vocab_size=1024)


# --------------------------------------------------------------------------- the cache


def _count_encodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = datamod.encode_text

    def counting(tokenizer, text):  # noqa: ANN001, ANN202
        calls.append(len(text))
        return real(tokenizer, text)

    monkeypatch.setattr(datamod, "encode_text", counting)
    return calls


def test_second_load_does_not_tokenize_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_text(tmp_path)
    calls = _count_encodes(monkeypatch)
    first = load_data(cfg(path, "char"), block_size=16, vocab_size=256)
    second = load_data(cfg(path, "char"), block_size=16, vocab_size=256)
    assert len(calls) == 1
    assert np.array_equal(joined(first), joined(second))
    assert second.tokenizer.state_dict() == first.tokenizer.state_dict()
    cached = list((Path(os.environ["GPT_COCKPIT_CACHE"]) / "tokens").iterdir())
    assert sorted(p.suffix for p in cached) == [".json", ".npy"]
    # another tokenizer is another cache entry
    load_data(cfg(path, "byte"), block_size=16, vocab_size=256)
    assert len(calls) == 2
    # a changed source is tokenized afresh
    path.write_text(TEXT + "more text")
    changed = load_data(cfg(path, "char"), block_size=16, vocab_size=256)
    assert len(calls) == 3 and len(joined(changed)) == len(TEXT) + 9


@pytest.mark.parametrize(
    "damage", ["garbage_npy", "truncated_npy", "garbage_meta", "meta_without_tokenizer"]
)
def test_damaged_cache_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    path = write_text(tmp_path)
    calls = _count_encodes(monkeypatch)
    first = load_data(cfg(path, "char"), block_size=16, vocab_size=256)
    (npy,) = cache_dir().glob("*.npy")
    meta = npy.with_suffix(".json")
    if damage == "garbage_npy":
        npy.write_bytes(b"not a numpy file at all")
    elif damage == "truncated_npy":
        npy.write_bytes(npy.read_bytes()[:200])
    elif damage == "garbage_meta":
        meta.write_text("{half")
    else:
        meta.write_text('{"bytes": 3}')
    again = load_data(cfg(path, "char"), block_size=16, vocab_size=256)
    assert len(calls) == 2
    assert np.array_equal(joined(first), joined(again))
    third = load_data(cfg(path, "char"), block_size=16, vocab_size=256)  # the rebuilt entry is used
    assert len(calls) == 2 and np.array_equal(joined(third), joined(first))


# --------------------------------------------------------------------------- sampler

TOKENS = np.arange(5000, dtype=np.uint16)


def test_x_and_y_are_shifted_by_one() -> None:
    x, y = BatchSampler(TOKENS, block_size=16, seed=1).sample(8)
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(y, x + 1)  # the tokens are consecutive ints, so y is x + 1
    assert int(y.max()) < len(TOKENS)


def test_same_seed_same_batches() -> None:
    a, b, c = (BatchSampler(TOKENS, 16, seed) for seed in (7, 7, 8))
    for _ in range(3):
        xa, _ = a.sample(4)
        xb, _ = b.sample(4)
        xc, _ = c.sample(4)
        assert torch.equal(xa, xb)
        assert not torch.equal(xa, xc)


def test_state_dict_resumes_the_same_stream() -> None:
    sampler = BatchSampler(TOKENS, 16, seed=3)
    sampler.sample(4)
    state = sampler.state_dict()
    expected = [sampler.sample(4)[0] for _ in range(3)]
    resumed = BatchSampler(TOKENS, 16, seed=999)
    resumed.load_state_dict(state)
    assert all(torch.equal(resumed.sample(4)[0], want) for want in expected)


def test_torch_save_round_trip_of_state(tmp_path: Path) -> None:
    s = BatchSampler(TOKENS, 16, 3)
    torch.save(s.state_dict(), tmp_path / "s.pt")
    expected = s.sample(2)[0]
    resumed = BatchSampler(TOKENS, 16, 0)
    resumed.load_state_dict(torch.load(tmp_path / "s.pt"))
    assert torch.equal(resumed.sample(2)[0], expected)


def test_skip_uses_the_generator_like_sample() -> None:
    drawn, skipped = BatchSampler(TOKENS, 16, seed=5), BatchSampler(TOKENS, 16, seed=5)
    drawn.sample(6)
    skipped.skip(6)
    assert torch.equal(drawn.sample(4)[0], skipped.sample(4)[0])


def test_one_draw_split_into_micro_batches_is_the_same_data() -> None:
    a, b = BatchSampler(TOKENS, 16, 11), BatchSampler(TOKENS, 16, 11)
    big, _ = a.sample(8)
    halves = torch.cat(b.sample(8)[0].split(4))
    assert torch.equal(big, halves)


def test_memmap_tokens(tmp_path: Path) -> None:
    TOKENS.tofile(tmp_path / "t.bin")
    mm = np.memmap(tmp_path / "t.bin", dtype=np.uint16, mode="r")
    x, _ = BatchSampler(mm, 16, 0).sample(3)
    assert x.shape == (3, 16)


def test_sampler_needs_more_tokens_than_a_block() -> None:
    with pytest.raises(DataError, match="too few"):
        BatchSampler(np.arange(17, dtype=np.uint16), block_size=16, seed=0)
    x, y = BatchSampler(np.arange(18, dtype=np.uint16), block_size=16, seed=0).sample(3)
    # one window fits
    assert torch.equal(x[0], torch.arange(16)) and torch.equal(y[0], torch.arange(1, 17))
