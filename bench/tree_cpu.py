"""Wall time and the CPU time of a command's whole process tree, detached processes included.

The suite_cpu plugin counts a test and the children it waits for; a detached scheduler, its
training children and a Slurm job's processes (slurmd's, not the test's) escape it. This
wrapper makes itself the child subreaper (Linux prctl PR_SET_CHILD_SUBREAPER): every orphan
below it is re-parented here and reaped, so RUSAGE_CHILDREN holds the CPU of the whole tree.

    PYTHONPATH=$PWD python bench/tree_cpu.py python -m pytest -q tests/test_queue_e2e.py

prints one line on stderr after the command's own output, and exits with the command's code:

    tree: wall 15.7 s, cpu 14.6 s (user 13.2, sys 1.4), exit 0, load average 3.82
"""

from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
ORPHAN_WAIT_S = 60.0  # how long to wait for processes left running after the command ends


def main(argv: list[str]) -> int:
    """Run argv, reap every orphan it leaves, print the tree's wall and CPU seconds."""
    if not argv:
        print("usage: tree_cpu.py COMMAND [ARGS...]", file=sys.stderr)
        return 2
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(
            "tree_cpu: prctl(PR_SET_CHILD_SUBREAPER) failed: orphans are not counted",
            file=sys.stderr,
        )
    started = time.perf_counter()
    code = subprocess.call(argv)
    wall = time.perf_counter() - started
    deadline = time.monotonic() + ORPHAN_WAIT_S
    while time.monotonic() < deadline:  # what the command left running (a detached child)
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.1)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    print(
        f"tree: wall {wall:.1f} s, cpu {cpu:.1f} s (user {usage.ru_utime:.1f}, "
        f"sys {usage.ru_stime:.1f}), exit {code}, load average {os.getloadavg()[0]:.2f}",
        file=sys.stderr,
    )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
