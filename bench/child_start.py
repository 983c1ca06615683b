"""CPU and peak memory of a training child's whole life on a one-step tiny run, with torch's
compiler deferred (`python -m cockpit.train`, as runs.launch starts it) and without (the same
entry point called as a library, which leaves torch._dynamo to load as torch.optim asks).

    PYTHONPATH=$PWD python bench/child_start.py [-n 10]

The two are run in turn (A B A B ...) on fresh copies of one run directory, so a drift in the
machine's speed reaches both; figures are the child's own rusage from wait4 (user + system
CPU, peak RSS), printed as min / median / max.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from tiny_runs import make_run  # noqa: E402

DEFERRED = [sys.executable, "-m", "cockpit.train"]
LOADED = [
    sys.executable,
    "-c",
    "import sys; from cockpit.train.__main__ import main; sys.exit(main())",
]


def run_once(argv: list[str], template: Path, scratch: Path) -> tuple[float, float]:
    """(CPU s, peak RSS MiB) of one child training a fresh copy of the template run."""
    run_dir = scratch / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(template, run_dir)
    env = dict(os.environ, GPT_COCKPIT_CPU_THREADS="1")
    cmd = [*argv, "--run-dir", str(run_dir), "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"the child failed ({proc.returncode}): {proc.stderr.read().decode()}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # ru_maxrss: KiB on Linux


def spread(values: list[float]) -> str:
    return f"{min(values):7.2f} {statistics.median(values):7.2f} {max(values):7.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="runs of each (after one warm-up each)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        template = make_run(root, "train.max_steps=1", "train.eval_interval=1", name="template")
        got: dict[str, list[tuple[float, float]]] = {"deferred": [], "loaded": []}
        for i in range(args.n + 1):
            for label, argv in (("deferred", DEFERRED), ("loaded", LOADED)):
                figures = run_once(argv, template, root)
                if i:  # the first of each warms the file cache
                    got[label].append(figures)
    print(f"one-step tiny run, {args.n} runs each, load average {os.getloadavg()[0]:.1f}")
    print("                          min  median     max")
    for label, rows in got.items():
        print(f"{label:9} CPU s       {spread([r[0] for r in rows])}")
        print(f"{label:9} peak MiB    {spread([r[1] for r in rows])}")
    ratios = [a[0] / b[0] for a, b in zip(got["deferred"], got["loaded"], strict=True)]
    print(f"deferred/loaded CPU {spread(ratios)}")


if __name__ == "__main__":
    main()
