"""The full-val eval (train.eval_full_val) of a run directory's model as set up, on several
lengths of its validation split: in process for one rank, or as a torchrun script for several.

    python -m torch.distributed.run --standalone --nproc-per-node 2 full_val_ranks.py RUN OUT

Each rank sets the run up (DDP-wrapped on several ranks), computes (val loss, tokens per
byte) for every case of CASES, then does it again with a copy of the model sharded by
train/sharded.shard_model (FSDP2), and writes {"ddp": [...], "fsdp": [...]} to OUT.<rank>.json.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

# (validation windows, micro-batch): None is the whole split. On 2 ranks: an uneven split of
# micro-batches (5 windows in 2s: 1 on rank 0, 2 on rank 1), an even one, one window (fewer
# windows than ranks: rank 0 has none).
CASES: tuple[tuple[int | None, int], ...] = ((None, 4), (5, 2), (4, 2), (1, 4))


def figures(tr: Any) -> list[tuple[float, float | None]]:
    """full_val_loss of every case of CASES."""
    val, T = tr.data.val, tr.preset.model.block_size
    out = []
    for windows, micro in CASES:
        tr.data.val = val if windows is None else val[: windows * T + 1]
        out.append(tr.full_val_loss(micro))
    tr.data.val = val
    return out


def evaluator(run_dir: str) -> Any:
    """The Evaluator of the run's Trainer, set up (not trained), its model in eval mode."""
    from cockpit.train.loop import Trainer

    tr = Trainer(run_dir, device="cpu", write_run_info=False, write_checkpoints=False)
    tr.setup()
    tr.model.eval()
    return tr.evaluator


def main(run_dir: str, out: str) -> None:
    from cockpit.train.dist import destroy_group
    from cockpit.train.sharded import shard_model

    tr = evaluator(run_dir)
    result = {"ddp": figures(tr)}
    sharded = copy.deepcopy(tr.raw_model)
    shard_model(sharded)
    tr = dataclasses.replace(tr, model=sharded, fsdp=True)
    result["fsdp"] = figures(tr)
    Path(f"{out}.{tr.dist.rank}.json").write_text(json.dumps(result), encoding="utf-8")
    destroy_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    # Its figures written and the group left, the rank skips the interpreter's teardown: there
    # gloo's and the TCPStore's C++ threads (rank 0 hosts the store here, no torchrun) were seen
    # to abort a finished rank once ("terminate called without an active exception", -6),
    # which the test would read as a failed eval.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
