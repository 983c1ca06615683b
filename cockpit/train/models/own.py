"""Your own model (model.arch = PATH.py:ClassName), wrapped so the engine trains it as its own.

The file is imported here, in the training child and the planning children only (the tracer,
the measuring child): never in the app or the core. Its folder goes on sys.path first, so it
can import the modules beside it, as it could when run as a script. The class is built as nanoGPT builds its
GPT, `ClassName(config)`, where `config` has every field of the model section as an attribute
(block_size, vocab_size, n_layer, n_head, n_embd, dropout, bias, ... and the section's extra
keys), and `forward(idx, targets=None)` returns `(logits, loss)`.

OwnModel holds the module as `net` and gives it what the engine asks of a model: the loss
through forward, AdamW's decay groups, and sampling (the module's own `generate` where it has
one and no vocabulary limit is needed, else our sampler over its logits).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn as nn

from cockpit.arch import resolve_model_file, split_own_model
from cockpit.plan.presets import ModelConfig
from cockpit.train.models.base import LanguageModel
from cockpit.train.runtime import EngineError


class OwnModelError(EngineError):
    """A model file that cannot be used; the message is one line naming the file and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="arch")


def model_config(cfg: ModelConfig) -> SimpleNamespace:
    """The `config` a nanoGPT-style class is built with: the model section's fields and extra keys."""
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    extra = fields.pop("extra", {}) or {}
    return SimpleNamespace(**fields, **extra)


def _short(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_class(arch: str) -> tuple[Path, type[nn.Module]]:
    """Import PATH.py and return (the file, ClassName); OwnModelError saying what is wrong."""
    _, name = split_own_model(arch)
    path = resolve_model_file(arch)
    if not path.is_file():
        raise OwnModelError(f"{path}: no such file")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    module_name = f"cockpit_own_model_{path.stem}_{digest}"
    folder = str(path.parent)
    if folder not in sys.path:
        # its siblings import as they do for `python model.py` (`from my_blocks import Block`),
        # first on the path as a script's folder is; kept there for imports made later (inside
        # forward, by unpickling, by torch.compile)
        sys.path.insert(0, folder)
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise OwnModelError(f"{path}: cannot be imported as a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # pickling and torch.compile find classes by module
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:  # SyntaxError, ImportError, anything its top level raises
            del sys.modules[module_name]
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise OwnModelError(f"{path}: failed to import ({_short(exc)})") from None
    cls = getattr(module, name, None)
    if cls is None:
        raise OwnModelError(f"{path}: has no class {name}")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise OwnModelError(f"{path}: {name} is not a torch.nn.Module class")
    _check_signatures(path, cls)
    return path, cls


def _check_signatures(path: Path, cls: type[nn.Module]) -> None:
    """ClassName(config) and forward(idx, targets=None), as nanoGPT's GPT has them."""
    name = cls.__name__
    try:
        inspect.signature(cls).bind(object())
    except TypeError:
        raise OwnModelError(
            f"{path}: {name}{inspect.signature(cls)} must take one argument, the config"
        ) from None
    except ValueError:
        pass  # no signature to read (a C extension's class): building it will tell
    try:
        forward = inspect.signature(cls.forward)
        forward.bind(object(), object())
        forward.bind(object(), object(), None)
    except TypeError:
        raise OwnModelError(
            f"{path}: {name}.forward{inspect.signature(cls.forward)} must be forward(idx, targets=None)"
        ) from None
    except ValueError:
        pass


class OwnModel(LanguageModel):
    """A model file of yours, as the engine's model: `net` is your module, unchanged."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        path, cls = load_class(cfg.arch)
        self.block_size = cfg.block_size
        self.vocab_size = cfg.vocab_size
        try:
            self.net = cls(model_config(cfg))
        except Exception as exc:
            raise OwnModelError(f"{path}: {cls.__name__}(config) failed ({_short(exc)})") from None
        # checkpointing is the module's own, where it has set_activation_checkpointing
        self.checkpointing_supported = hasattr(self.net, "set_activation_checkpointing")

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.net(idx, targets)

    def export_module(self) -> nn.Module:
        return self.net

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Passed on to your module where it has the method (setup says when it has not)."""
        setter = getattr(self.net, "set_activation_checkpointing", None)
        if setter is not None:
            setter(enabled)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        vocab_limit: int | None = None,
    ) -> torch.Tensor:
        """Your module's generate (nanoGPT's signature) where it has one and every id it may draw
        can be decoded; else our sampler over the logits its forward returns."""
        own = getattr(self.net, "generate", None)
        if own is not None and (vocab_limit is None or vocab_limit >= self.vocab_size):
            return own(idx, max_new_tokens, temperature=temperature, top_k=top_k)
        return super().generate(idx, max_new_tokens, temperature, top_k, vocab_limit)


def describe(cfg: ModelConfig) -> dict[str, Any]:
    """Where the model came from, for an export's config: the file, its class and its hash."""
    path, _ = load_class(cfg.arch)
    return {
        "file": str(path),
        "class": split_own_model(cfg.arch)[1],
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
