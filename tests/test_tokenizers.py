"""Tokenizers work offline: byte, char and id round trips and saved state, and tiktoken failing
fast, with the fix, when its cached files are missing."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from pathlib import Path

import pytest

from cockpit.text.tokenizers import (
    ByteTokenizer,
    CharTokenizer,
    IdTokenizer,
    TiktokenTokenizer,
    TokenizerUnavailable,
    get_tokenizer,
    missing_tiktoken_files,
    tiktoken_cache_dir,
    tiktoken_files,
    tokenizer_from_state,
)

UNICODE = "héllo wörld — 日本語 🙂 ✓\n\ttabs"
TIKTOKEN_NAMES = ["gpt2", "r50k_base", "p50k_base", "cl100k_base", "o200k_base"]


def cache_blob(cache: Path, url: str) -> None:
    """tiktoken names each cached blob by the sha1 of its URL."""
    (cache / hashlib.sha1(url.encode()).hexdigest()).write_text("fake")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Any connection attempt is recorded and refused."""
    attempts: list[object] = []

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        attempts.append(args)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


# --------------------------------------------------------------------------- byte, char, ids


def test_byte_round_trip_including_unicode() -> None:
    tok = get_tokenizer("byte")
    assert isinstance(tok, ByteTokenizer)  # needs nothing: no files, no corpus
    ids = tok.encode(UNICODE)
    assert ids == list(UNICODE.encode("utf-8"))
    assert all(0 <= i < 256 for i in ids) and tok.vocab_size == 256
    assert tok.decode(ids) == UNICODE
    # a cut multi-byte character decodes, replaced, never an exception
    assert tok.decode(ids[:2]) == "h\ufffd"  # half of "é"
    assert tok.decode([0xE2, 0x9C]) == "\ufffd"  # two thirds of "✓"
    assert json.loads(json.dumps(tok.state_dict())) == {"name": "byte"}
    assert tokenizer_from_state(tok.state_dict()).encode(UNICODE) == ids


def test_char_vocab_is_sorted_and_state_restores_it() -> None:
    tok = get_tokenizer("char", corpus_text=UNICODE)
    assert tok.chars == sorted(set(UNICODE)) and tok.vocab_size == len(set(UNICODE))
    ids = tok.encode(UNICODE)
    assert tok.decode(ids) == UNICODE
    state = json.loads(json.dumps(tok.state_dict()))  # travels as JSON in the run directory
    restored = tokenizer_from_state(state)
    assert isinstance(restored, CharTokenizer)
    assert restored.chars == tok.chars and restored.encode(UNICODE) == ids
    # a saved state wins over the corpus text (the vocabulary of the run, not of new text)
    assert get_tokenizer("char", corpus_text="zzz", state=state).vocab_size == tok.vocab_size


def test_char_unknown_character_raises_value_error() -> None:
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match="'d' is not in this char vocabulary"):
        tok.encode("abd")
    # ids outside the vocabulary never crash decoding
    assert tok.decode([0, 99, -1]) == "a\ufffd\ufffd"


def test_char_needs_text_or_state_and_names_are_checked() -> None:
    with pytest.raises(ValueError, match="corpus text or a saved state"):
        get_tokenizer("char")
    with pytest.raises(ValueError, match="unknown tokenizer 'wordpiece'"):
        get_tokenizer("wordpiece")
    with pytest.raises(ValueError, match="saved state's model_file"):
        get_tokenizer("sentencepiece")  # only token shards' model names one (data.tokenizer_model)


def test_pretokenized_decodes_ids_and_state_keeps_its_vocab() -> None:
    tok = get_tokenizer("pretokenized", vocab_size=50304)
    assert isinstance(tok, IdTokenizer) and tok.vocab_size == 50304
    assert tok.decode([1, 22, 333]) == "1 22 333"
    assert tokenizer_from_state(tok.state_dict()).vocab_size == 50304
    with pytest.raises(ValueError):
        tok.encode("text")


# --------------------------------------------------------------------------- tiktoken


def test_tiktoken_file_lists_come_from_the_package() -> None:
    assert [u.rsplit("/", 1)[-1] for u in tiktoken_files("gpt2")] == ["vocab.bpe", "encoder.json"]
    for name in ("r50k_base", "p50k_base", "cl100k_base", "o200k_base"):
        assert tiktoken_files(name) and all(u.startswith("https://") for u in tiktoken_files(name))


def test_tiktoken_cache_dir_follows_tiktoken(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", str(tmp_path / "gym"))
    assert tiktoken_cache_dir() == tmp_path / "gym"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tt"))
    assert tiktoken_cache_dir() == tmp_path / "tt"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken: caching disabled, every use downloads
    assert tiktoken_cache_dir() is None
    assert missing_tiktoken_files("cl100k_base") == tiktoken_files("cl100k_base")


@pytest.mark.parametrize("name", TIKTOKEN_NAMES)
def test_tiktoken_with_an_empty_cache_fails_fast_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list, name: str
) -> None:
    import tiktoken

    cache = tmp_path / "empty-cache"
    cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.setattr(
        tiktoken, "get_encoding", lambda n: pytest.fail("tiktoken must not be asked to download")
    )
    start = time.perf_counter()
    with pytest.raises(TokenizerUnavailable) as info:
        get_tokenizer(name)
    assert time.perf_counter() - start < 2.0
    message = str(info.value)
    assert str(cache) in message
    assert f"tiktoken.get_encoding('{name}')" in message
    assert "TIKTOKEN_CACHE_DIR" in message and "--set data.tokenizer=byte" in message
    assert no_network == []


def test_a_missing_blob_is_counted_and_still_unavailable(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    urls = tiktoken_files("gpt2")
    cache_blob(tmp_path, urls[0])
    assert missing_tiktoken_files("gpt2") == urls[1:]
    with pytest.raises(TokenizerUnavailable, match=r"1 file\(s\) missing"):
        get_tokenizer("gpt2")
    cache_blob(tmp_path, urls[1])
    assert missing_tiktoken_files("gpt2") == []


def test_tiktoken_with_a_cache_holding_the_blobs_proceeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list
) -> None:
    import tiktoken

    urls = tiktoken_files("gpt2")
    assert len(urls) == 2
    for url in urls:
        cache_blob(tmp_path, url)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))

    class FakeEncoding:
        n_vocab = 50257
        eot_token = 50256

        def encode_ordinary(self, text: str) -> list[int]:
            return [ord(c) for c in text]

        def decode(self, ids: list[int]) -> str:
            return "".join(chr(i) for i in ids)

    asked: list[str] = []
    monkeypatch.setattr(tiktoken, "get_encoding", lambda n: (asked.append(n), FakeEncoding())[1])
    tok = get_tokenizer("gpt2")
    assert isinstance(tok, TiktokenTokenizer) and asked == ["gpt2"]
    assert tok.vocab_size == 50257 and tok.eot == 50256
    assert tok.decode(tok.encode("abc")) == "abc"
    # ids beyond the encoding (a padded vocab) are dropped
    assert tok.decode([97, 60000, -3, 98]) == "ab"
    assert no_network == []
