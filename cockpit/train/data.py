"""Training data: sources, tokenization with a cache, a fixed split, and a resumable sampler.

Sources (data.source):
- "default": the embedded corpus (cockpit.text.corpus)
- a text file, or a folder of text files (recursive, sorted, binary files skipped)
- nanoGPT-style uint16 token files: `train.bin` (with `val.bin` beside it as the
  validation split), or any single `.bin` (split by val_fraction)
- llm.c / modded-nanogpt shards: 256 int32 header (magic 20240520, version 1,
  token count), then uint16 tokens; a glob like `fineweb_train_*.bin`, with the
  matching `*val*` shards as the validation split when they exist

Text is tokenized once and cached under $GPT_COCKPIT_CACHE (or the platform cache
folder) keyed by the source files' paths, sizes and mtimes and the tokenizer, so a
second run starts fast. The split is the last val_fraction of the tokens.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cockpit import __version__
from cockpit.common.fsutil import atomic_write_text, atomic_write_with
from cockpit.plan.presets import DataConfig
from cockpit.text.corpus import corpus_fingerprint, read_default_corpus
from cockpit.text.tokenizers import (
    ByteTokenizer,
    CharTokenizer,
    IdTokenizer,
    Tokenizer,
    TokenizerUnavailable,
    get_tokenizer,
    shard_tokenizer,
)

SHARD_MAGIC = 20240520  # llm.c / modded-nanogpt .bin shard header[0]
SHARD_VERSION = 1
SHARD_HEADER_INTS = 256
TEXT_SUFFIXES = {
    ".txt",
    ".md",
    ".rst",
    ".py",
    ".json",
    ".jsonl",
    ".csv",
    ".tsv",
    ".html",
    ".htm",
    ".xml",
    ".tex",
    ".c",
    ".h",
    ".js",
    ".ts",
    ".go",
    ".rs",
    ".java",
    ".yaml",
    ".yml",
    ".toml",
    ".ini",
    ".cfg",
    ".text",
    "",
}


class DataError(RuntimeError):
    """Data that cannot be used, with a one-line reason for a person."""


@dataclass
class TokenData:
    """Tokens of the train and validation splits, and how to turn tokens back into text."""

    train: np.ndarray
    val: np.ndarray
    tokenizer: Tokenizer | None
    vocab_size_needed: int  # the model's vocab_size must be at least this
    description: str  # one line for the start event
    val_bytes: int | None = None  # UTF-8 bytes of the validation text, for bits per byte


def cache_dir() -> Path:
    """Where tokenized data is cached."""
    env = os.environ.get("GPT_COCKPIT_CACHE")
    if env:
        return Path(env) / "tokens"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("gpt-cockpit")) / "tokens"


# --------------------------------------------------------------------------- token files


def read_shard(path: Path) -> np.ndarray:
    """Tokens of an llm.c shard (memory-mapped), validating its header."""
    try:
        header = np.fromfile(path, dtype=np.int32, count=SHARD_HEADER_INTS)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if header.size < SHARD_HEADER_INTS or int(header[0]) != SHARD_MAGIC:
        raise DataError(
            f"{path} is not an llm.c token shard (magic {header[0] if header.size else 'missing'}, expected {SHARD_MAGIC})"
        )
    if int(header[1]) != SHARD_VERSION:
        raise DataError(
            f"{path}: unsupported shard version {int(header[1])} (expected {SHARD_VERSION})"
        )
    count = int(header[2])
    expected = SHARD_HEADER_INTS * 4 + count * 2
    size = path.stat().st_size
    if size != expected:
        raise DataError(
            f"{path} is truncated or damaged: {size} bytes, the header promises {expected}"
        )
    return np.memmap(path, dtype=np.uint16, mode="r", offset=SHARD_HEADER_INTS * 4, shape=(count,))


def is_shard(path: Path) -> bool:
    """True if the file starts with the llm.c shard magic."""
    try:
        head = np.fromfile(path, dtype=np.int32, count=1)
    except OSError:
        return False
    return head.size == 1 and int(head[0]) == SHARD_MAGIC


def read_token_file(path: Path) -> np.ndarray:
    """A shard, or a nanoGPT raw uint16 .bin file (memory-mapped)."""
    if is_shard(path):
        return read_shard(path)
    size = path.stat().st_size
    head = np.fromfile(path, dtype=np.int32, count=3)
    if (
        head.size == 3
        and int(head[1]) == SHARD_VERSION
        and size == SHARD_HEADER_INTS * 4 + int(head[2]) * 2
    ):
        # a shard's header layout and length with another magic: damaged, not raw tokens
        return read_shard(path)
    if size % 2:
        raise DataError(f"{path} has an odd number of bytes: not a file of uint16 tokens")
    if size == 0:
        raise DataError(f"{path} is empty")
    return np.memmap(path, dtype=np.uint16, mode="r")


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


# --------------------------------------------------------------------------- text


def _looks_binary(data: bytes) -> bool:
    return b"\x00" in data[:8192]


def text_files(folder: Path) -> list[Path]:
    """Text files under `folder`, recursively, sorted; hidden folders skipped."""
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).parts
        if any(part.startswith(".") for part in rel) or not path.is_file():
            continue
        if path.suffix.lower() in TEXT_SUFFIXES:
            out.append(path)
    return out


def read_text_sources(paths: list[Path], replaced: list[int] | None = None) -> str:
    """Concatenate text files (UTF-8, undecodable bytes replaced), skipping binary ones.

    `replaced[0]` gets how many bytes were not UTF-8 (a Latin-1 file's accents): each became
    U+FFFD, which the run's data line says rather than training on them without a word.
    """
    parts = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
        if _looks_binary(data):
            continue
        text = data.decode("utf-8", errors="replace")
        if replaced is not None and "\ufffd" in text:
            # one U+FFFD per undecodable byte; a U+FFFD the file itself holds is not counted
            replaced[0] += text.count("\ufffd") - data.count("\ufffd".encode())
        parts.append(text)
    return "\n\n".join(parts)


def encode_text(tokenizer: Tokenizer, text: str) -> np.ndarray:
    """Tokenize `text` into the smallest unsigned dtype that holds the vocabulary (fast paths for byte and char)."""
    dtype = np.uint16 if tokenizer.vocab_size <= 65536 else np.uint32
    if isinstance(tokenizer, ByteTokenizer):
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(dtype)
    if isinstance(tokenizer, CharTokenizer):
        codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        table = np.array([ord(c) for c in tokenizer.chars], dtype=np.uint32)  # sorted, as chars are
        ids = np.searchsorted(table, codepoints)
        return ids.astype(dtype)
    return np.asarray(tokenizer.encode(text), dtype=dtype)


def utf8_bytes_of(tokenizer: Tokenizer, tokens: np.ndarray) -> int:
    """UTF-8 length of the text these tokens spell (for bits per byte)."""
    if isinstance(tokenizer, ByteTokenizer):
        return int(tokens.size)
    if isinstance(tokenizer, CharTokenizer):
        lengths = np.array([len(c.encode("utf-8")) for c in tokenizer.chars], dtype=np.int64)
        return int(lengths[tokens.astype(np.int64)].sum())
    return len(tokenizer.decode(tokens.tolist()).encode("utf-8"))


# --------------------------------------------------------------------------- loading


def _fingerprint(paths: list[Path]) -> list[tuple[str, int, int]]:
    out = []
    for p in paths:
        st = p.stat()
        out.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
    return out


def _load_text_cached(
    key_parts: dict[str, Any],
    read_text: Any,
    tokenizer_name: str,
    vocab_size: int,
    replaced: list[int] | None = None,
) -> tuple[np.ndarray, Tokenizer, int]:
    """Tokens, tokenizer and UTF-8 byte count of a text source, from the cache when possible
    (`replaced[0]`: the bytes read_text replaced, kept in the cache's note too)."""
    replaced = replaced if replaced is not None else [0]
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:32]
    folder = cache_dir()
    tokens_path, meta_path = folder / f"{key}.npy", folder / f"{key}.json"
    if tokens_path.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            tokens = np.load(tokens_path, mmap_mode="r")
            tokenizer = get_tokenizer(
                tokenizer_name, state=meta["tokenizer"], vocab_size=vocab_size
            )
            replaced[0] = int(meta.get("replaced", 0))
            return tokens, tokenizer, int(meta["bytes"])
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt below
    text = read_text()
    if not text:
        raise DataError("the data source holds no text")
    tokenizer = get_tokenizer(tokenizer_name, corpus_text=text, vocab_size=vocab_size)
    tokens = encode_text(tokenizer, text)
    n_bytes = len(text.encode("utf-8"))
    try:
        atomic_write_with(tokens_path, lambda handle: np.save(handle, tokens))
        atomic_write_text(
            meta_path,
            json.dumps(
                {
                    "tokenizer": tokenizer.state_dict(),
                    "bytes": n_bytes,
                    "tokens": int(tokens.size),
                    "source": key_parts["source"],
                    "replaced": replaced[0],
                }
            ),
        )
    except OSError:
        pass  # no cache (read-only or full disk) only costs time
    return tokens, tokenizer, n_bytes


def _split(tokens: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    n_val = max(1, int(len(tokens) * val_fraction))
    return tokens[:-n_val], tokens[-n_val:]


def _resolve_sources(source: str) -> tuple[str, list[Path], list[Path]]:
    """(kind, train paths, val paths) where kind is default | text | tokens."""
    if source == "default":
        return "default", [], []
    if globlib.has_magic(source):
        matches = [Path(p) for p in sorted(globlib.glob(source)) if Path(p).is_file()]
        if not matches:
            raise DataError(f"no files match {source}")
        if all(p.suffix == ".bin" for p in matches):
            val: list[Path] = []
            folder, pattern = os.path.split(source)
            if "train" in pattern:  # only the file name: a folder called "training" stays as it is
                val_glob = os.path.join(folder, pattern.replace("train", "val"))
                val = [Path(p) for p in sorted(globlib.glob(val_glob)) if Path(p).is_file()]
            train = [p for p in matches if p not in val]
            return "tokens", train, val
        return "text", matches, []
    path = Path(source)
    if not path.exists():
        raise DataError(f"no such file or folder: {source}")
    if path.is_dir():
        bins = sorted(path.glob("*.bin"))
        if bins:
            train = [p for p in bins if "val" not in p.name]
            val = [p for p in bins if "val" in p.name]
            return "tokens", train or bins, val if train else []
        files = text_files(path)
        if not files:
            raise DataError(f"{source} holds no text files")
        return "text", files, []
    if path.suffix == ".bin":
        val_path = (
            path.with_name(path.name.replace("train", "val")) if "train" in path.name else None
        )
        return (
            "tokens",
            [path],
            [val_path] if val_path and val_path.is_file() and val_path != path else [],
        )
    return "text", [path], []


def load_data(cfg: DataConfig, *, block_size: int, vocab_size: int) -> TokenData:
    """Load, tokenize (cached) and split the data a preset names; DataError if unusable."""
    kind, train_paths, val_paths = _resolve_sources(cfg.source)
    if kind == "tokens":
        # one shard among the files makes them all shards: a bad magic is damage, not a raw file
        read = read_shard if any(is_shard(p) for p in train_paths + val_paths) else read_token_file
        train = _concat([read(p) for p in train_paths])
        val = _concat([read(p) for p in val_paths]) if val_paths else None
        if val is None:
            train, val = _split(train, cfg.val_fraction)
        needed = int(max(int(train.max()), int(val.max()))) + 1 if len(train) and len(val) else 0
        tokenizer: Tokenizer | None
        try:
            tokenizer = (
                get_tokenizer(cfg.tokenizer, vocab_size=vocab_size)
                if cfg.tokenizer not in ("char",)
                else IdTokenizer(vocab_size)
            )
        except TokenizerUnavailable:
            tokenizer = IdTokenizer(vocab_size)  # samples show ids; training needs no encoder
        if cfg.tokenizer_model:  # shards of a SentencePiece model: samples decode through it
            # without the package or the file the ids stay; the byte table's check says why
            tokenizer, _ = shard_tokenizer(cfg.tokenizer_model, vocab_size)
        if needed > vocab_size:
            raise DataError(
                f"the token files hold id {needed - 1}, beyond model.vocab_size={vocab_size}; raise model.vocab_size to at least {needed}"
            )
        desc = f"{len(train_paths)} token file(s), {len(train):,} train + {len(val):,} val tokens"
        data = TokenData(train, val, tokenizer, needed, desc, None)
    else:
        if cfg.tokenizer == "pretokenized":
            raise DataError(
                "data.tokenizer=pretokenized needs .bin token files; for text use byte, char or a tiktoken encoding"
            )
        if kind == "default":
            key = {
                "source": "default",
                "files": corpus_fingerprint(),
                "tokenizer": cfg.tokenizer,
                "version": __version__,
            }
            tokens, tokenizer, n_bytes = _load_text_cached(
                key, read_default_corpus, cfg.tokenizer, vocab_size
            )
            where = "the embedded default corpus (Python standard-library source)"
        else:
            key = {
                "source": [str(p) for p in train_paths[:3]],
                "files": _fingerprint(train_paths),
                "tokenizer": cfg.tokenizer,
                "version": __version__,
            }
            replaced = [0]
            tokens, tokenizer, n_bytes = _load_text_cached(
                key,
                lambda: read_text_sources(train_paths, replaced),
                cfg.tokenizer,
                vocab_size,
                replaced,
            )
            where = (
                str(train_paths[0])
                if len(train_paths) == 1
                else f"{len(train_paths)} files under {cfg.source} (binary ones skipped)"
            )
            if replaced[0]:
                where += (
                    f" ({replaced[0]:,} bytes were not UTF-8 and read as U+FFFD: "
                    "save it as UTF-8 to keep them)"
                )
        train, val = _split(tokens, cfg.val_fraction)
        val_bytes = utf8_bytes_of(tokenizer, np.asarray(val)) if n_bytes else None
        desc = f"{where}: {len(tokens):,} {tokenizer.name} tokens (vocab {tokenizer.vocab_size}), {len(train):,} train / {len(val):,} val"
        data = TokenData(train, val, tokenizer, tokenizer.vocab_size, desc, val_bytes)
    for split, arr in (("train", data.train), ("val", data.val)):
        if len(arr) < block_size + 2:
            raise DataError(
                f"the {split} split has {len(arr):,} tokens, fewer than model.block_size+2={block_size + 2}; "
                "use more data, a smaller block_size, or a different data.val_fraction"
            )
    return data


# --------------------------------------------------------------------------- batches


class BatchSampler:
    """Random windows of block_size+1 tokens (nanoGPT's get_batch), reproducible and resumable.

    Its own CPU torch.Generator decides the window starts, so its state (saved in
    checkpoints) is the data position: a resumed run draws the same batches.
    """

    def __init__(
        self, tokens: np.ndarray, block_size: int, seed: int, device: torch.device | str = "cpu"
    ) -> None:
        self.tokens = tokens
        self.block_size = block_size
        self.device = torch.device(device)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(int(seed))
        self.high = len(tokens) - block_size - 1  # window start so that y's last token exists
        if self.high < 1:
            raise DataError(f"{len(tokens)} tokens are too few for block_size {block_size}")
        self._offsets = np.arange(block_size + 1, dtype=np.int64)

    def _starts(self, n: int) -> torch.Tensor:
        return torch.randint(self.high, (n,), generator=self.generator)

    def sample(self, n_sequences: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) int64 tensors of shape (n, block_size); y is x shifted by one token."""
        starts = self._starts(n_sequences).numpy()
        windows = np.asarray(self.tokens[starts[:, None] + self._offsets]).astype(np.int64)
        batch = torch.from_numpy(windows)
        x, y = batch[:, :-1], batch[:, 1:]
        if self.device.type == "cuda":
            x = x.contiguous().pin_memory().to(self.device, non_blocking=True)
            y = y.contiguous().pin_memory().to(self.device, non_blocking=True)
            return x, y
        return x.contiguous(), y.contiguous()

    def skip(self, n_sequences: int) -> None:
        """Advance past `n_sequences` windows without reading them (same generator use as sample)."""
        self._starts(n_sequences)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
