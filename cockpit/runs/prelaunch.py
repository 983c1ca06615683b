"""What can be found wrong with a launch before anything is created: data, tokenizer, device,
loggers, and memory (`plan_problem`: the plan against this machine's GPU or RAM).

Headless mode, the app, resume and the queue ask `launch_problem`, which asks the others, and
`plan_problem` for the device and processes they launch on. Each
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
import stat
from array import array
from pathlib import Path
from typing import Any, NamedTuple

from cockpit import rundir
from cockpit.arch import is_own_model
from cockpit.common.format import human_bytes
from cockpit.plan.measure import ensure_measured
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


DATA_KINDS = "data must be a regular file, a folder of them, or a glob of them"


def _not_a_file(path: str) -> str | None:
    """What `path` is when it is neither a regular file nor a folder (a device, a pipe...)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # gone meanwhile, or a dangling link: the other checks say so
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kinds = (
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def source_problem(source: str) -> str | None:
    """Why a data source cannot be used before launching (None when it looks usable).

    Only regular files are data: /dev/zero or /dev/urandom would be read without end (the
    child died of MemoryError after seconds), and a named pipe would block it; the mode is
    read with stat, so nothing here opens one.
    """
    if source == "default":
        return None
    source = os.path.expanduser(source)
    if glob.has_magic(source):
        matches = sorted(glob.glob(source))
        if not matches:
            return f"no files match {source}"
        bad = [(m, what) for m in matches if (what := _not_a_file(m))]
        if bad:
            return f"{source} matches {bad[0][0]}, {bad[0][1]}: {DATA_KINDS}"
        return None
    if not Path(source).exists():
        return f"no such file or folder: {source}"
    what = _not_a_file(source)
    if what:
        return f"{source} is {what}, not a file: {DATA_KINDS}"
    if Path(source).is_dir():
        inside = [
            (p.name, w) for p in sorted(Path(source).glob("*.bin")) if (w := _not_a_file(str(p)))
        ]
        if inside:
            return f"{source} holds {inside[0][0]}, {inside[0][1]}: {DATA_KINDS}"
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
    if is_own_model(preset.model.arch):  # imported, built and run in a measuring child, never here
        problem = ensure_measured(preset)
        if problem:
            return f"model.arch: {problem}"
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


class ModelFileChange(NamedTuple):
    """Your own model's file is not the one a run started with: the line, and the file now."""

    line: str
    now: dict[str, Any] | None  # run.json's `model_file` for the files as they are; None: gone


def model_file_problem(run_dir: str | os.PathLike[str]) -> ModelFileChange | None:
    """Why resuming `run_dir` would train another model than its checkpoint was trained with:
    the file run.json's `model_file` names, or a module beside it that it imports, has changed
    or is gone (None: unchanged, a run of a built-in architecture, or one from before run.json
    recorded the file)."""
    from cockpit.plan.measure import file_record, file_sha256

    try:
        recorded = rundir.read_run_info(run_dir).model_file or {}
    except rundir.RunError:
        return None
    path, digest = recorded.get("path"), recorded.get("sha256")
    if not isinstance(path, str) or not isinstance(digest, str):
        return None
    modules = recorded.get("modules")
    files = [(path, digest)] + (list(modules.items()) if isinstance(modules, dict) else [])
    name = Path(run_dir).name
    for file, then in files:
        now = file_sha256(Path(file))
        if now == then:
            continue
        what = file if file == path else f"{file} (imported by {Path(path).name})"
        if now is None:
            return ModelFileChange(
                f"{what}: no such file; {name} was trained with it (sha256 {str(then)[:12]}): "
                "restore it to resume",
                None,
            )
        return ModelFileChange(
            f"{what} changed since {name} started (sha256 {str(then)[:12]} then, {now[:12]} "
            f"now), so its checkpoint was trained with another model: restore the file, or "
            f"`gpt-cockpit resume {name} --force` continues with the files as they are now",
            file_record(Path(path)),
        )
    return None


# --------------------------------------------------------------------------- memory


# The analytic reserved estimate's worst over-estimate against the caching allocator model
# (bench/results/trace-vs-analytic-2026-12-06-allocator.md: none more than 8% over): a launch is
# refused only when its plan, less that, is still over the GPU's memory.
GPU_PLAN_MARGIN = 0.08
FORCE_HINT = "--force launches anyway"
TOO_LARGE = "more than any machine has (the plan's arithmetic overflows)"
BEYOND = 1 << 60  # 1 EiB: past this a figure says only that no machine has it


def _bytes(n: int | None) -> str:
    if n is None:
        return "an unknown amount"
    return human_bytes(n) if n < BEYOND else "over 1 EiB (more than any machine has)"


def _this_machine_has_gpu() -> bool | None:
    """True/False when NVML or the driver's device files tell; None when nothing can tell."""
    from cockpit.plan.gpu import NVML_NOT_INSTALLED, nvml_problem, query_gpus

    if query_gpus():
        return True
    if nvml_problem() == NVML_NOT_INSTALLED:
        return True if glob.glob("/dev/nvidia[0-9]*") else None
    return False


def plan_problem(preset: Preset, device: str = "auto", nproc: int = 1) -> str | None:
    """Why the plan does not fit this machine, with the figures and the micro-batch that fits
    (None: it fits, or this machine cannot tell). On a GPU run the peak on each GPU against its
    memory, then the host side; on a CPU run (`--device cpu`, or auto without a GPU) the host RAM
    against what psutil says is available. Over by more than the plan's error margin only."""
    try:
        return _plan_problem(preset, device, max(1, nproc))
    except (OverflowError, MemoryError, ValueError) as exc:
        from cockpit.plan.host import available_ram

        available, _ = available_ram()
        have = (
            f"{human_bytes(available)} of RAM available"
            if available
            else "available memory unknown"
        )
        return f"memory: {preset.name} needs {TOO_LARGE}: {exc}; {have}; shrink the model ({FORCE_HINT})"


def _plan_problem(preset: Preset, device: str, nproc: int) -> str | None:
    from cockpit.plan.host import available_ram, cpu_batch_suggestion, host_memory

    on_gpu = device.startswith("cuda") or (device == "auto" and _this_machine_has_gpu())
    if on_gpu:
        problem = _gpu_plan_problem(preset, device, nproc)
        if problem:
            return problem
        host = host_memory(preset, "cuda", nproc=nproc)
        if host.refused:
            return f"{host.verdict}; free some memory ({FORCE_HINT})"
        return None
    host = host_memory(preset, "cpu")
    if not host.refused:
        return None
    available, _ = available_ram()
    t = preset.train
    line = (
        f"host RAM: a CPU run of {preset.name} at micro-batch {t.batch_size:,} needs "
        f"{_bytes(host.total_bytes)} ({host.dtype} tensors and the torch runtime), "
        f"{_bytes(available)} available"
    )
    fit = cpu_batch_suggestion(preset, available)
    if fit is None:
        return f"{line}; even micro-batch 1 does not fit: shrink the model or block_size ({FORCE_HINT})"
    micro, accum = fit
    return (
        f"{line}; micro-batch {micro:,} fits: --set train.batch_size={micro} "
        f"--set train.grad_accum={accum} (the same sequences per step), or {FORCE_HINT}"
    )


def _gpu_plan_problem(preset: Preset, device: str, nproc: int) -> str | None:
    """The plan's peak on each GPU against the GPUs the run will use (under this process's
    CUDA_VISIBLE_DEVICES: cuda:N, or cuda:0 up to cuda:nproc-1), the smallest of them when they
    differ (None when NVML cannot say)."""
    from cockpit.plan.estimate import estimate, suggest_batch
    from cockpit.plan.gpu import mixed_note, query_gpus, run_gpus, smallest_spec

    used = run_gpus(query_gpus(), device, nproc)
    spec = smallest_spec(used)
    if spec is None:
        return None
    est = estimate(preset, spec, world_size=nproc)
    if est.peak_bytes <= spec.usable_bytes * (1 + GPU_PLAN_MARGIN):
        return None
    each = f" on each of {nproc} GPUs" if nproc > 1 else ""
    line = (
        f"GPU memory: {preset.name} at micro-batch {est.batch_size:,} needs "
        f"{_bytes(est.peak_bytes)}{each}, {spec.name}{mixed_note(used)} has "
        f"{human_bytes(spec.usable_bytes)}"
    )
    suggestion = suggest_batch(preset, spec, world_size=nproc)
    if suggestion is None or suggestion.fits_up_to < 1:
        return f"{line}; even micro-batch 1 does not fit: shrink the model, block_size or use activation checkpointing ({FORCE_HINT})"
    return (
        f"{line}; micro-batch {suggestion.micro_batch:,} fits: "
        f"--set train.batch_size={suggestion.micro_batch} "
        f"--set train.grad_accum={suggestion.grad_accum}, or {FORCE_HINT}"
    )
