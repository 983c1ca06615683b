"""The measuring child: your own model's parameter count and FLOPs, and the checks before a run.

`python -m cockpit.train.measure --preset-json JSON` prints one JSON line
{"params", "matrix_params", "embedding_params", "matmul_params", "flops_per_token", "seconds"},
or exits 2 with one line on stderr naming the model file and what is wrong with it: it does
not import, has no such class, the class is not built as ClassName(config), forward is not
forward(idx, targets=None), or forward returns something other than (logits, loss) with
logits of shape (batch, time, vocab_size) and a scalar loss.

Everything runs on the meta device: the module is built without memory, and one training
step's forward and backward (batch 2, a full block) runs under torch's FlopCounterMode, which
counts each matmul's FLOPs from the shapes alone. The planning core keeps the figures by the
file's content hash (cockpit/plan/measure.py); the app and the core never import the file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import torch

from cockpit.plan.presets import Preset, preset_from_dict
from cockpit.train.models import build_model
from cockpit.train.models.own import OwnModelError, _short, load_class
from cockpit.train.optim import param_roles

BATCH = 2  # sequences of the measured step: two, so a batch dimension confused with another shows


def _unique_numel(tensors: Any) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        seen[id(t)] = t.numel()
    return sum(seen.values())


def _check_logits(where: str, out: Any, batch: int, time_: int | None, vocab: int) -> Any:
    """(logits, loss) with logits (batch, time or 1, vocab); OwnModelError saying what came back."""
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        got = f"a {type(out).__name__}" + (
            f" of {len(out)}" if isinstance(out, (tuple, list)) else ""
        )
        raise OwnModelError(f"{where} returned {got}, not (logits, loss)")
    logits, loss = out
    if not isinstance(logits, torch.Tensor):
        raise OwnModelError(
            f"{where} returned logits of type {type(logits).__name__}, not a tensor"
        )
    shape = tuple(logits.shape)
    ok = len(shape) == 3 and shape[0] == batch and shape[-1] == vocab
    ok = ok and (shape[1] == time_ if time_ is not None else shape[1] >= 1)
    if not ok:
        want = f"({batch}, {time_ if time_ is not None else 'T'}, {vocab})"
        raise OwnModelError(f"{where} returned logits of shape {shape}, expected {want}")
    return loss


def measure(preset: Preset) -> dict[str, Any]:
    """Build the model on the meta device, check its forward, count its parameters and FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    start = time.perf_counter()
    m = preset.model
    path, cls = load_class(m.arch)
    name = f"{path}: {cls.__name__}"
    with torch.device("meta"):
        model = build_model(m)
    model.train()
    T, V = m.block_size, m.vocab_size
    idx = torch.zeros((BATCH, T), dtype=torch.long, device="meta")
    try:
        with FlopCounterMode(display=False) as counter:
            loss = _check_logits(f"{name}.forward(idx, targets)", model(idx, idx), BATCH, T, V)
            if not (isinstance(loss, torch.Tensor) and loss.numel() == 1):
                raise OwnModelError(
                    f"{name}.forward(idx, targets) returned a loss of "
                    f"{'shape ' + str(tuple(loss.shape)) if isinstance(loss, torch.Tensor) else type(loss).__name__}, "
                    "not a scalar tensor"
                )
            loss.backward()
        with torch.no_grad():
            _check_logits(f"{name}.forward(idx)", model(idx), BATCH, None, V)
    except OwnModelError:
        raise
    except Exception as exc:  # an op the meta device cannot run, a shape mismatch inside
        raise OwnModelError(f"{name}: a training step failed ({_short(exc)})") from None
    roles = param_roles(model)
    linears = [mod.weight for mod in model.modules() if isinstance(mod, torch.nn.Linear)]
    return {
        "params": _unique_numel(model.parameters()),
        "matrix_params": _unique_numel(roles["matrix"]),
        "embedding_params": _unique_numel(roles["embed"]),
        "matmul_params": _unique_numel(linears),
        "flops_per_token": counter.get_total_flops() / (BATCH * T),
        "seconds": round(time.perf_counter() - start, 3),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure; exit 2 with one line on stderr when the model file cannot be used."""
    parser = argparse.ArgumentParser(prog="python -m cockpit.train.measure")
    parser.add_argument("--preset-json", required=True)
    args = parser.parse_args(argv)
    preset = preset_from_dict(json.loads(args.preset_json))
    try:
        figures = measure(preset)
    except OwnModelError as exc:
        print(f"measure: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    from cockpit.train.eager import defer_dynamo

    defer_dynamo()  # nothing here compiles: FlopCounterMode only asks torch._dynamo to stay out
    sys.exit(main())
