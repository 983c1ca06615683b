"""What can be found wrong with a launch before anything is created: data, tokenizer, device, loggers.

Headless mode, the app and the queue ask `launch_problem`, which asks the others. Each
returns one line that says what is wrong and how to fix it, or None. They read little
(the first MiB of at most a few token files, 8 KiB of a text file), so they only catch
what shows at once: an empty or binary text file, a token file of the wrong length or
with ids beyond the vocabulary, a tiktoken encoding whose files are not cached, a CUDA
device on a machine without one. Anything else the training child still finds and
reports; these only spare a person the error run folder of a run that failed at step 0.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from array import array
from pathlib import Path

from cockpit import rundir
from cockpit.plan.presets import Preset, logger_names

# The llm.c shard header, as cockpit/train/data.py reads it (a test checks they agree).
SHARD_MAGIC = 20240520
SHARD_VERSION = 1
SHARD_HEADER_INTS = 256
HEAD_BYTES = 1 << 20  # the start of a token file scanned for ids beyond the vocabulary
TOKEN_FILES_SCANNED = 4  # token files whose start is scanned (each is stat'ed)
TEXT_FILES_SCANNED = 200  # files of a folder looked at for one that holds text
BINARY_PROBE = 8192  # a NUL in this many leading bytes makes a file binary (as the child)


def _source_files(source: str) -> tuple[str, list[Path]]:
    """("tokens" | "text" | "", files) as the child will read them ("" when that is unclear)."""
    source = os.path.expanduser(source)
    if glob.has_magic(source):
        files = [Path(p) for p in sorted(glob.glob(source)) if Path(p).is_file()]
        kind = "tokens" if files and all(p.suffix == ".bin" for p in files) else "text"
        return kind, files
    path = Path(source)
    if path.is_dir():
        bins = sorted(path.glob("*.bin"))
        if bins:
            return "tokens", bins
        files = []
        for p in sorted(path.rglob("*")):
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts):
                files.append(p)
            if len(files) >= TEXT_FILES_SCANNED:
                return "", []  # a large folder: leave it to the child
        return "text", files
    if path.is_file():
        return ("tokens" if path.suffix == ".bin" else "text"), [path]
    return "", []


def _head(path: Path, size: int, offset: int = 0) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)


def _text_problem(source: str, files: list[Path]) -> str | None:
    """An empty or binary text file (or a folder with no file that holds text)."""
    for path in files:
        try:
            if path.stat().st_size and b"\0" not in _head(path, BINARY_PROBE):
                return None  # one file with text is enough
        except OSError as exc:
            return f"cannot read {path}: {exc.strerror or exc}"
    if len(files) == 1:
        path = files[0]
        if path.stat().st_size == 0:
            return f"{path} is empty"
        return f"{path} is binary (it holds NUL bytes), not text; token files must be named *.bin"
    if files:
        return f"{source} holds no text: every file is empty or binary"
    if Path(os.path.expanduser(source)).is_dir():
        return f"{source} is an empty folder (hidden files aside): put text files in it"
    return None  # no files at all: the existing checks say so


def _token_file_problem(path: Path, vocab_size: int, scan: bool) -> str | None:
    """A token file's length against its header, and the ids at its start against the vocabulary."""
    size = path.stat().st_size
    if size == 0:
        return f"{path} is empty"
    offset = 0
    header = array("i", _head(path, SHARD_HEADER_INTS * 4)[: (min(size, 12) // 4) * 4])
    if len(header) == 3 and header[0] == SHARD_MAGIC:
        if header[1] != SHARD_VERSION:
            return f"{path}: unsupported llm.c shard version {header[1]} (expected {SHARD_VERSION})"
        expected = SHARD_HEADER_INTS * 4 + header[2] * 2
        if size != expected:
            return f"{path} is truncated or damaged: {size} bytes, the header promises {expected}"
        offset = SHARD_HEADER_INTS * 4
    elif size % 2:
        return f"{path} has an odd number of bytes: not a file of uint16 tokens"
    if not scan:
        return None
    data = _head(path, HEAD_BYTES, offset)
    ids = array("H", data[: len(data) // 2 * 2])
    top = max(ids, default=0)
    if top >= vocab_size:
        return (
            f"{path} holds token id {top}, beyond model.vocab_size={vocab_size}: raise "
            f"model.vocab_size to at least {top + 1}, or check that it is a token file at all"
        )
    return None


def data_problem(preset: Preset) -> str | None:
    """Why `preset.data.source` would fail at step 0, as far as its first bytes tell (None: looks usable)."""
    source = preset.data.source
    if source == "default":
        return None
    kind, files = _source_files(source)
    try:
        if kind == "text":
            return _text_problem(source, files)
        if kind == "tokens":
            for i, path in enumerate(files):
                problem = _token_file_problem(
                    path, preset.model.vocab_size, i < TOKEN_FILES_SCANNED
                )
                if problem:
                    return problem
    except OSError as exc:
        return f"cannot read {exc.filename or source}: {exc.strerror or exc}"
    return None


def tokenizer_problem(preset: Preset) -> str | None:
    """A tiktoken encoding for text whose package or cached BPE files are missing (no network)."""
    from cockpit.text.tokenizers import (
        TIKTOKEN_ENCODINGS,
        _unavailable_message,
        missing_tiktoken_files,
    )

    name = preset.data.tokenizer
    if name not in TIKTOKEN_ENCODINGS:
        return None
    if preset.data.source != "default" and _source_files(preset.data.source)[0] == "tokens":
        return None  # token files need no encoder to train (samples show ids)
    if importlib.util.find_spec("tiktoken") is None:
        return f"the {name} tokenizer needs the tiktoken package: pip install tiktoken"
    missing = missing_tiktoken_files(name)
    return _unavailable_message(name, missing) if missing else None


def device_problem(device: str) -> str | None:
    """`--device cuda` (or cuda:N) where NVML finds no such GPU; None when it cannot tell."""
    if not device.startswith("cuda"):
        return None
    from cockpit.plan.gpu import NVML_NOT_INSTALLED, nvml_problem, query_gpus

    gpus = query_gpus()
    why = nvml_problem()
    index = device.partition(":")[2]
    if gpus:
        if index.isdigit() and int(index) >= len(gpus):
            return f"--device {device}: this machine has {len(gpus)} GPU(s), cuda:0 to cuda:{len(gpus) - 1}"
        return None
    if why == NVML_NOT_INSTALLED:
        return None  # no NVML to ask: the child finds out
    found = why or "NVML sees no GPU"
    return f"--device {device}: no GPU found on this machine ({found}); use --device cpu or auto"


def tokenizer_model_problem(preset: Preset) -> str | None:
    """data.tokenizer_model names a SentencePiece file that is not there."""
    model_file = os.path.expanduser(preset.data.tokenizer_model)
    if model_file and not Path(model_file).is_file():
        return (
            f"no such file: {model_file} (the SentencePiece .model of the shards, for bits per "
            "byte: set TOKENIZER_PATH, or --set data.tokenizer_model= for none)"
        )
    return None


def logger_problem(preset: Preset) -> str | None:
    """train.loggers names a logger whose package is not installed here (found without importing it)."""
    for name in logger_names(preset.train.loggers):
        if importlib.util.find_spec(name) is None:
            return (
                f"{name} needs the {name} package: pip install {name} "
                "(or pip install 'gpt-cockpit[loggers]'), or leave it out of train.loggers"
            )
    return None


def source_problem(source: str) -> str | None:
    """Why a data source cannot be used before launching (None when it looks usable)."""
    if source == "default":
        return None
    source = os.path.expanduser(source)
    if glob.has_magic(source):
        return None if glob.glob(source) else f"no files match {source}"
    if not Path(source).exists():
        return f"no such file or folder: {source}"
    return None


def launch_problem(preset: Preset) -> str | None:
    """Why a preset cannot be launched here (missing data, untrainable architecture), or None.

    Headless mode and the app both check this before starting anything.
    """
    problem = source_problem(preset.data.source)
    if problem:
        return f"data.source: {problem}"
    problem = tokenizer_model_problem(preset)  # bits per byte's SentencePiece file
    if problem:
        return f"data.tokenizer_model: {problem}"
    ok, why = preset.trainable
    if not ok:
        return f"model.arch: {preset.model.arch!r} cannot be trained yet: {why}"
    problem = data_problem(preset)  # an empty, binary or mis-sized file, ids past vocab
    if problem:
        return f"data.source: {problem}"
    problem = tokenizer_problem(preset)  # a BPE whose files are not cached here
    if problem:
        return f"data.tokenizer: {problem}"
    problem = logger_problem(preset)  # a logger whose package is not installed
    if problem:
        return f"train.loggers: {problem}"
    return None


# The checkpoints a resume loads, newest first (cockpit.train.checkpoint LAST, LAST_PREV; a
# test checks they agree). This module must not import torch, so the names are repeated.
RESUME_CHECKPOINTS = ("last.pt", "last.prev.pt")


def resume_problem(run_dir: str | os.PathLike[str]) -> str | None:
    """Why a run cannot be resumed: it has no checkpoint to continue from (an empty file is none).

    Checked before anything is started or written, so a refused resume leaves the run as it was
    (its status and step stay what they were, instead of an error at step 0).
    """
    folder = Path(run_dir) / rundir.CHECKPOINTS
    for name in RESUME_CHECKPOINTS:
        try:
            if (folder / name).stat().st_size > 0:
                return None
        except OSError:
            continue
    try:
        steps = [r["step"] for r in rundir.read_last_records(Path(run_dir) / rundir.EVENTS_JSONL)]
        status = rundir.run_status(run_dir)  # run.json's step is only the last eval's: the log's
        step = max(steps, default=rundir.read_run_info(run_dir).step or 0)
        where = f" ({status} at step {step}, before its first checkpoint)"
    except rundir.RunError:
        where = ""
    return f"{Path(run_dir).name} has no checkpoint to resume from{where}"
