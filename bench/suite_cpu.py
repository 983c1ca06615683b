"""CPU time of the test suite per file and per test: a pytest plugin and its report.

Wall time on a shared machine says how loaded it was; CPU time (this process plus the children
it waited for) says what the tests cost. Each pytest process (each xdist worker) writes the
CPU seconds of every test, its setup and teardown included, to $SUITE_CPU_DIR/<worker>.json:

    SUITE_CPU_DIR=/tmp/cpu PYTHONPATH=$PWD:$PWD/bench \\
        python -m pytest -q -n 3 --dist loadfile -p suite_cpu
    python bench/suite_cpu.py /tmp/cpu [--top 30]

Children that are not waited for (detached runs, reparented grandchildren) are not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

_ROWS: list[tuple[str, float, float, float]] = []  # node id, self s, children s, wall s


def _cpu() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Measure one test from its setup to its teardown."""
    own, kids = _cpu()
    started = time.perf_counter()
    yield
    own2, kids2 = _cpu()
    _ROWS.append((item.nodeid, own2 - own, kids2 - kids, time.perf_counter() - started))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write this process's rows where $SUITE_CPU_DIR says."""
    folder = os.environ.get("SUITE_CPU_DIR")
    if folder:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        Path(folder, f"{worker}.json").write_text(json.dumps(_ROWS), encoding="utf-8")


def report(folder: Path, top: int) -> None:
    """Print the totals, each worker's share, the costliest files and tests."""
    rows = []
    for path in sorted(folder.glob("*.json")):
        rows += [(path.stem, *row) for row in json.loads(path.read_text(encoding="utf-8"))]
    files: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    workers: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for worker, node, own, kids, wall in rows:
        entry = files[node.split("::")[0]]
        entry[0] += own
        entry[1] += kids
        entry[2] += wall
        entry[3] += 1
        workers[worker][0] += own + kids
        workers[worker][1] += wall
    own_total = sum(r[2] for r in rows)
    kids_total = sum(r[3] for r in rows)
    print(
        f"CPU {own_total + kids_total:.1f} s (tests {own_total:.1f} s, children {kids_total:.1f} s)"
    )
    for worker, (cpu, wall) in sorted(workers.items()):
        print(f"  {worker}: CPU {cpu:.1f} s, wall {wall:.1f} s")
    print(f"\nfiles by CPU s (tests + children), wall s, tests: top {top}")
    ranked = sorted(files.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))
    for name, (own, kids, wall, count) in ranked[:top]:
        print(f"{own + kids:7.1f} {own:6.1f} {kids:6.1f}  wall {wall:6.1f}  n={count:3.0f}  {name}")
    print(f"\ntests by CPU s: top {top}")
    for _worker, node, own, kids, wall in sorted(rows, key=lambda r: -(r[2] + r[3]))[:top]:
        print(f"{own + kids:7.1f} {own:6.1f} {kids:6.1f}  wall {wall:6.1f}  {node}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the $SUITE_CPU_DIR of a run")
    parser.add_argument("--top", type=int, default=30, help="files and tests to list")
    args = parser.parse_args()
    report(args.folder, args.top)
