"""Run a test folder several times beside busy-looping processes: flakes that a loaded CI
machine provokes (a fixed sleep, a raced debounce, a notice read after its timeout) show here.

    python bench/tests_under_load.py tests/tui --busy 6 --rounds 3 [-- -n 2 --dist loadfile]

Each round is one pytest run; the report gives its exit code, wall seconds, the load average
and the failed tests. The busy processes are this script's children and end with it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

BUSY_LOOP = "while True: pass"


def run_rounds(
    target: str, rounds: int, pytest_args: list[str]
) -> list[tuple[int, float, list[str]]]:
    """`rounds` pytest runs of `target`: (exit code, wall seconds, failed test ids) each."""
    results = []
    for number in range(1, rounds + 1):
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", target, *pytest_args],
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - started
        failed = [
            line.split(" ", 1)[1].split(" - ")[0]
            for line in proc.stdout.splitlines()
            if line.startswith(("FAILED ", "ERROR "))
        ]
        summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"round {number}: exit {proc.returncode}, {wall:.0f} s, load {load}: {summary}")
        for test in failed:
            print(f"  failed: {test}")
        results.append((proc.returncode, wall, failed))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run tests beside busy processes, several times.")
    parser.add_argument("target", help="a test file or folder")
    parser.add_argument("--busy", type=int, default=6, help="busy-looping processes beside it")
    parser.add_argument("--rounds", type=int, default=3)
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)  # what follows -- goes to pytest
    args = parser.parse_args(argv[:cut])
    args.pytest_args = argv[cut + 1 :]
    print(
        f"{args.target}: {args.rounds} rounds beside {args.busy} busy processes, "
        f"{os.cpu_count()} CPUs, load {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(args.busy)]
    try:
        results = run_rounds(args.target, args.rounds, args.pytest_args)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    failing = sum(1 for code, _, _ in results if code != 0)
    print(f"{len(results) - failing}/{len(results)} rounds passed")
    return 1 if failing else 0


if __name__ == "__main__":
    raise SystemExit(main())
