"""Tokenizers: round trips, saved state, and tiktoken failing fast without its cached files."""

from __future__ import annotations

import hashlib
import json
import socket

import pytest

from cockpit.tokenizers import (
    ByteTokenizer,
    CharTokenizer,
    TokenizerUnavailable,
    get_tokenizer,
    missing_tiktoken_files,
    tiktoken_cache_dir,
    tiktoken_files,
    tokenizer_from_state,
)


def test_byte_round_trip_and_replacement() -> None:
    tok = get_tokenizer("byte")
    text = "héllo ✓\n"
    ids = tok.encode(text)
    assert tok.vocab_size == 256 and ids == list(text.encode("utf-8"))
    assert tok.decode(ids) == text
    assert tok.decode([0xE2, 0x9C]) == "\ufffd"  # a cut multi-byte character decodes, replaced
    assert json.loads(json.dumps(tok.state_dict())) == {"name": "byte"}


def test_char_vocab_is_sorted_and_state_restores_it() -> None:
    tok = get_tokenizer("char", corpus_text="banana bread\n")
    assert tok.chars == sorted(set("banana bread\n")) and tok.vocab_size == 8
    ids = tok.encode("bread")
    assert tok.decode(ids) == "bread"
    state = json.loads(json.dumps(tok.state_dict()))  # JSON-safe
    again = tokenizer_from_state(state)
    assert isinstance(again, CharTokenizer) and again.encode("bread") == ids
    assert tok.decode([99]) == "\ufffd"
    with pytest.raises(ValueError, match="'z'"):
        tok.encode("z")


def test_char_needs_text_or_state_and_unknown_names() -> None:
    with pytest.raises(ValueError, match="corpus text"):
        get_tokenizer("char")
    with pytest.raises(ValueError, match="unknown tokenizer"):
        get_tokenizer("sentencepiece")


def test_pretokenized_decodes_ids() -> None:
    tok = get_tokenizer("pretokenized", vocab_size=50304)
    assert tok.vocab_size == 50304 and tok.decode([1, 22, 333]) == "1 22 333"
    assert tokenizer_from_state(tok.state_dict()).vocab_size == 50304
    with pytest.raises(ValueError):
        tok.encode("text")


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


@pytest.mark.parametrize("name", ["gpt2", "r50k_base", "p50k_base", "cl100k_base", "o200k_base"])
def test_tiktoken_without_cached_files_fails_fast(monkeypatch, tmp_path, name) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))

    def no_network(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with pytest.raises(TokenizerUnavailable) as info:
        get_tokenizer(name)
    message = str(info.value)
    assert str(tmp_path) in message
    assert f"tiktoken.get_encoding('{name}')" in message
    assert "TIKTOKEN_CACHE_DIR" in message and "--set data.tokenizer=byte" in message


def test_cached_files_count_as_present(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    urls = tiktoken_files("gpt2")
    (tmp_path / hashlib.sha1(urls[0].encode()).hexdigest()).write_text("x")
    assert missing_tiktoken_files("gpt2") == urls[1:]
    (tmp_path / hashlib.sha1(urls[1].encode()).hexdigest()).write_text("x")
    assert missing_tiktoken_files("gpt2") == []


def test_byte_tokenizer_is_the_plain_class() -> None:
    assert isinstance(get_tokenizer("byte"), ByteTokenizer)
