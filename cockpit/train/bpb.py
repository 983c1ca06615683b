"""Bits per byte on token shards, from the SentencePiece model that made them (seed 001).

Shards hold token ids only, so the bytes behind them come from the tokenizer: the
parameter-golf reference builds a per-token byte table from its SentencePiece
.model (data.tokenizer_model, its TOKENIZER_PATH) and counts, for each target token,

    base bytes of its piece (the UTF-8 of the piece without a leading '▁'; 1 for a byte piece;
                             0 for control, unknown and unused pieces)
    + 1 when the piece starts with '▁' and the token before it is not a boundary
        (control, unknown or unused) token: the space that '▁' stands for

val_bpb = val_loss / ln 2 x (target tokens / bytes). The model's vocabulary must be
the preset's model.vocab_size, as the reference requires.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from cockpit.text.tokenizers import SENTENCEPIECE_INSTALL as INSTALL
from cockpit.train.runtime import EngineError


def load_sentencepiece(path: str) -> Any:
    """The SentencePieceProcessor of `path`; EngineError (one line) without the package or the file."""
    try:
        import sentencepiece as spm
    except ImportError:
        raise EngineError(
            f"data.tokenizer_model needs the sentencepiece package: {INSTALL}", kind="data"
        ) from None
    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as exc:
        raise EngineError(
            f"data.tokenizer_model={path} is not a SentencePiece model ({str(exc).strip()[:160]})",
            kind="data",
        ) from None


@dataclass
class ByteTable:
    """Per-token byte facts, indexed by token id (the reference's three lookup tables)."""

    base_bytes: np.ndarray  # int16
    leading_space: np.ndarray  # bool
    boundary: np.ndarray  # bool

    def bytes_of(self, prev: np.ndarray, target: np.ndarray) -> int:
        """UTF-8 bytes the `target` tokens stand for, each after the token in `prev`."""
        counts = self.base_bytes[target].astype(np.int64)
        counts += self.leading_space[target] & ~self.boundary[prev]
        return int(counts.sum())

    def to(self, device: torch.device) -> DeviceByteTable:
        return DeviceByteTable(
            torch.as_tensor(self.base_bytes.astype(np.int64), device=device),
            torch.as_tensor(self.leading_space, device=device),
            torch.as_tensor(self.boundary, device=device),
        )


@dataclass
class DeviceByteTable:
    """The same tables on the eval's device, for counting inside an eval without a host sync."""

    base_bytes: torch.Tensor
    leading_space: torch.Tensor
    boundary: torch.Tensor

    def bytes_of(self, prev: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        counts = self.base_bytes[target] + (self.leading_space[target] & ~self.boundary[prev])
        return counts.sum()


def byte_table(sp: Any, vocab_size: int) -> ByteTable:
    """The reference's build_sentencepiece_luts, as numpy arrays of max(sp vocab, vocab_size) rows."""
    sp_vocab = int(sp.vocab_size())
    size = max(sp_vocab, vocab_size)
    base = np.zeros(size, dtype=np.int16)
    leading = np.zeros(size, dtype=np.bool_)
    boundary = np.ones(size, dtype=np.bool_)
    for token_id in range(sp_vocab):
        if sp.is_control(token_id) or sp.is_unknown(token_id) or sp.is_unused(token_id):
            continue
        boundary[token_id] = False
        if sp.is_byte(token_id):
            base[token_id] = 1
            continue
        piece = sp.id_to_piece(token_id)
        if piece.startswith("\u2581"):
            leading[token_id] = True
            piece = piece[1:]
        base[token_id] = len(piece.encode("utf-8"))
    return ByteTable(base, leading, boundary)


def load_byte_table(path: str, vocab_size: int) -> ByteTable:
    """The byte table of the .model at `path`; EngineError when its vocabulary is not `vocab_size`."""
    sp = load_sentencepiece(path)
    n = int(sp.vocab_size())
    if n != vocab_size:
        raise EngineError(
            f"data.tokenizer_model={path} has {n} pieces but model.vocab_size is {vocab_size}; "
            f"they must be equal (VOCAB_SIZE must match the tokenizer): set model.vocab_size={n} "
            "or use the tokenizer the shards were made with",
            kind="data",
        )
    return byte_table(sp, vocab_size)


def tokens_per_byte(table: ByteTable, val: np.ndarray) -> float | None:
    """Target tokens per byte over the whole validation split (every token after the first)."""
    tokens = np.asarray(val, dtype=np.int64)
    if len(tokens) < 2:
        return None
    n_bytes = table.bytes_of(tokens[:-1], tokens[1:])
    return (len(tokens) - 1) / n_bytes if n_bytes else None
