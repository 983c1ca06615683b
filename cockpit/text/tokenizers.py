"""Tokenizers: bytes, characters of the corpus, tiktoken's BPE encodings, SentencePiece models.

No torch here. Each tokenizer has `name`, `vocab_size`, `encode`, `decode` and a
JSON-safe `state_dict()`, so a run's samples can be decoded later from its
checkpoint or run directory (the char vocabulary travels with the run).

tiktoken fetches its BPE files on first use and caches them. Without network that
fetch fails (or waits on DNS), so before calling tiktoken we check that its cache
already holds the files and otherwise raise TokenizerUnavailable, which says what
is missing and how to fix it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol


class TokenizerUnavailable(RuntimeError):
    """A tokenizer that cannot be loaded here, with the fix in the message."""


class Tokenizer(Protocol):
    name: str
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def state_dict(self) -> dict[str, Any]: ...


class ByteTokenizer:
    """UTF-8 bytes: 256 tokens, works on any text, no download."""

    name = "byte"
    vocab_size = 256
    eot: int | None = None

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_bytes(self, data: bytes) -> bytes:
        return data

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) & 0xFF for i in ids).decode("utf-8", errors="replace")

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name}


class CharTokenizer:
    """One token per distinct character of the corpus, in sorted order (nanoGPT's shakespeare_char)."""

    name = "char"
    eot: int | None = None

    def __init__(self, chars: Sequence[str]) -> None:
        self.chars = list(chars)
        self.vocab_size = len(self.chars)
        self._index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    def encode(self, text: str) -> list[int]:
        index = self._index
        try:
            return [index[c] for c in text]
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in this char vocabulary") from None

    def decode(self, ids: Sequence[int]) -> str:
        chars = self.chars
        return "".join(chars[i] if 0 <= i < len(chars) else "\ufffd" for i in (int(j) for j in ids))

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "chars": "".join(self.chars)}


class TiktokenTokenizer:
    """A tiktoken BPE encoding (ordinary text: special tokens are not parsed)."""

    def __init__(self, name: str) -> None:
        import tiktoken

        self.name = name
        self._enc = tiktoken.get_encoding(name)
        self.vocab_size = self._enc.n_vocab
        self.eot = self._enc.eot_token

    def encode(self, text: str) -> list[int]:
        return self._enc.encode_ordinary(text)

    def decode(self, ids: Sequence[int]) -> str:
        n = self.vocab_size
        return self._enc.decode([int(i) for i in ids if 0 <= int(i) < n])

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name}


class IdTokenizer:
    """Pre-tokenized data: no encoder; decode shows the ids."""

    name = "pretokenized"
    eot: int | None = None

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size

    def encode(self, text: str) -> list[int]:
        raise ValueError("pre-tokenized data has no text encoder")

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(str(int(i)) for i in ids)

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "vocab_size": self.vocab_size}


SENTENCEPIECE_INSTALL = "pip install 'gpt-cockpit[golf]' (or: pip install sentencepiece)"


class SentencePieceTokenizer:
    """A SentencePiece .model (data.tokenizer_model): the text behind token shards' ids.

    decode keeps the space a leading '\u2581' stands for, so a continuation reads on
    from its prompt as with the other tokenizers; ids outside the model's pieces are dropped.
    """

    name = "sentencepiece"
    eot: int | None = None

    def __init__(self, model_file: str | os.PathLike[str]) -> None:
        try:
            import sentencepiece as spm
        except ImportError:
            raise TokenizerUnavailable(
                f"decoding token ids to text needs the sentencepiece package: {SENTENCEPIECE_INSTALL}"
            ) from None
        self.model_file = os.path.abspath(model_file)
        if not os.path.isfile(self.model_file):
            raise TokenizerUnavailable(f"the SentencePiece model {self.model_file} is not there")
        try:
            self._sp = spm.SentencePieceProcessor(model_file=self.model_file)
        except (OSError, RuntimeError) as exc:
            raise TokenizerUnavailable(
                f"{self.model_file} is not a SentencePiece model ({str(exc).strip()[:160]})"
            ) from None
        self.vocab_size = int(self._sp.vocab_size())

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        n = self.vocab_size
        kept = [int(i) for i in ids if 0 <= int(i) < n]
        text: str = self._sp.decode(kept)
        if kept and self._sp.id_to_piece(kept[0]).startswith("\u2581") and not text.startswith(" "):
            text = " " + text  # SentencePiece drops the first piece's space
        return text

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "model_file": self.model_file, "vocab_size": self.vocab_size}


def shard_tokenizer(model_file: str, vocab_size: int) -> tuple[Tokenizer, str | None]:
    """The tokenizer of token shards: `model_file`'s SentencePiece pieces when it loads here,
    else the ids themselves and one line saying why (None when there is nothing to say)."""
    if not model_file:
        return IdTokenizer(vocab_size), None
    try:
        return SentencePieceTokenizer(model_file), None
    except TokenizerUnavailable as exc:
        return IdTokenizer(vocab_size), f"samples show token ids: {exc}"


TIKTOKEN_ENCODINGS = ("gpt2", "r50k_base", "p50k_base", "cl100k_base", "o200k_base")


def tiktoken_cache_dir() -> Path | None:
    """Where tiktoken caches BPE files (None when caching is disabled)."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        value = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        value = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        value = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return Path(value) if value else None


def tiktoken_files(name: str) -> list[str]:
    """The blob paths tiktoken reads for an encoding, taken from tiktoken's own registry module."""
    try:
        import tiktoken_ext.openai_public as registry
    except ImportError:
        return []
    source = Path(registry.__file__).read_text(encoding="utf-8")
    match = re.search(rf"^def {re.escape(name)}\(\):\n(.*?)(?=^def |\Z)", source, re.S | re.M)
    if not match:
        return []
    return re.findall(r"\"(https?://[^\"]+)\"", match.group(1))


def missing_tiktoken_files(name: str) -> list[str]:
    """Blob paths of `name` that are not in tiktoken's cache (empty when all are there)."""
    cache = tiktoken_cache_dir()
    files = tiktoken_files(name)
    if cache is None:
        return files  # caching disabled: every use downloads
    return [f for f in files if not (cache / hashlib.sha1(f.encode()).hexdigest()).is_file()]


def _unavailable_message(name: str, missing: list[str]) -> str:
    cache = tiktoken_cache_dir()
    return (
        f"the {name} tokenizer needs tiktoken's BPE files, which are not cached on this machine "
        f"({len(missing)} file(s) missing from {cache}) and cannot be downloaded without network. "
        f"Fix: on a machine with network run `python -c \"import tiktoken; tiktoken.get_encoding('{name}')\"` "
        f"and copy its cache folder here with TIKTOKEN_CACHE_DIR pointing at it, "
        f"or train with `--set data.tokenizer=byte` (or char), which need no download."
    )


def get_tokenizer(
    name: str,
    *,
    corpus_text: str | None = None,
    state: dict[str, Any] | None = None,
    vocab_size: int = 0,
) -> Tokenizer:
    """The tokenizer called `name`; char needs `corpus_text` or a saved `state`."""
    if name == "byte":
        return ByteTokenizer()
    if name == "char":
        if state and "chars" in state:
            return CharTokenizer(list(state["chars"]))
        if corpus_text is None:
            raise ValueError("the char tokenizer is built from the corpus text or a saved state")
        return CharTokenizer.from_text(corpus_text)
    if name == "pretokenized":
        return IdTokenizer(int((state or {}).get("vocab_size", vocab_size)))
    if name == "sentencepiece":  # token shards' model (data.tokenizer_model), from a saved state
        model_file = (state or {}).get("model_file")
        if not model_file:
            raise ValueError(
                "the sentencepiece tokenizer is rebuilt from a saved state's model_file"
            )
        return SentencePieceTokenizer(str(model_file))
    if name in TIKTOKEN_ENCODINGS:
        try:
            import tiktoken  # noqa: F401
        except ImportError:
            raise TokenizerUnavailable(
                f"the {name} tokenizer needs the tiktoken package: pip install tiktoken"
            ) from None
        missing = missing_tiktoken_files(name)
        if missing:
            raise TokenizerUnavailable(_unavailable_message(name, missing))
        return TiktokenTokenizer(name)
    raise ValueError(f"unknown tokenizer {name!r}")


def tokenizer_from_state(state: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from `state_dict()` output (for decoding a finished run's samples)."""
    return get_tokenizer(str(state.get("name", "byte")), state=state)
