"""The modules the engine trains: one file per architecture, and the registry that builds them.

gpt.py (nanoGPT), golf.py (the parameter-golf baseline) and bdh.py (BDH) hold the torch modules
whose sizes and rules cockpit/arch/<name>.py describes; own.py wraps a model file of yours
(model.arch = PATH.py:ClassName). tests/test_arch_registry.py checks that the registry's names
are cockpit.arch's and that every built-in preset's module has the spec's parameter count.
"""

from __future__ import annotations

from cockpit import arch as archs
from cockpit.plan.presets import ModelConfig
from cockpit.train.models.base import (
    LanguageModel,
    causal_attention,
    chunked_cross_entropy,
    softcapped,
)
from cockpit.train.models.bdh import BDH
from cockpit.train.models.golf import GolfGPT
from cockpit.train.models.gpt import GPT

ARCHITECTURES: dict[str, type[LanguageModel]] = {"gpt": GPT, "golf": GolfGPT, "bdh": BDH}

__all__ = [
    "ARCHITECTURES",
    "BDH",
    "GPT",
    "GolfGPT",
    "LanguageModel",
    "build_model",
    "causal_attention",
    "chunked_cross_entropy",
    "softcapped",
]


def build_model(cfg: ModelConfig) -> LanguageModel:
    """The module for `cfg.arch`, initialised (on the default device).

    NotImplementedError for an architecture the engine has no module for; a model file of your
    own that cannot be used raises own.OwnModelError (one line naming the file)."""
    if archs.is_own_model(cfg.arch):
        from cockpit.train.models.own import OwnModel

        return OwnModel(cfg)
    try:
        cls = ARCHITECTURES[cfg.arch]
    except KeyError:
        raise NotImplementedError(f"no model for architecture {cfg.arch!r}") from None
    model = cls(cfg)
    model.loss_chunk = cfg.loss_chunk
    return model
