"""The architectures: one torch-free spec per architecture, and the registry that names them.

Each built-in architecture is one file here (gpt.py, golf.py, bdh.py: its rules, parameter
count, FLOPs, activation bytes and what the engine supports) and one module file in
cockpit/train/models/. own.py is for a model file of your own (model.arch = PATH.py:ClassName),
whose figures are measured rather than computed. This package imports only cockpit.common.
"""

from __future__ import annotations

from cockpit.arch import bdh, golf, gpt
from cockpit.arch.base import ArchSpec, Problem
from cockpit.arch.own import (
    OwnModelSpec,
    is_own_model,
    local_modules,
    resolve_model_file,
    split_own_model,
)

SPECS: dict[str, ArchSpec] = {spec.name: spec for spec in (gpt.SPEC, golf.SPEC, bdh.SPEC)}

__all__ = [
    "SPECS",
    "ArchSpec",
    "OwnModelSpec",
    "Problem",
    "get_spec",
    "is_own_model",
    "local_modules",
    "names",
    "resolve_model_file",
    "split_own_model",
    "supporting",
    "supports",
]


def names() -> tuple[str, ...]:
    """The built-in architectures' names, in the registry's order."""
    return tuple(SPECS)


def get_spec(arch: str) -> ArchSpec:
    """The spec of a built-in architecture; KeyError naming the choices for any other name."""
    try:
        return SPECS[arch]
    except KeyError:
        raise KeyError(f"unknown architecture {arch!r}; choose one of {', '.join(SPECS)}") from None


def supports(arch: str, feature: str) -> bool:
    """`arch` has `feature` (an ArchSpec flag: chunked_loss, streams, hf_export, ...); a model
    file of your own has none of them."""
    spec = SPECS.get(arch)
    return spec is not None and bool(getattr(spec, feature))


def supporting(feature: str) -> tuple[str, ...]:
    """The built-in architectures whose spec has `feature` (an ArchSpec flag) set."""
    return tuple(name for name, spec in SPECS.items() if getattr(spec, feature))
