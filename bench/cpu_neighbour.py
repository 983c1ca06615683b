"""How much a busy neighbour slows a CPU run: median step time alone and beside one, per thread policy.

Runs the real training child (a small GPT on generated text, CPU, fp32) four
times: with torch's own defaults (a thread per core, spinning idle workers: the
policy before; GPT_COCKPIT_CPU_THREADS=torch) and with the child's policy (one
core fewer than usable, sleeping idle workers: after), each alone and beside a
neighbour process spinning in a Python busy loop. Prints the median step time of
each and the ratio neighbour/alone, with the load average from `uptime`.

    python bench/cpu_neighbour.py [--steps 150] [--neighbours 1]

With --kinds it measures every thread policy of WAIT_POLICIES beside each kind of
neighbour the thread-policy work names, alternating alone and beside in each round:

    python bench/cpu_neighbour.py --kinds busy,pass-loop,runs-loop,app --rounds 2

busy: `while True: pass`; pass-loop: a shell loop of `python -c pass`; runs-loop: a
shell loop of `gpt-cockpit runs`; app: the Textual app attached to the run, headless.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cockpit import rundir, runs  # noqa: E402
from cockpit.plan.presets import Preset, apply_overrides  # noqa: E402

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


# The thread policies compared on a small machine: the child's environment for each.
WAIT_POLICIES = {
    "torch defaults (all cores, workers spin)": {"GPT_COCKPIT_CPU_THREADS": "torch"},
    "all cores, workers sleep (PASSIVE)": {
        "GPT_COCKPIT_CPU_THREADS": str(len(os.sched_getaffinity(0)))
    },
    "all cores, short spin (GOMP_SPINCOUNT=10000)": {
        "GPT_COCKPIT_CPU_THREADS": "torch",
        "GOMP_SPINCOUNT": "10000",
    },
    "all cores, shorter spin (GOMP_SPINCOUNT=1000)": {
        "GPT_COCKPIT_CPU_THREADS": "torch",
        "GOMP_SPINCOUNT": "1000",
    },
    "all cores, shortest spin (GOMP_SPINCOUNT=100)": {
        "GPT_COCKPIT_CPU_THREADS": "torch",
        "GOMP_SPINCOUNT": "100",
    },
    "one core fewer, workers sleep": {
        "GPT_COCKPIT_CPU_THREADS": str(max(1, len(os.sched_getaffinity(0)) - 1))
    },
    "the child's policy": {},
}


def neighbour(kind: str, run_dir: Path) -> subprocess.Popen | None:
    """Start one neighbour of `kind` in its own process group (None for "alone")."""
    py = sys.executable
    commands = {
        "busy": [py, "-c", BUSY],
        "pass-loop": ["sh", "-c", f"while true; do {py} -c pass; done"],
        "runs-loop": ["sh", "-c", f"while true; do {py} -m cockpit runs >/dev/null 2>&1; done"],
        "app": [
            py,
            "-c",
            "import sys; from cockpit.tui.app import make_app; "
            "make_app(attach=sys.argv[1]).run(headless=True)",
            str(run_dir),
        ],
    }
    if kind == "alone":
        return None
    return subprocess.Popen(
        commands[kind],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )


def step_ms_beside(folder: Path, data: Path, steps: int, env: dict[str, str], kind: str) -> float:
    """Median step ms of one run under `env`, alone or beside one neighbour of `kind`."""
    run_dir = rundir.create_run_dir(preset(data, steps), root=folder)
    child_env = {"GPT_COCKPIT_CPU_THREADS": "", **env}
    if not child_env["GPT_COCKPIT_CPU_THREADS"]:
        child_env.pop("GPT_COCKPIT_CPU_THREADS")
    proc = neighbour(kind, run_dir)
    try:
        handle = runs.launch(run_dir, device="cpu", detach=False, env=child_env)
        assert handle.process is not None
        code = handle.process.wait(timeout=900)
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGKILL)  # the loop and whatever it started
            proc.wait()
    if code != 0:
        raise SystemExit(f"the child exited {code}; see {run_dir / rundir.CONSOLE_LOG}")
    records = rundir.read_events(run_dir / rundir.EVENTS_JSONL)
    return statistics.median(
        r["step_ms"] for r in records if r["event"] == "step" and r["step"] > 10
    )


def kinds_matrix(args: argparse.Namespace) -> int:
    """Each policy alone and beside each kind, in rounds; medians and ratios beside / alone."""
    kinds = args.kinds.split(",")
    policies = {k: v for k, v in WAIT_POLICIES.items() if not args.policies or k in args.policies}
    results: dict[tuple[str, str], list[float]] = {}
    for n in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="cpu_neighbour_") as tmp:
            folder = Path(tmp)
            data = corpus(folder)
            names = list(policies) if n % 2 == 0 else list(policies)[::-1]
            for name in names:
                for kind in ["alone", *kinds]:
                    ms = step_ms_beside(folder, data, args.steps, policies[name], kind)
                    results.setdefault((name, kind), []).append(ms)
                    print(
                        f"  round {n + 1} {name:46s} {kind:10s} {ms:8.2f} ms  load {os.getloadavg()[0]:.2f}",
                        flush=True,
                    )
    print()
    print("| policy | alone ms | " + " | ".join(f"{k} ms (ratio)" for k in kinds) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in kinds) + " |")
    for name in policies:
        alone = statistics.median(results[(name, "alone")])
        cells = []
        for kind in kinds:
            beside = statistics.median(results[(name, kind)])
            cells.append(f"{beside:.2f} ({beside / alone:.2f})")
        print(f"| {name} | {alone:.2f} | " + " | ".join(cells) + " |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--neighbours", type=int, default=1, help="busy-loop processes beside it")
    parser.add_argument("--kinds", help="neighbour kinds: busy,pass-loop,runs-loop,app")
    parser.add_argument("--rounds", type=int, default=2, help="rounds with --kinds")
    parser.add_argument(
        "--policy", dest="policies", action="append", help="with --kinds: only these policies"
    )
    args = parser.parse_args()
    if args.kinds:
        print(
            f"uptime before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}"
        )
        code = kinds_matrix(args)
        print(
            f"uptime after:  {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}"
        )
        return code
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
