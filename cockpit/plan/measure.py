"""Your own model's figures: measured by a child process, kept by the model file's content hash.

No torch here, and the model file is never imported in this process: the child
(`python -m cockpit.train.measure`, cockpit/train/measure.py) imports it, builds the class on
the meta device, counts its parameters, checks that forward returns (logits, loss) of the
right shapes, and counts a training step's FLOPs with torch's FlopCounterMode. Its figures are
kept in the cache folder under a key made of the file's SHA-256, the class name and the model
section, so an unchanged file is measured once and an edited one again. `measured_spec` turns
them into the ArchSpec the estimator asks (cockpit.arch.own.OwnModelSpec).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from cockpit import arch as archs
from cockpit.arch import OwnModelSpec
from cockpit.plan.presets import ModelConfig, Preset

FIGURES = ("params", "matrix_params", "embedding_params", "matmul_params", "flops_per_token")
# what is known before the child has run: nothing (the estimate says "not measured yet")
UNMEASURED = dict.fromkeys(FIGURES, 0)

_memo: dict[tuple[Any, ...], dict[str, Any] | None] = {}


def model_file(m: ModelConfig) -> Path:
    """The file of model.arch = PATH.py:ClassName (relative paths: the working directory's;
    load_preset_file has already made one beside its preset file absolute)."""
    return archs.resolve_model_file(m.arch)


def model_file_hash(preset: Preset | ModelConfig) -> str:
    """sha256:<hex>:ClassName of the model file's content and of the modules beside it that it
    imports ("missing:<path>" when the file is not there)."""
    m = preset.model if isinstance(preset, Preset) else preset
    path = model_file(m)
    _, name = archs.split_own_model(m.arch)
    try:
        digest = hashlib.sha256(path.read_bytes())
    except OSError:
        return f"missing:{path}:{name}"
    for module in archs.local_modules(path):
        digest.update(f"\0{module.relative_to(path.parent)}\0".encode())
        digest.update((file_sha256(module) or "unreadable").encode())
    return f"sha256:{digest.hexdigest()}:{name}"


def file_sha256(path: Path) -> str | None:
    """The SHA-256 (hex) of a file's content; None when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def model_file_record(preset: Preset) -> dict[str, Any] | None:
    """Your own model's file as it is now, as run.json keeps it (`model_file`); None for a
    built-in architecture or a file that cannot be read."""
    m = preset.model
    if not archs.is_own_model(m.arch):
        return None
    return file_record(model_file(m).resolve())


def file_record(path: Path) -> dict[str, Any] | None:
    """{"path", "sha256"} of a model file, and "modules": {path: sha256} of the modules beside
    it that it imports (left out when none); None when the file cannot be read."""
    digest = file_sha256(path)
    if digest is None:
        return None
    record: dict[str, Any] = {"path": str(path), "sha256": digest}
    modules = {str(p): file_sha256(p) for p in archs.local_modules(path)}
    if modules:
        record["modules"] = modules
    return record


def _key(m: ModelConfig) -> str:
    shape = asdict(m)
    shape["arch"] = model_file_hash(m)
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:24]


def _cache_path(m: ModelConfig) -> Path:
    from cockpit.plan.estimate import calibration_dir

    return calibration_dir().parent / "measured" / f"{_key(m)}.json"


def load_measured(m: ModelConfig) -> dict[str, Any] | None:
    """The cached figures of this model file and section, or None before they were measured."""
    path = model_file(m)
    try:
        stat = path.stat()
    except OSError:
        return None
    beside = []  # an edit to a module it imports measures it again too
    for module in archs.local_modules(path):
        try:
            beside.append((str(module), module.stat().st_mtime_ns, module.stat().st_size))
        except OSError:
            beside.append((str(module), 0, 0))
    memo = (
        m.arch,
        stat.st_mtime_ns,
        stat.st_size,
        tuple(beside),
        json.dumps(asdict(m), sort_keys=True),
    )
    if memo in _memo and _memo[memo] is not None:
        return _memo[memo]
    try:
        raw = json.loads(_cache_path(m).read_text(encoding="utf-8"))
        figures = {k: raw[k] for k in FIGURES} | {"seconds": raw.get("seconds", 0.0)}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    _memo[memo] = figures
    return figures


def save_measured(m: ModelConfig, figures: dict[str, Any]) -> Path:
    """Keep a measurement (atomic write) under the file's content hash."""
    from cockpit.common.fsutil import atomic_write_text

    path = _cache_path(m)
    atomic_write_text(path, json.dumps(figures, indent=2) + "\n")
    return path


def measured_spec(m: ModelConfig) -> OwnModelSpec:
    """The spec of your own model from its measured figures (zeros, `pending`, before the child ran)."""
    figures = load_measured(m)
    spec = OwnModelSpec(m.arch, figures or UNMEASURED)
    spec.pending = figures is None
    return spec


def measure_command(preset: Preset) -> list[str]:
    """The argv of the measuring child for `preset` (cockpit/train/measure.py)."""
    return [
        sys.executable,
        "-m",
        "cockpit.train.measure",
        "--preset-json",
        json.dumps(preset.to_dict()),
    ]


def run_measure_child(
    preset: Preset, timeout_s: float = 300.0
) -> tuple[dict[str, Any] | None, str]:
    """(figures, "") from the measuring child, or (None, one line naming the file and what is wrong)."""
    try:
        proc = subprocess.run(
            measure_command(preset),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return None, f"{model_file(preset.model)}: measuring took over {timeout_s:.0f} s"
    except OSError as exc:
        return None, f"cannot start the measuring child: {exc}"
    if proc.returncode != 0:
        if "No module named 'torch'" in proc.stderr:
            return None, "torch is not installed here (pip install torch)"
        last = (proc.stderr.strip().splitlines() or ["the measuring child failed"])[-1]
        return None, last.removeprefix("measure: ")
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1]), ""
    except (ValueError, IndexError):
        return None, "the measuring child's output did not parse"


MeasureRunner = Callable[[Preset], tuple[dict[str, Any] | None, str]]


def ensure_measured(preset: Preset, runner: MeasureRunner = run_measure_child) -> str | None:
    """Measure your own model unless its figures are cached; the one-line problem, or None.

    A missing file is said here, without a child."""
    m = preset.model
    path = model_file(m)
    if not path.is_file():
        return f"{path}: no such file"
    if load_measured(m) is not None:
        return None
    figures, problem = runner(absolute(preset))
    if figures is None:
        return problem
    save_measured(m, figures)
    return None


def absolute(preset: Preset) -> Preset:
    """The preset with your own model's file as an absolute path (a child, a run directory or a
    resume elsewhere then finds it from any working directory); any other preset as it is."""
    m = preset.model
    if not archs.is_own_model(m.arch):
        return preset
    _, name = archs.split_own_model(m.arch)
    model = replace(m, arch=f"{model_file(m).resolve()}:{name}")
    return replace(preset, model=model)
