"""nanoGPT's CPU recipe, run through our training child end to end; prints the figures to compare.

The recipe (nanoGPT README, ../shared/ANCHORS.md): character-level tiny
Shakespeare (90/10 split), 4 layers, 4 heads, n_embd 128, block 64, batch 12,
dropout 0, lr 1e-3 -> 1e-4 cosine over 2000 iters, warmup 100, beta2 0.99,
weight decay 0.1, grad clip 1.0, eval every 250 iters on 20 batches, fp32, no
compile. nanoGPT's own figures on a 2-core machine: ~40 ms/iter in steady state,
91.7 s wall for 2000 iters, val loss 2.314 / 2.053 / 1.886 at 500 / 1000 / 2000.

    python bench/nanogpt_cpu.py [--data PATH] [--steps 2000] [--json OUT]

Side by side with nanoGPT's own train.py (a checkout whose data/shakespeare_char was
prepared with its prepare.py), alternating which goes first, same machine, same minutes:

    python bench/nanogpt_cpu.py --beside /path/to/nanoGPT --steps 300 --rounds 3

prints each round's median step time of both, the ratio ours / nanoGPT's, and the load
average; nanoGPT runs the README's CPU command with --max_iters set to --steps.
`--also-set train.dtype=bf16` adds a third runner each round, ours with that override
(each of the three goes first in turn).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cockpit import rundir, runs  # noqa: E402
from cockpit.plan.presets import apply_overrides, preset_from_dict  # noqa: E402
from cockpit.rundir import EventTailer  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
NANOGPT = {"ms_per_step": 40.0, "wall_s": 91.7, "val": {500: 2.314, 1000: 2.053, 2000: 1.886}}
TARGET_VAL_2000 = 1.90


def recipe(data: Path, steps: int) -> dict:
    """The preset as a dict: nanoGPT's README CPU command line, field by field."""
    return {
        "name": "nanogpt_shakespeare_char",
        "description": "nanoGPT's CPU recipe on character-level tiny Shakespeare",
        "model": {
            "arch": "gpt",
            "n_layer": 4,
            "n_head": 4,
            "n_embd": 128,
            "block_size": 64,
            "vocab_size": 65,  # the 65 characters of tiny Shakespeare, as nanoGPT's meta.pkl
            "dropout": 0.0,
            "bias": False,
            "tie_embeddings": True,
        },
        "train": {
            "batch_size": 12,
            "grad_accum": 1,
            "max_steps": steps,
            "lr": 1e-3,
            "min_lr": 1e-4,
            "schedule": "cosine",
            "warmup_steps": 100,
            "weight_decay": 0.1,
            "beta1": 0.9,
            "beta2": 0.99,
            "grad_clip": 1.0,
            "dtype": "fp32",
            "compile": False,
            "eval_interval": 250,
            "eval_steps": 20,
            "log_interval": 10,
            "sample_tokens": 0,  # nanoGPT does not sample while training
            "seed": 1337,
        },
        "data": {"source": str(data), "tokenizer": "char", "val_fraction": 0.1},
    }


# nanoGPT README's CPU command for shakespeare_char (max_iters and lr_decay_iters set per run).
NANOGPT_CPU_ARGS = [
    "config/train_shakespeare_char.py",
    "--device=cpu",
    "--compile=False",
    "--eval_iters=20",
    "--log_interval=1",
    "--block_size=64",
    "--batch_size=12",
    "--n_layer=4",
    "--n_head=4",
    "--n_embd=128",
    "--dropout=0.0",
]
SKIP_STEPS = 10  # warm-up steps left out of the medians on both sides


def nanogpt_run(checkout: Path, steps: int, env: dict[str, str] | None = None) -> dict:
    """nanoGPT's train.py on its CPU recipe for `steps` iterations: median iteration ms, val losses."""
    out_dir = Path(tempfile.mkdtemp(prefix="nanogpt_out_"))
    cmd = [
        sys.executable,
        "train.py",
        *NANOGPT_CPU_ARGS,
        f"--max_iters={steps}",
        f"--lr_decay_iters={max(steps, 2000)}",
        f"--out_dir={out_dir}",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=checkout, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"nanoGPT failed: {proc.stderr.strip().splitlines()[-1:]}")
    iters = {
        int(m[1]): float(m[2])
        for m in re.finditer(r"^iter (\d+): loss [0-9.]+, time ([0-9.]+)ms", proc.stdout, re.M)
    }
    evals = {
        int(m[1]): float(m[2])
        for m in re.finditer(
            r"^step (\d+): train loss [0-9.]+, val loss ([0-9.]+)", proc.stdout, re.M
        )
    }
    # an eval's time lands in its iteration's dt: leave those iterations out
    kept = [ms for i, ms in iters.items() if i > SKIP_STEPS and i not in evals]
    return {"ms": statistics.median(kept), "val": evals, "wall_s": wall}


def our_run(
    data: Path, steps: int, overrides: list[str], env: dict[str, str] | None = None
) -> dict:
    """Our training child on the same recipe for `steps` steps: median step ms, val losses."""
    preset = apply_overrides(preset_from_dict(recipe(data, steps)), overrides)
    run_dir = rundir.create_run_dir(preset, Path(tempfile.mkdtemp(prefix="nanogpt_cpu_")) / "run")
    t0 = time.perf_counter()
    handle = runs.launch(run_dir, device="cpu", detach=False, env=env)
    code = handle.process.wait()
    wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"our child exited {code}; see {run_dir / rundir.CONSOLE_LOG}")
    records = rundir.read_events(run_dir / rundir.EVENTS_JSONL)
    ms = [r["step_ms"] for r in records if r["event"] == "step" and r["step"] > SKIP_STEPS]
    evals = {r["step"]: r["val_loss"] for r in records if r["event"] == "eval"}
    return {"ms": statistics.median(ms), "val": evals, "wall_s": wall}


def nanogpt_env(pairs: list[str]) -> dict[str, str] | None:
    """nanoGPT's environment: ours plus --nanogpt-env KEY=VALUE items (e.g. OMP_WAIT_POLICY=PASSIVE)."""
    if not pairs:
        return None
    return {**os.environ, **dict(p.split("=", 1) for p in pairs)}


def side_by_side(args: argparse.Namespace) -> int:
    """Rotate nanoGPT's train.py and ours (and ours with --also-set), round by round; medians,
    ratios to nanoGPT, load average."""
    checkout = args.beside.resolve()
    if not (checkout / "data" / "shakespeare_char" / "train.bin").is_file():
        print(
            f"{checkout}: no data/shakespeare_char/train.bin; run its prepare.py first",
            file=sys.stderr,
        )
        return 2
    runners = {"ours": args.overrides}
    if args.also:
        runners["ours+"] = [*args.overrides, *args.also]
    print(
        f"{args.rounds} rounds of {args.steps} steps; ours with {args.overrides or 'the recipe as is'}"
        + (f"; ours+ with {runners['ours+']}" if args.also else "")
        + f"; nanoGPT with {args.nanogpt_env or 'its defaults'}"
    )
    print(
        f"uptime before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} ({os.cpu_count()} CPUs)"
    )
    names = [*runners, "nanogpt"]
    print(
        f"{'round':>5s} "
        + " ".join(f"{n + ' ms':>11s}" for n in names)
        + " "
        + " ".join(f"{n + '/ngpt':>11s}" for n in runners)
        + f" {'load':>5s}"
    )
    ms: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in runners}
    for r in range(args.rounds):
        shift = r % len(names)
        got = {}
        for who in names[shift:] + names[:shift]:  # each goes first in turn
            if who == "nanogpt":
                got[who] = nanogpt_run(checkout, args.steps, env=nanogpt_env(args.nanogpt_env))
            else:
                got[who] = our_run(args.data.resolve(), args.steps, runners[who])
        for n in names:
            ms[n].append(got[n]["ms"])
        for n in runners:
            ratios[n].append(ms[n][-1] / ms["nanogpt"][-1])
        print(
            f"{r + 1:5d} "
            + " ".join(f"{ms[n][-1]:11.2f}" for n in names)
            + " "
            + " ".join(f"{ratios[n][-1]:11.3f}" for n in runners)
            + f" {os.getloadavg()[0]:5.2f}",
            flush=True,
        )
        if args.steps >= 500:
            print("      val " + "  ".join(f"{n} {got[n]['val']}" for n in names))
    print(
        "median "
        + " ".join(f"{statistics.median(ms[n]):11.2f}" for n in names)
        + " "
        + " ".join(f"{statistics.median(ratios[n]):11.3f}" for n in runners)
        + "  (ratios: median of the per-round ratios)"
    )
    print(f"uptime after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help=f"tiny Shakespeare text (default {DEFAULT_DATA})",
    )
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--run-dir", type=Path, help="where the run goes (default: a temp folder)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--beside", type=Path, metavar="NANOGPT", help="a nanoGPT checkout to run beside ours"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds with --beside")
    parser.add_argument(
        "--also-set",
        dest="also",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --beside: also run ours with these overrides each round (e.g. train.dtype=bf16)",
    )
    parser.add_argument(
        "--nanogpt-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --beside: set this in nanoGPT's environment (e.g. OMP_WAIT_POLICY=PASSIVE)",
    )
    args = parser.parse_args()
    if not args.data.is_file():
        print(f"no data at {args.data}; pass --data PATH to tiny Shakespeare", file=sys.stderr)
        return 2
    if args.beside:
        return side_by_side(args)

    preset = apply_overrides(
        preset_from_dict(recipe(args.data.resolve(), args.steps)), args.overrides
    )
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="nanogpt_cpu_")) / "run"
    run_dir = rundir.create_run_dir(preset, run_dir)
    load_before = os.getloadavg()[0]
    t0, t0_wall = time.perf_counter(), time.time()
    handle = runs.launch(run_dir, device="cpu", detach=False)
    tailer = EventTailer(run_dir / rundir.EVENTS_JSONL)
    records: list[dict] = []
    while True:
        batch = tailer.poll()
        records += batch
        for r in batch:
            if r["event"] == "eval":
                print(
                    f"  step {r['step']:5d}  val {r['val_loss']:.4f}  train {r['train_loss']:.4f}  ({time.perf_counter() - t0:.1f} s)",
                    flush=True,
                )
        if handle.poll() is not None:
            records += tailer.read_all()
            break
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    code = handle.process.returncode
    if code != 0:
        print(f"the child exited with {code}; see {run_dir / rundir.CONSOLE_LOG}", file=sys.stderr)
        return 1

    steps = [r for r in records if r["event"] == "step"]
    evals = {r["step"]: r["val_loss"] for r in records if r["event"] == "eval"}
    steady = [r["step_ms"] for r in steps if r["step"] > min(100, len(steps) // 2)]
    ms = statistics.median(steady)
    start = next(r for r in records if r["event"] == "start")
    first_step_time = steps[0]["time"]
    end = records[-1]
    figures = {
        "ms_per_step_median": round(ms, 2),
        "tokens_per_s_median": round(
            statistics.median(r["tokens_per_s"] for r in steps[len(steps) // 10 :]), 1
        ),
        "wall_s": round(wall, 1),
        "train_s": round(end["time"] - first_step_time, 1),
        "startup_s": round(start["time"] - t0_wall, 1),
        "val": {s: round(v, 4) for s, v in sorted(evals.items())},
        "params": start["params"],
        "load_avg_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
    }
    print()
    print(f"run directory        {run_dir}")
    print(f"parameters           {start['params']:,}")
    print(
        f"ms/step (median)     {ms:.1f} ms   (nanoGPT ~{NANOGPT['ms_per_step']:.0f} ms; ratio {ms / NANOGPT['ms_per_step']:.2f})"
    )
    print(f"tokens/s (median)    {figures['tokens_per_s_median']:,.0f}")
    print(
        f"wall time            {wall:.1f} s   (nanoGPT {NANOGPT['wall_s']} s; includes start-up {figures['startup_s']} s)"
    )
    for s in (500, 1000, 2000):
        if s in evals:
            print(f"val loss @ {s:<5d}      {evals[s]:.4f}   (nanoGPT {NANOGPT['val'][s]})")
    print(
        f"load average         {figures['load_avg_before_after'][0]} before, {figures['load_avg_before_after'][1]} after ({os.cpu_count()} CPUs)"
    )
    ok_loss = evals.get(args.steps, float("inf")) <= TARGET_VAL_2000 if args.steps == 2000 else None
    ok_speed = ms <= NANOGPT["ms_per_step"]
    print(
        f"targets              val@2000 <= {TARGET_VAL_2000}: {ok_loss}   ms/step <= {NANOGPT['ms_per_step']:.0f}: {ok_speed}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
