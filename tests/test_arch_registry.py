"""The architecture specs (cockpit/arch) and the engine's modules (cockpit/train/models) agree."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from cockpit import arch as archs
from cockpit.plan import presets
from cockpit.plan.estimate import count_params, matrix_params
from cockpit.train.models import ARCHITECTURES, build_model
from cockpit.train.optim import param_roles

ROOT = Path(__file__).resolve().parents[1]
BUILTINS = sorted(presets.builtin_dir().glob("*.json"))


def test_the_registries_name_the_same_architectures() -> None:
    assert tuple(ARCHITECTURES) == archs.names() == presets.ARCHS
    assert all(archs.get_spec(name).name == name for name in archs.names())


@pytest.mark.parametrize("path", BUILTINS, ids=[p.stem for p in BUILTINS])
def test_every_builtin_preset_builds_the_specs_count(path: Path) -> None:
    """On the meta device: a 124M or a billion-parameter preset costs no memory and no time."""
    m = presets.load_preset_file(path, builtin=True).model
    with torch.device("meta"):
        model = build_model(m)
    spec = archs.get_spec(m.arch)
    assert sum(p.numel() for p in model.parameters()) == spec.count_params(m) == count_params(m)
    matrices = sum(p.numel() for p in param_roles(model)["matrix"])
    assert matrices == spec.matrix_params(m) == matrix_params(m)


def test_an_unknown_architecture_names_the_choices() -> None:
    with pytest.raises(KeyError, match="choose one of gpt, golf, bdh"):
        archs.get_spec("rnn")
    assert not archs.supports("rnn", "chunked_loss") and archs.supports("gpt", "hf_export")


def test_arch_branches_live_in_the_architecture_files_only() -> None:
    """`arch ==` outside cockpit/arch and cockpit/train/models is a branch that belongs in a spec."""
    found = subprocess.run(
        ["grep", "-rn", "arch ==", "cockpit/"], cwd=ROOT, capture_output=True, text=True
    ).stdout.splitlines()
    outside = [
        line for line in found if not line.startswith(("cockpit/arch/", "cockpit/train/models/"))
    ]
    assert outside == []
