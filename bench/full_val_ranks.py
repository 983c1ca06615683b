"""The full-val eval (train.eval_full_val) on 1 rank and on W ranks (gloo on CPU), side by side.

Each rank sets a small char-level model up on tiny Shakespeare (the real Trainer.setup:
DDP-wrapped, or FSDP2-sharded with --parallel fsdp), warms up with one eval, then times
--repeats evals (a barrier before each); one torch thread per rank, so W ranks use W cores.
Rounds alternate which world size goes first. Prints each round's median eval seconds of
both, the ratio W ranks / 1 rank (1/W is the goal: each rank evaluates 1/W of the windows),
the same for the CPU seconds of rank 0's evals (the work per rank, which a loaded machine
does not blur), the load average, and how far the W-rank val loss is from the 1-rank one.

    python bench/full_val_ranks.py [--data PATH] [--ranks 2] [--rounds 3] [--parallel ddp]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cockpit import rundir  # noqa: E402
from cockpit.plan.presets import Preset, apply_overrides  # noqa: E402

DATA = "/work/shared/data/tinyshakespeare.txt"
SHAPE = [
    "model.n_layer=2",
    "model.n_head=4",
    "model.n_embd=128",
    "model.block_size=128",
    "model.vocab_size=96",
    "model.dropout=0.0",
    "train.batch_size=16",
    "train.eval_full_val=true",
    "data.tokenizer=char",
]


def worker(run_dir: str, repeats: int, out: str) -> None:
    """One rank: set up, one warm-up eval, `repeats` timed evals; writes OUT.<rank>.json."""
    import torch

    torch.set_num_threads(1)
    from cockpit.train.loop import Trainer

    tr = Trainer(run_dir, device="cpu", write_run_info=False, write_checkpoints=False)
    tr.setup()
    tr.model.eval()
    barrier = (lambda: None) if tr.dist.world_size == 1 else torch.distributed.barrier
    loss, _ = tr.evaluator.full_val_loss(tr.state.micro_batch)
    times, cpu = [], []
    for _ in range(repeats):
        barrier()
        start, cpu_start = time.perf_counter(), time.process_time()
        loss, _ = tr.evaluator.full_val_loss(tr.state.micro_batch)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    figures = {
        "times": times,
        "cpu": cpu,
        "loss": loss,
        "windows": (len(tr.data.val) - 1) // tr.preset.model.block_size,
    }
    Path(f"{out}.{tr.dist.rank}.json").write_text(json.dumps(figures), encoding="utf-8")
    if tr.dist.world_size > 1:
        torch.distributed.destroy_process_group()


def run_world(run_dir: Path, world: int, repeats: int, out: Path) -> dict:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    env = dict(os.environ, WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, __file__, "--worker", str(run_dir), str(repeats), str(out)]
    procs = [
        subprocess.Popen(cmd, env=dict(env, RANK=str(r), LOCAL_RANK=str(r))) for r in range(world)
    ]
    for proc in procs:
        if proc.wait(timeout=600) != 0:
            raise SystemExit(f"a rank of world size {world} failed ({proc.returncode})")
    return json.loads(Path(f"{out}.0.json").read_text(encoding="utf-8"))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parallel", default="ddp", choices=["ddp", "fsdp"])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="full_val_ranks_"))
    for var, sub in (("GPT_COCKPIT_CACHE", "cache"), ("GPT_COCKPIT_STATE", "state")):
        os.environ.setdefault(var, str(root / sub))
    overrides = [*SHAPE, f"data.source={args.data}", f"train.parallel={args.parallel}"]
    run_dir = rundir.create_run_dir(
        apply_overrides(Preset(name="full_val"), overrides), root / "run"
    )
    load = os.getloadavg()
    print(f"uptime before: {load[0]:.2f} {load[1]:.2f} ({os.cpu_count()} CPUs)")
    print(
        f"{args.parallel}, {args.ranks} ranks vs 1, one thread each, {args.repeats} evals a round"
    )
    print("round  1 rank s  W ranks s  ratio | CPU s: 1 rank  rank 0  ratio | load  loss rel. diff")
    ratios, cpu_ratios = [], []
    for n in range(args.rounds):
        order = (1, args.ranks) if n % 2 == 0 else (args.ranks, 1)
        got = {w: run_world(run_dir, w, args.repeats, root / f"r{n}w{w}") for w in order}
        one, many = (statistics.median(got[w]["times"]) for w in (1, args.ranks))
        cpu_one, cpu_many = (statistics.median(got[w]["cpu"]) for w in (1, args.ranks))
        ratios.append(many / one)
        cpu_ratios.append(cpu_many / cpu_one)
        rel = abs(got[args.ranks]["loss"] - got[1]["loss"]) / got[1]["loss"]
        print(
            f"{n + 1:5d} {one:9.3f} {many:10.3f} {ratios[-1]:6.3f} |"
            f" {cpu_one:13.3f} {cpu_many:7.3f} {cpu_ratios[-1]:6.3f} |"
            f" {os.getloadavg()[0]:4.2f}  {rel:.2e}"
        )
    print(
        f"windows: {got[1]['windows']}; median ratios: wall {statistics.median(ratios):.3f},"
        f" CPU per rank {statistics.median(cpu_ratios):.3f} (goal 1/W = {1 / args.ranks:.3f})"
    )
    print(f"uptime after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")


if __name__ == "__main__":
    main()
