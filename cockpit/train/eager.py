"""An eager training child need not load torch's compiler: torch._dynamo waits until it is used.

torch.optim imports torch._dynamo the first time an optimizer is built or stepped, to mark
its code "not to be compiled" (`torch._disable_dynamo`) and to break a graph around a step
(`_use_grad_for_differentiable`). Outside torch.compile both are no-ops, yet the import
(sympy and the whole compiler) costs about 1.2 s of CPU, as much as torch itself: a third
of the start of a tiny run on CPU, paid by every launch and every resume.

`defer_dynamo()` puts a stand-in at `torch._dynamo` that answers those two calls as the real
ones do outside a compile (the function unchanged; nothing), and the two a DDP rank asks of it
(clear the trace-rule caches as the process group starts; which reducer DDP builds), and loads
the real module the moment anything else of it is asked for (torch.compile, FSDP2's sharded
tensors, a submodule's import): from then on it only forwards (activation checkpointing reads
torch._dynamo.config at its first step, so such a run loads it there). The training child
installs it only for an eager run on the CPU (a CUDA run keeps torch's own path), the measuring
child always (FlopCounterMode asks no more of it); a process that already loaded torch._dynamo
keeps it.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

NAME = "torch._dynamo"
_LOCK = threading.Lock()  # the prefetch thread may be first to need the real module


class DeferredDynamo(types.ModuleType):
    """Stands at sys.modules['torch._dynamo'] until something needs the real compiler."""

    def __init__(self) -> None:
        super().__init__(NAME, __doc__)
        self.__dict__["_real"] = None

    def disable(
        self, fn: Callable[..., Any] | None = None, recursive: bool = True, **kw: Any
    ) -> Any:
        """The function itself: outside a compile nothing is compiled that it must be kept out of."""
        real = self.__dict__["_real"]
        if real is not None:
            return real.disable(fn, recursive, **kw)
        if fn is None:
            return lambda f: f
        return fn

    def graph_break(self, msg: str = "") -> None:
        """Nothing: outside a compile there is no graph to break."""
        real = self.__dict__["_real"]
        if real is not None:
            real.graph_break(msg)

    def __getattr__(self, name: str) -> Any:
        # inspect and pickle read __file__ and the like of every module: no load for them (and
        # __spec__ stays None: every `import torch._dynamo` reads it); a submodule's import
        # reads __path__, which needs the real package
        if name.startswith("__") and name != "__path__":
            raise AttributeError(name)
        if name in _ASKED_OUTSIDE_A_COMPILE and self.__dict__["_real"] is None:
            return _DeferredPart(self, name, _ASKED_OUTSIDE_A_COMPILE[name])
        return getattr(self.real(), name)

    def real(self) -> types.ModuleType:
        """The real torch._dynamo, imported now if it was not (then torch._dynamo is it)."""
        with _LOCK:
            real = self.__dict__["_real"]
            if real is None:
                if sys.modules.get(NAME) is self:
                    del sys.modules[NAME]
                real = importlib.import_module(NAME)  # sets torch._dynamo to the real module
                self.__dict__["_real"] = real
            return real


def _ddp_mode() -> str:
    """DistributedDataParallel's question at its construction: is a compile to fuse its
    gradient hooks ("python_reducer")? Only under torch.compile, and nothing compiles here:
    DDP keeps its C++ reducer, as with the real module's default ("ddp_optimizer")."""
    return "ddp_optimizer"


def _nothing_cached() -> None:
    """init_process_group clears dynamo's trace-rule caches: none were filled before it loads."""


# What torch asks of torch._dynamo outside a compile, answered without loading it, by its
# submodule then its attribute: a torchrun rank asks trace_rules as it joins the process group
# and utils as DDP wraps the model. The real import is about 0.9 s of CPU for each eager DDP
# rank (an FSDP2 rank still loads it: DTensor's sharding rules build a FakeTensorMode, which
# imports torch._dynamo.config).
_ASKED_OUTSIDE_A_COMPILE: dict[str, dict[str, Any]] = {
    "trace_rules": {"clear_lru_cache": _nothing_cached},
    "utils": {"get_optimize_ddp_mode": _ddp_mode},
}


class _DeferredPart:
    """A submodule of the stand-in: its known answers, and everything else from the real one."""

    def __init__(self, owner: DeferredDynamo, name: str, answers: dict[str, Any]) -> None:
        self._owner, self._name, self._answers = owner, name, answers

    def __getattr__(self, attr: str) -> Any:
        if attr in self._answers and self._owner.__dict__["_real"] is None:
            return self._answers[attr]
        return getattr(getattr(self._owner.real(), self._name), attr)


def defer_dynamo() -> bool:
    """Put the stand-in in place unless torch._dynamo is loaded already; True if it was put."""
    if NAME in sys.modules:
        return False
    # torch, loaded or not, finds it there: `import torch._dynamo` and torch's lazy
    # `torch._dynamo` attribute both read sys.modules
    sys.modules[NAME] = DeferredDynamo()
    return True


def dynamo_loaded() -> bool:
    """Whether the real torch._dynamo is loaded in this process."""
    module = sys.modules.get(NAME)
    if isinstance(module, DeferredDynamo):
        return module.__dict__["_real"] is not None
    return module is not None
