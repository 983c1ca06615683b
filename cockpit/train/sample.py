"""A run's trained model, back from its checkpoint: for `gpt-cockpit sample` and `export`.

The model is rebuilt from the preset saved inside the checkpoint (what was trained),
its weights loaded, and the run's own tokenizer rebuilt from the checkpoint too (a
char vocabulary travels with the run). Every way this can fail is a SampleError
with one line that says what is missing and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cockpit import rundir
from cockpit.common.diagnostics import first_line
from cockpit.plan.presets import Preset, PresetError, preset_from_dict
from cockpit.text.tokenizers import (
    Tokenizer,
    TokenizerUnavailable,
    shard_tokenizer,
    tokenizer_from_state,
)
from cockpit.train import checkpoint as ckpt
from cockpit.train.models import LanguageModel, build_model

CHECKPOINT_CHOICES = ("auto", "best", "last")


class SampleError(RuntimeError):
    """The run's model or tokenizer cannot be had; the message is one line saying why."""


@dataclass
class RunModel:
    """A trained model in eval mode, the run's tokenizer, and where the weights came from."""

    model: LanguageModel
    tokenizer: Tokenizer
    preset: Preset
    path: Path
    step: int
    device: torch.device
    tokenizer_state: dict[str, Any]  # as saved in the checkpoint (name, a char vocabulary)
    note: str | None = None  # one line about the tokenizer (token shards decoded as ids, and why)


def checkpoint_path(run_dir: Path, which: str = "auto") -> Path:
    """best.pt or last.pt of the run (auto: best.pt when an eval improved, else last.pt)."""
    if which not in CHECKPOINT_CHOICES:
        raise SampleError(f"--checkpoint {which!r}: use best or last")
    folder = Path(run_dir) / rundir.CHECKPOINTS
    best, last = folder / ckpt.BEST, folder / ckpt.LAST
    if which == "best" or (which == "auto" and best.is_file()):
        if best.is_file():
            return best
        raise SampleError(
            f"{run_dir.name} has no best.pt (no eval has run yet); use --checkpoint last"
        )
    if last.is_file() or (folder / ckpt.LAST_PREV).is_file():
        return last
    raise SampleError(
        f"{run_dir.name} has no checkpoint yet (nothing in {folder}); "
        "a run writes one at each eval and when it stops"
    )


def pick_device(requested: str = "auto") -> torch.device:
    if requested not in ("auto", "cpu", "cuda"):
        raise SampleError(f"--device {requested!r}: use auto, cpu or cuda")
    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        raise SampleError("--device cuda was asked for but torch sees no CUDA GPU; use cpu")
    return torch.device(
        "cuda" if requested == "cuda" or (requested == "auto" and has_cuda) else "cpu"
    )


def _load_state(path: Path) -> tuple[dict[str, Any], Path]:
    try:
        if path.name == ckpt.LAST:
            loaded = ckpt.load_latest(path.parent)  # last.pt, else last.prev.pt
            return loaded.state, loaded.path
        return ckpt.load_checkpoint(path), path
    except ckpt.CheckpointError as exc:
        raise SampleError(str(exc)) from None


def load_run_model(
    run_dir: str | Path, which: str = "auto", device: str = "auto", *, tokenizer: bool = True
) -> RunModel:
    """The run's model from its checkpoint (eval mode, on `device`) and its tokenizer."""
    run_dir = Path(run_dir)
    if not (run_dir / rundir.RUN_JSON).is_file() and not (run_dir / rundir.CHECKPOINTS).is_dir():
        raise SampleError(f"{run_dir} is not a run directory")
    state, path = _load_state(checkpoint_path(run_dir, which))
    try:
        preset = preset_from_dict(state["preset"])
    except PresetError as exc:
        raise SampleError(f"{path}: its saved preset does not load ({exc})") from None
    try:
        model = build_model(preset.model)
        if state.get("model") is None and state.get("shards"):  # an FSDP run: consolidate
            from cockpit.train.sharded import load_whole_model

            load_whole_model(model, path.parent / state["shards"])
        else:
            model.load_state_dict(state["model"])
    except ckpt.CheckpointError as exc:
        raise SampleError(str(exc)) from None
    except (NotImplementedError, RuntimeError, KeyError, TypeError) as exc:
        raise SampleError(
            f"{path}: the weights do not fit the saved preset's model ({first_line(exc)})"
        ) from None
    dev = pick_device(device)
    model.to(dev).eval()
    tok: Any = None
    note = None
    if tokenizer:
        tok, note = decoding_tokenizer(state, path, preset)
    saved_tok = dict(state.get("tokenizer") or {})
    return RunModel(model, tok, preset, path, int(state["step"]), dev, saved_tok, note)


def run_tokenizer(state: dict[str, Any], path: Path) -> Tokenizer:
    """The tokenizer saved in the checkpoint (TokenizerUnavailable's fix kept in the line)."""
    saved = state.get("tokenizer") or {}
    try:
        return tokenizer_from_state(saved)
    except TokenizerUnavailable as exc:
        raise SampleError(str(exc)) from None
    except ValueError as exc:
        raise SampleError(f"{path}: its tokenizer cannot be rebuilt ({exc})") from None


def decoding_tokenizer(
    state: dict[str, Any], path: Path, preset: Preset
) -> tuple[Tokenizer, str | None]:
    """run_tokenizer, except for token shards: their SentencePiece model decodes the ids to
    text when it loads here, else the ids stay and the note (one line) says why.

    A run saved before samples were decoded has the "pretokenized" state: its preset's
    data.tokenizer_model names the model.
    """
    saved = state.get("tokenizer") or {}
    name = saved.get("name")
    if name == "sentencepiece":
        model_file = str(saved.get("model_file", ""))
    elif name == "pretokenized" and preset.data.tokenizer_model:
        model_file = preset.data.tokenizer_model
    else:
        return run_tokenizer(state, path), None
    return shard_tokenizer(model_file, int(saved.get("vocab_size", preset.model.vocab_size)))


def prompt_ids(tok: Tokenizer, prompt: str) -> list[int]:
    """The prompt's token ids (a newline, or token 0, when the prompt is empty)."""
    try:
        ids = list(tok.encode(prompt or "\n"))
    except ValueError as exc:
        if prompt:
            raise SampleError(
                f"the prompt cannot be encoded by this run's tokenizer: {exc}"
            ) from None
        ids = []
    return ids or [0]


def generate(
    rm: RunModel,
    prompt: str = "",
    tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 200,
    seed: int | None = None,
) -> str:
    """`tokens` new tokens after `prompt`, decoded (the prompt itself is not repeated)."""
    if tokens < 1:
        raise SampleError(f"--tokens {tokens}: ask for at least 1")
    if temperature <= 0:
        raise SampleError(f"--temperature {temperature}: must be above 0")
    ids = prompt_ids(rm.tokenizer, prompt)
    idx = torch.tensor([ids], dtype=torch.long, device=rm.device)
    if seed is not None:
        torch.manual_seed(seed)  # seeds the CUDA generators too
    vocab = rm.tokenizer.vocab_size or None
    out = rm.model.generate(
        idx, tokens, temperature=temperature, top_k=top_k or None, vocab_limit=vocab
    )
    return rm.tokenizer.decode(out[0, len(ids) :].tolist())
