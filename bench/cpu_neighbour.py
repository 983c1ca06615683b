"""How much a busy neighbour slows a CPU run: median step time alone and beside one, per thread policy.

Runs the real training child (a small GPT on generated text, CPU, fp32) four
times: with torch's own defaults (a thread per core, spinning idle workers: the
policy before; GPT_COCKPIT_CPU_THREADS=torch) and with the child's policy (one
core fewer than usable, sleeping idle workers: after), each alone and beside a
neighbour process spinning in a Python busy loop. Prints the median step time of
each and the ratio neighbour/alone, with the load average from `uptime`.

    python bench/cpu_neighbour.py [--steps 150] [--neighbours 1]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cockpit import rundir, runs  # noqa: E402
from cockpit.presets import Preset, apply_overrides  # noqa: E402

BUSY = "while True: pass"
POLICIES = {
    "torch defaults": "torch",
    "all cores, idle workers sleep": str(len(os.sched_getaffinity(0))),
    "the child's policy": "",
}


def corpus(folder: Path) -> Path:
    rng = random.Random(0)
    words = "the quick brown fox jumps over lazy dog and cat sat on mat while bird sings".split()
    text = "".join(" ".join(rng.choice(words) for _ in range(8)) + ".\n" for _ in range(4000))
    path = folder / "corpus.txt"
    path.write_text(text)
    return path


def preset(data: Path, steps: int) -> Preset:
    return apply_overrides(
        Preset(name="neighbour_bench"),
        {
            "model.n_layer": 2,
            "model.n_head": 4,
            "model.n_embd": 128,
            "model.block_size": 64,
            "model.vocab_size": 64,
            "train.batch_size": 8,
            "train.max_steps": steps,
            "train.warmup_steps": 0,
            "train.eval_interval": 0,
            "train.log_interval": 1,
            "train.sample_tokens": 0,
            "train.dtype": "fp32",
            "train.compile": False,
            "data.source": str(data),
            "data.tokenizer": "char",
        },
    )


def median_step_ms(folder: Path, data: Path, steps: int, threads: str, neighbours: int) -> float:
    run_dir = rundir.create_run_dir(preset(data, steps), root=folder)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    if threads:
        env["GPT_COCKPIT_CPU_THREADS"] = threads
    else:
        env.pop("GPT_COCKPIT_CPU_THREADS", None)
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(neighbours)]
    try:
        handle = runs.launch(run_dir, device="cpu", detach=False, env=env)
        assert handle.process is not None
        code = handle.process.wait(timeout=900)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    if code != 0:
        raise SystemExit(f"the child exited {code}; see {run_dir / rundir.CONSOLE_LOG}")
    records = rundir.read_events(run_dir / rundir.EVENTS_JSONL)
    ms = [r["step_ms"] for r in records if r["event"] == "step" and r["step"] > 10]
    return statistics.median(ms)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--neighbours", type=int, default=1, help="busy-loop processes beside it")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} usable cores; {args.steps} steps a run; {args.neighbours} busy neighbour(s)")
    print(
        f"uptime before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}"
    )
    with tempfile.TemporaryDirectory(prefix="cpu_neighbour_") as tmp:
        folder = Path(tmp)
        data = corpus(folder)
        print(f"{'policy':28s} {'alone ms':>9s} {'beside ms':>10s} {'ratio':>6s}")
        for label, threads in POLICIES.items():
            alone = median_step_ms(folder, data, args.steps, threads, 0)
            beside = median_step_ms(folder, data, args.steps, threads, args.neighbours)
            print(f"{label:28s} {alone:9.2f} {beside:10.2f} {beside / alone:6.2f}", flush=True)
    print(
        f"uptime after:  {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
