"""Your own model: `model.arch` = "PATH.py:ClassName", a nanoGPT-style module in a file of yours.

The class is built as nanoGPT builds its GPT, `ClassName(config)`, with the model section's
fields as attributes of `config`, and `forward(idx, targets=None)` returns `(logits, loss)`.
No formula describes such a module: its figures are measured from the module itself by a
child process (cockpit/train/measure.py: the parameter count on the meta device, the FLOPs
of a training step with torch's FlopCounterMode) and kept by the file's content hash
(cockpit/plan/measure.py). OwnModelSpec answers from that measurement. Nothing here, nor
anywhere in the core or the app, imports the file.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cockpit.arch.base import ArchSpec

if TYPE_CHECKING:
    from cockpit.plan.presets import ModelConfig

# PATH.py:ClassName; the path may hold ':' (a Windows drive), the class name may not
_OWN_RE = re.compile(r"^(?P<path>.+\.py):(?P<cls>[A-Za-z_][A-Za-z0-9_]*)$")


def is_own_model(arch: str) -> bool:
    """`arch` names a model file and class (PATH.py:ClassName), not a built-in architecture."""
    return _OWN_RE.match(arch) is not None


def split_own_model(arch: str) -> tuple[str, str]:
    """(path as written, class name) of PATH.py:ClassName; ValueError for anything else."""
    match = _OWN_RE.match(arch)
    if match is None:
        raise ValueError(f"{arch!r} is not PATH.py:ClassName")
    return match["path"], match["cls"]


def resolve_model_file(arch: str, preset_file: str = "") -> Path:
    """The model file of PATH.py:ClassName: PATH as given when absolute, else relative to the
    preset file's folder where it is there, else to the working directory."""
    raw, _ = split_own_model(arch)
    path = Path(raw).expanduser()
    if path.is_absolute():
        return path
    if preset_file:
        beside = Path(preset_file).resolve().parent / path
        if beside.is_file():
            return beside
    return Path.cwd() / path


LOCAL_MODULES_MAX = 200  # .py files beside a model file followed at most (a folder of scripts)


def local_modules(path: Path) -> list[Path]:
    """The .py files beside a model file that it imports, directly or through one another (a
    package folder beside it: all its .py files), found by reading import statements, never by
    importing; its own figures and a run's record cover them (`from my_blocks import Block`)."""
    folder = path.parent
    found: set[Path] = set()
    todo = [path]
    while todo and len(found) < LOCAL_MODULES_MAX:
        current = todo.pop()
        try:
            tree = ast.parse(current.read_bytes())
        except (OSError, SyntaxError, ValueError):
            continue  # unreadable or broken: the child that imports it says so
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                for sibling in _sibling_files(folder, name.partition(".")[0]):
                    if sibling != path and sibling not in found:
                        found.add(sibling)
                        todo.append(sibling)
    return sorted(found)[:LOCAL_MODULES_MAX]


def _sibling_files(folder: Path, name: str) -> list[Path]:
    """The files of module `name` in `folder`: name.py, or a package folder's .py files."""
    module = folder / f"{name}.py"
    if module.is_file():
        return [module]
    package = folder / name
    if package.is_dir():
        return sorted(p for p in package.rglob("*.py") if p.is_file())[:LOCAL_MODULES_MAX]
    return []


class OwnModelSpec(ArchSpec):
    """A model file's measured figures (a dict from cockpit/train/measure.py) as an ArchSpec."""

    activation_checkpointing = False
    measured = True
    pending = False  # not measured yet: every figure is 0 until the measuring child has run

    def __init__(self, arch: str, figures: dict[str, Any]) -> None:
        self.name = arch
        self.description = f"your own model {arch}"
        self.figures = figures

    def count_params(self, m: ModelConfig) -> int:
        return int(self.figures["params"])

    def matrix_params(self, m: ModelConfig) -> int:
        return int(self.figures["matrix_params"])

    def token_embedding_params(self, m: ModelConfig) -> int:
        return int(self.figures["embedding_params"])

    def flops_per_token(self, m: ModelConfig) -> float:
        return float(self.figures["flops_per_token"])

    def matmul_params(self, m: ModelConfig) -> int:
        return int(self.figures["matmul_params"])

    def layer_activation_bytes(self, m: ModelConfig, batch: int, dtype: str, *, flash: bool) -> int:
        return 0  # not modelled: the memory of your own model is traced (cockpit/train/trace.py)

    def outside_blocks_bytes(self, m: ModelConfig, tokens: int, dtype: str) -> int:
        return 0

    def tied_head(self, m: ModelConfig) -> bool:
        return False
