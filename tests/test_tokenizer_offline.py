"""Tokenizers work offline: byte and char round trips, and tiktoken failing fast with the fix."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from pathlib import Path

import pytest

from cockpit.tokenizers import (
    ByteTokenizer,
    CharTokenizer,
    IdTokenizer,
    TiktokenTokenizer,
    TokenizerUnavailable,
    get_tokenizer,
    tiktoken_files,
    tokenizer_from_state,
)

UNICODE = "héllo wörld — 日本語 🙂 \n\ttabs"


def test_byte_round_trip_including_unicode() -> None:
    tok = get_tokenizer("byte")
    ids = tok.encode(UNICODE)
    assert ids == list(UNICODE.encode("utf-8"))
    assert all(0 <= i < 256 for i in ids) and tok.vocab_size == 256
    assert tok.decode(ids) == UNICODE
    assert tok.decode(ids[:2]) == "h\ufffd"  # half of "é": replaced, never an exception
    assert tokenizer_from_state(tok.state_dict()).encode(UNICODE) == ids


def test_char_round_trip_and_state_restore() -> None:
    tok = get_tokenizer("char", corpus_text=UNICODE)
    assert tok.chars == sorted(set(UNICODE))
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
    assert (
        tok.decode([0, 99, -1]) == "a\ufffd\ufffd"
    )  # ids outside the vocabulary never crash decoding


def test_char_needs_text_or_state_and_names_are_checked() -> None:
    with pytest.raises(ValueError, match="corpus text or a saved state"):
        get_tokenizer("char")
    with pytest.raises(ValueError, match="unknown tokenizer 'sentencepiece'"):
        get_tokenizer("sentencepiece")


def test_pretokenized_state_keeps_its_vocab() -> None:
    tok = get_tokenizer("pretokenized", vocab_size=50304)
    assert isinstance(tok, IdTokenizer) and tok.vocab_size == 50304
    assert tokenizer_from_state(tok.state_dict()).vocab_size == 50304
    with pytest.raises(ValueError):
        tok.encode("text")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Any connection attempt is recorded and refused."""
    attempts: list[object] = []

    def refuse(self, address):  # noqa: ANN001, ANN202
        attempts.append(address)
        raise OSError("network disabled in tests")

    def no_dns(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        attempts.append(args)
        raise OSError("DNS disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    return attempts


@pytest.mark.parametrize("name", ["gpt2", "cl100k_base", "o200k_base"])
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
    assert "TIKTOKEN_CACHE_DIR" in message
    assert "data.tokenizer=byte" in message
    assert str(cache) in message
    assert no_network == []


def test_tiktoken_with_a_cache_holding_the_blobs_proceeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list
) -> None:
    import tiktoken

    cache = tmp_path / "cache"
    cache.mkdir()
    urls = tiktoken_files("gpt2")
    assert len(urls) == 2
    for url in urls:  # tiktoken names each cached blob by the sha1 of its URL
        (cache / hashlib.sha1(url.encode()).hexdigest()).write_text("fake")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))

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
    assert (
        tok.decode([97, 60000, -3, 98]) == "ab"
    )  # ids beyond the encoding (padded vocab) are dropped
    assert no_network == []


def test_one_missing_blob_is_still_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    first, second = tiktoken_files("gpt2")
    (cache / hashlib.sha1(first.encode()).hexdigest()).write_text("fake")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    with pytest.raises(TokenizerUnavailable, match=r"1 file\(s\) missing"):
        get_tokenizer("gpt2")


def test_byte_tokenizer_needs_nothing() -> None:
    assert isinstance(get_tokenizer("byte"), ByteTokenizer)
