"""An eager training child need not load torch's compiler: torch._dynamo waits until it is used.

torch.optim imports torch._dynamo the first time an optimizer is built or stepped, to mark
its code "not to be compiled" (`torch._disable_dynamo`) and to break a graph around a step
(`_use_grad_for_differentiable`). Outside torch.compile both are no-ops, yet the import
(sympy and the whole compiler) costs about 1.2 s of CPU, as much as torch itself: a third
of the start of a tiny run on CPU, paid by every launch and every resume.

`defer_dynamo()` puts a stand-in at `torch._dynamo` that answers those two calls as the real
ones do outside a compile (the function unchanged; nothing) and loads the real module the
moment anything else of it is asked for (torch.compile, DDP, FSDP, a submodule): from then on
it only forwards (activation checkpointing reads torch._dynamo.config at its first step, so
such a run loads it there). The training child installs it only for an eager run on the CPU (a
CUDA run keeps torch's own path), the measuring child always (FlopCounterMode asks no more of
it); a process that already loaded torch._dynamo keeps it.
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
