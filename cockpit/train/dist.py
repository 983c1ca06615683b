"""The engine under torchrun: the process group, each rank's slice of the batch, and rank failures.

torchrun (`python -m torch.distributed.run`) starts one process per rank with
RANK / LOCAL_RANK / WORLD_SIZE set (`runtime.dist_from_env`). Here:

- `init_group` joins the job: NCCL on CUDA (each rank binds GPU LOCAL_RANK first),
  gloo on CPU (no CUDA call at all), with a process-group timeout of
  `group_timeout_s()` seconds (COCKPIT_DIST_TIMEOUT_S, default 300: long enough for a
  big checkpoint written by rank 0 while the others wait, short of NCCL's 10 minutes).
- `RankSampler` gives each rank its slice of the global batch: the window starts come
  from one seeded generator that every rank advances alike, and rank r reads
  sequences [r*n, (r+1)*n) of each step's n*world_size. So a run on W ranks trains on
  exactly the batches of a 1-process run with the same global batch and seed, and each
  rank's position (saved per rank in checkpoints) resumes exactly.
- A rank that raises publishes its cause in torchrun's store before it exits; rank 0,
  when a collective fails, names the rank and the cause (`peer_failure`), or, for a
  rank that died without a word (SIGKILL, the OOM killer), its pid and that it died.
  torchrun itself notices a dead worker within its monitor interval (0.1 s) and
  sends SIGTERM to the others, so the run ends within seconds, not at a timeout.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import time
from typing import Any

import torch

from cockpit.train.data import BatchSampler
from cockpit.train.runtime import Dist, EngineError, one_line

DEFAULT_TIMEOUT_S = 300.0
_PREFIX = "cockpit/"


def group_timeout_s() -> float:
    """The process-group timeout: COCKPIT_DIST_TIMEOUT_S seconds, default 300."""
    try:
        value = float(os.environ.get("COCKPIT_DIST_TIMEOUT_S", "") or DEFAULT_TIMEOUT_S)
    except ValueError:
        value = DEFAULT_TIMEOUT_S
    return value if value > 0 else DEFAULT_TIMEOUT_S


def backend_for(requested: str) -> str:
    """nccl when the ranks train on CUDA GPUs, gloo on CPU."""
    if requested == "cpu":
        return "gloo"
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise EngineError(
                f"--device cuda was asked for but torch {torch.__version__} sees no CUDA GPU; use --device cpu",
                kind="device",
            )
        return "nccl"
    return "gloo"


def init_group(requested: str, dist: Dist) -> torch.device:
    """Join the torchrun job; the device this rank trains on."""
    import torch.distributed as tdist

    backend = backend_for(requested)
    timeout = datetime.timedelta(seconds=group_timeout_s())
    if backend == "nccl":
        if dist.local_rank >= torch.cuda.device_count():
            raise EngineError(
                f"rank {dist.rank} has local rank {dist.local_rank} but this node has "
                f"{torch.cuda.device_count()} GPU(s); use --nproc {torch.cuda.device_count()} or fewer",
                kind="device",
            )
        torch.cuda.set_device(dist.local_rank)  # before NCCL starts, so each rank binds its own GPU
        device = torch.device("cuda", dist.local_rank)
        tdist.init_process_group(backend="nccl", timeout=timeout, device_id=device)
    else:
        device = torch.device("cpu")
        tdist.init_process_group(backend="gloo", timeout=timeout)
    publish(f"pid/{dist.rank}", f"{socket.gethostname()}:{os.getpid()}")
    return device


def seed_rank(seed: int, dist: Dist) -> None:
    """A torch RNG stream of this rank's own (dropout) once the model is built; rank 0 keeps the seed's."""
    if dist.rank:
        torch.manual_seed(seed + 7919 * dist.rank)


def accum_per_rank(grad_accum: int, world_size: int, keep_global_batch: bool) -> int:
    """Micro-batches per rank and step: the preset's, or (keep_global_batch, as golf's reference
    does) the preset's divided by the world size so the tokens per step stay the preset's."""
    if not keep_global_batch or world_size <= 1:
        return grad_accum
    if grad_accum % world_size:
        raise EngineError(
            f"train.grad_accum={grad_accum} does not divide by the {world_size} ranks; "
            "keeping the global batch needs a multiple of the world size",
            kind="dist",
        )
    return grad_accum // world_size


class RankSampler(BatchSampler):
    """This rank's slice of each global batch (see the module's docstring)."""

    def __init__(
        self,
        tokens: Any,
        block_size: int,
        seed: int,
        device: torch.device | str,
        rank: int,
        world_size: int,
    ) -> None:
        super().__init__(tokens, block_size, seed, device)
        self.rank, self.world_size = rank, world_size

    def _starts(self, n: int) -> torch.Tensor:
        starts = super()._starts(n * self.world_size)
        return starts[self.rank * n : (self.rank + 1) * n]


# --------------------------------------------------------------------------- collectives


def all_gather(obj: Any, dist: Dist) -> list[Any]:
    """Every rank's `obj`, in rank order (a collective: every rank calls it)."""
    if dist.world_size <= 1:
        return [obj]
    import torch.distributed as tdist

    out: list[Any] = [None] * dist.world_size
    tdist.all_gather_object(out, obj)
    return out


def reduce_sum(value: torch.Tensor, dist: Dist) -> torch.Tensor:
    """`value` summed over the ranks (in place; a collective)."""
    if dist.world_size > 1:
        import torch.distributed as tdist

        tdist.all_reduce(value)
    return value


def reduce_max(value: torch.Tensor, dist: Dist) -> torch.Tensor:
    """The element-wise maximum of `value` over the ranks (in place; a collective)."""
    if dist.world_size > 1:
        import torch.distributed as tdist

        tdist.all_reduce(value, op=tdist.ReduceOp.MAX)
    return value


def from_master(obj: Any, dist: Dist) -> Any:
    """Rank 0's `obj` on every rank (a collective), so every rank takes rank 0's decision."""
    if dist.world_size <= 1:
        return obj
    import torch.distributed as tdist

    box = [obj if dist.master else None]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


# --------------------------------------------------------------------------- out of memory


def torchrun_world() -> int:
    """The process group's size (1 without one): what the step's out-of-memory retry asks."""
    import torch.distributed as tdist

    return tdist.get_world_size() if tdist.is_available() and tdist.is_initialized() else 1


def rank_out_of_memory(ran_out: bool, device: torch.device) -> int | None:
    """The highest rank that ran out of memory in this step, the same on every rank; None when
    none did (a collective, and a host sync).

    How the ranks agree on an out-of-memory error before any of them retries: a rank
    that ran out calls it with True where the others, having finished their micro-batches,
    call it with False, so every rank leaves with the same answer and takes the same split.
    """
    import torch.distributed as tdist

    value = torch.tensor([tdist.get_rank() + 1 if ran_out else 0], device=device)
    tdist.all_reduce(value, op=tdist.ReduceOp.MAX)
    highest = int(value.item())
    return highest - 1 if highest else None


def torchrun_rank() -> int:
    """This process's rank in the process group (0 without one)."""
    import torch.distributed as tdist

    return tdist.get_rank() if tdist.is_available() and tdist.is_initialized() else 0


def average_gradients(params: list[torch.Tensor], world_size: int) -> None:
    """Every gradient all-reduced to the mean over the ranks (what DDP's reducer does), in
    flat buckets of about 25 MiB (a collective: every rank calls it alike)."""
    import torch.distributed as tdist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    grads = [p.grad for p in params if p.grad is not None]
    bucket: list[torch.Tensor] = []
    size = 0
    for i, grad in enumerate(grads):
        bucket.append(grad)
        size += grad.numel() * grad.element_size()
        follows = grads[i + 1] if i + 1 < len(grads) else None
        same = follows is not None and (follows.dtype, follows.device) == (grad.dtype, grad.device)
        if size >= 25 * 2**20 or not same:  # one flat buffer holds one dtype on one device
            flat = _flatten_dense_tensors(bucket)
            tdist.all_reduce(flat)
            flat.div_(world_size)
            for grad_, reduced in zip(bucket, _unflatten_dense_tensors(flat, bucket), strict=True):
                grad_.copy_(reduced)
            bucket, size = [], 0


# --------------------------------------------------------------------------- failures


def _store() -> Any:
    import torch.distributed as tdist

    if not tdist.is_initialized():
        return None
    return tdist.distributed_c10d._get_default_store()


def publish(key: str, value: str) -> None:
    """Put `value` under `key` in torchrun's store (best effort: never raises)."""
    with contextlib.suppress(Exception):
        store = _store()
        if store is not None:
            store.set(_PREFIX + key, value)


def _read(store: Any, key: str) -> str | None:
    with contextlib.suppress(Exception):
        if store.check([_PREFIX + key]):
            return bytes(store.get(_PREFIX + key)).decode("utf-8", "replace")
    return None


def publish_failure(dist: Dist, reason: str, kind: str, message: str) -> None:
    """This rank's cause of failure, for rank 0 to name in the run's `error` event."""
    if dist.world_size > 1:
        publish(f"error/{dist.rank}", f"{reason}\t{kind}\t{one_line(message, 400)}")


def _dead_local_rank(store: Any, dist: Dist) -> tuple[int, int] | None:
    """(rank, pid) of a rank on this node whose process is gone."""
    from cockpit.rundir import pid_alive

    host = socket.gethostname()
    for rank in range(dist.world_size):
        if rank == dist.rank:
            continue
        where = _read(store, f"pid/{rank}")
        if not where or ":" not in where:
            continue
        rank_host, pid = where.rsplit(":", 1)
        if rank_host == host and pid.isdigit() and not pid_alive(int(pid)):
            return rank, int(pid)
    return None


def peer_failure(dist: Dist, wait_s: float = 3.0) -> tuple[str, str, str] | None:
    """(end reason, error kind, one line naming the rank) of another rank's failure; None when
    no rank says why within `wait_s` seconds and none on this node is gone."""
    if dist.world_size <= 1:
        return None
    store = None
    with contextlib.suppress(Exception):
        store = _store()
    if store is None:
        return None
    deadline = time.monotonic() + wait_s
    while True:
        dead = _dead_local_rank(
            store, dist
        )  # looked at before the causes: a cause comes before a death
        for rank in range(dist.world_size):
            cause = _read(store, f"error/{rank}") if rank != dist.rank else None
            if cause:
                reason, kind, message = (cause.split("\t", 2) + ["", ""])[:3]
                return reason or "crashed", kind or "rank_failed", f"rank {rank} failed: {message}"
        if dead is not None:
            rank, pid = dead
            return (
                "crashed",
                "rank_died",
                f"rank {rank} (pid {pid}) died without an error (killed by a signal, "
                "or by the system for lack of memory?); the other ranks stopped",
            )
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def destroy_group() -> None:
    """Leave the process group (best effort)."""
    with contextlib.suppress(Exception):
        import torch.distributed as tdist

        if tdist.is_initialized():
            tdist.destroy_process_group()
