"""A CPU run's planned host RAM against the training child's peak resident memory.

For each micro-batch, a headless CPU run of the preset trains a few steps while the
training child's VmHWM (its peak resident set, /proc/PID/status) is read every 50 ms; the
plan is cockpit.plan.host.host_memory at that micro-batch. Linux only.

    python bench/host_ram.py [--preset tiny_char] [--batches 16,128] [--steps 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cockpit.common.format import human_bytes  # noqa: E402
from cockpit.plan.host import host_memory  # noqa: E402
from cockpit.plan.presets import apply_overrides, load_preset  # noqa: E402


def _hwm(pid: int) -> int:
    """The process's peak resident bytes so far (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _train_child(parent: int) -> int | None:
    import psutil

    try:
        for child in psutil.Process(parent).children(recursive=True):
            if "cockpit.train" in " ".join(child.cmdline()):
                return child.pid
    except psutil.Error:
        return None
    return None


def measure(preset_name: str, batch: int, steps: int, runs: Path) -> int:
    """Peak resident bytes of the training child of one headless CPU run."""
    cmd = [
        sys.executable,
        "-m",
        "cockpit",
        "--no-ui",
        "--preset",
        preset_name,
        "--device",
        "cpu",
        "--max-steps",
        str(steps),
        "--set",
        f"train.batch_size={batch}",
        "--set",
        "train.eval_interval=100000",
    ]
    env = {**os.environ, "GPT_COCKPIT_RUNS": str(runs), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    peak, child = 0, None
    while proc.poll() is None:
        child = child or _train_child(proc.pid)
        if child:
            peak = max(peak, _hwm(child))
        time.sleep(0.05)
    return peak


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="tiny_char")
    parser.add_argument("--batches", default="16,128")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"load: {load}")
    print(f"{'batch':>6} {'planned':>10} {'peak RSS':>10} {'plan vs peak':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for batch in (int(b) for b in args.batches.split(",")):
            preset = apply_overrides(load_preset(args.preset), [f"train.batch_size={batch}"])
            planned = host_memory(preset, "cpu").total_bytes
            peak = measure(args.preset, batch, args.steps, Path(tmp) / "runs")
            error = f"{100 * (planned - peak) / peak:+.0f}%" if peak else "-"
            print(f"{batch:>6} {human_bytes(planned):>10} {human_bytes(peak):>10} {error:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
