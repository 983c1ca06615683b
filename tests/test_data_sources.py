"""Data sources, the token cache, the fixed split and the resumable sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import cockpit.train.data as datamod
from cockpit.corpus import read_default_corpus
from cockpit.presets import DataConfig
from cockpit.tokenizers import CharTokenizer
from cockpit.train.data import SHARD_MAGIC, BatchSampler, DataError, cache_dir, load_data

TEXT = "the quick brown fox jumps over the lazy dog. " * 40  # 1,800 characters


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
    with open(path, "wb") as handle:
        handle.write(header.tobytes())
        handle.write(np.asarray(tokens, dtype=np.uint16).tobytes())


def joined(data: datamod.TokenData) -> np.ndarray:
    return np.concatenate([np.asarray(data.train), np.asarray(data.val)])


# --------------------------------------------------------------------------- text


def test_text_file_bytes_and_the_tail_split(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_text(TEXT + "héllo", encoding="utf-8")
    data = load_data(cfg(path), block_size=16, vocab_size=256)
    raw = (TEXT + "héllo").encode("utf-8")
    assert joined(data).tobytes() == np.frombuffer(raw, dtype=np.uint8).astype(np.uint16).tobytes()
    assert len(data.val) == int(len(raw) * 0.1)
    assert bytes(np.asarray(data.val).astype(np.uint8)) == raw[-len(data.val) :]  # val is the tail
    assert data.vocab_size_needed == 256
    assert data.val_bytes == len(data.val)


def test_char_tokenizer_text_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_text(TEXT, encoding="utf-8")
    data = load_data(cfg(path, "char"), block_size=16, vocab_size=256)
    assert data.tokenizer.vocab_size == len(set(TEXT))
    assert data.tokenizer.decode(joined(data).tolist()) == TEXT


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


def test_llmc_shards_by_glob_with_val_shards(tmp_path: Path) -> None:
    parts = [np.arange(i * 300, i * 300 + 300) % 1000 for i in range(3)]
    write_shard(tmp_path / "fineweb_train_000001.bin", parts[0])
    write_shard(tmp_path / "fineweb_train_000002.bin", parts[1])
    write_shard(tmp_path / "fineweb_val_000000.bin", parts[2])
    data = load_data(cfg(tmp_path / "fineweb_train_*.bin", "gpt2"), block_size=32, vocab_size=50304)
    assert np.array_equal(np.asarray(data.train), np.concatenate(parts[:2]))
    assert np.array_equal(np.asarray(data.val), parts[2])
    assert "2 token file(s)" in data.description


def _shard_in_set(tmp_path: Path, **bad: int) -> Path:
    write_shard(tmp_path / "s_train_000001.bin", np.arange(400))
    write_shard(tmp_path / "s_train_000002.bin", np.arange(400), **bad)
    return tmp_path / "s_train_*.bin"


def test_shard_with_a_bad_magic_is_a_clear_error(tmp_path: Path) -> None:
    source = _shard_in_set(tmp_path, magic=20240521)
    with pytest.raises(
        DataError,
        match=r"s_train_000002.bin is not an llm.c token shard \(magic 20240521, expected 20240520\)",
    ):
        load_data(cfg(source, "pretokenized"), block_size=32, vocab_size=1024)


def test_lone_shard_with_a_bad_magic_is_not_read_as_raw_tokens(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    write_shard(path, np.arange(400), magic=1234)
    with pytest.raises(DataError, match="not an llm.c token shard"):
        load_data(cfg(path, "pretokenized"), block_size=32, vocab_size=1024)


@pytest.mark.parametrize(
    ("bad", "message"),
    [({"count": 500}, "truncated or damaged"), ({"version": 2}, "unsupported shard version 2")],
)
def test_truncated_or_unknown_version_shards(tmp_path: Path, bad: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_data(
            cfg(_shard_in_set(tmp_path, **bad), "pretokenized"), block_size=32, vocab_size=1024
        )


def test_shard_cut_short_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "only_train_000.bin"
    write_shard(path, np.arange(400))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        load_data(cfg(path, "pretokenized"), block_size=32, vocab_size=1024)


def test_token_id_beyond_vocab_size(tmp_path: Path) -> None:
    (np.arange(2000, dtype=np.uint16)).tofile(tmp_path / "tokens.bin")
    with pytest.raises(
        DataError,
        match=r"id 1999, beyond model.vocab_size=1024; raise model.vocab_size to at least 2000",
    ):
        load_data(cfg(tmp_path / "tokens.bin", "pretokenized"), block_size=32, vocab_size=1024)


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
    path = tmp_path / "input.txt"
    path.write_text(TEXT)
    calls = _count_encodes(monkeypatch)
    first = load_data(cfg(path, "char"), block_size=16, vocab_size=256)
    second = load_data(cfg(path, "char"), block_size=16, vocab_size=256)
    assert len(calls) == 1
    assert np.array_equal(joined(first), joined(second))
    assert second.tokenizer.state_dict() == first.tokenizer.state_dict()
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
    path = tmp_path / "input.txt"
    path.write_text(TEXT)
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


def test_split_is_fixed(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_text(TEXT)
    a = load_data(cfg(path, "byte", 0.2), block_size=16, vocab_size=256)
    b = load_data(cfg(path, "byte", 0.2), block_size=16, vocab_size=256)
    assert np.array_equal(np.asarray(a.train), np.asarray(b.train))
    assert np.array_equal(np.asarray(a.val), np.asarray(b.val))
    assert len(a.val) == int(len(TEXT) * 0.2)
    assert bytes(np.asarray(a.val).astype(np.uint8)).decode() == TEXT[-len(a.val) :]


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
    assert "default corpus" in data.description


# --------------------------------------------------------------------------- sampler

TOKENS = np.arange(4000, dtype=np.uint16)


def test_x_and_y_are_shifted_by_one() -> None:
    x, y = BatchSampler(TOKENS, block_size=16, seed=1).sample(5)
    assert x.shape == y.shape == (5, 16) and x.dtype == torch.int64
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


def test_skip_uses_the_generator_like_sample() -> None:
    drawn, skipped = BatchSampler(TOKENS, 16, seed=5), BatchSampler(TOKENS, 16, seed=5)
    drawn.sample(6)
    skipped.skip(6)
    assert torch.equal(drawn.sample(4)[0], skipped.sample(4)[0])


def test_sampler_needs_more_tokens_than_a_block() -> None:
    with pytest.raises(DataError, match="too few"):
        BatchSampler(np.arange(17, dtype=np.uint16), block_size=16, seed=0)
    x, y = BatchSampler(np.arange(18, dtype=np.uint16), block_size=16, seed=0).sample(3)
    assert torch.equal(x[0], torch.arange(16)) and torch.equal(
        y[0], torch.arange(1, 17)
    )  # one window fits
