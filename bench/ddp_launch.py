"""CPU of a whole 2-rank torchrun run of the tiny model on the CPU: torchrun's launcher, its
ranks and everything they start, orphans included (this process is their child subreaper).

    PYTHONPATH=$PWD python bench/ddp_launch.py [-n 5] [--set train.parallel=fsdp ...]

Each run trains a fresh run directory (6 steps, an eval and a checkpoint at the end) as
`runs.launch` starts it with --nproc 2; figures are the user + system CPU seconds of every
process the run started (rusage of the reaped children), printed as min / median / max. Run it
from two trees in turn to compare them on the same load.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from tiny_runs import events_of, make_run  # noqa: E402

from cockpit import runs  # noqa: E402

PR_SET_CHILD_SUBREAPER = 36  # prctl(2): orphans of the run are reparented here and reaped


def children_cpu() -> float:
    """User + system CPU seconds of the reaped children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def reap_all() -> None:
    """Wait for every child left, the run's orphans included."""
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def one_run(root: Path, overrides: list[str]) -> tuple[float, float]:
    """(CPU s, wall s) of one 2-rank run of a fresh run directory under root."""
    run = make_run(root, "train.max_steps=6", "train.eval_interval=6", *overrides, name="run")
    before, started = children_cpu(), time.perf_counter()
    handle = runs.launch(run, device="cpu", ranks=runs.Ranks(nproc=2))
    code = handle.process.wait()
    reap_all()
    cpu, wall = children_cpu() - before, time.perf_counter() - started
    end = events_of(run, "end")
    if code != 0 or not end or end[-1]["reason"] != "finished":
        raise SystemExit(f"the run failed ({code}): {(run / 'console.log').read_text()[-2000:]}")
    return cpu, wall


def spread(values: list[float]) -> str:
    return f"{min(values):6.2f} {statistics.median(values):6.2f} {max(values):6.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="runs (after one warm-up)")
    parser.add_argument("--set", action="append", default=[], help="a preset override")
    args = parser.parse_args()
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemExit("prctl(PR_SET_CHILD_SUBREAPER) failed: orphans would not be counted")
    os.environ.setdefault("GPT_COCKPIT_CPU_THREADS", "1")
    cpus, walls = [], []
    for i in range(args.n + 1):
        with tempfile.TemporaryDirectory() as tmp:
            cpu, wall = one_run(Path(tmp), args.set)
        if i:  # the first run warms the page cache (and inductor's, for a compiled one)
            cpus.append(cpu)
            walls.append(wall)
    load = os.getloadavg()[0]
    print(f"2-rank run {' '.join(args.set) or '(ddp, eager)'}: {args.n} runs, load {load:.1f}")
    print(f"  CPU s  (min median max) {spread(cpus)}")
    print(f"  wall s (min median max) {spread(walls)}")


if __name__ == "__main__":
    main()
