"""The golf recipe (seed 001: Muon + per-role Adam) against one AdamW rate, on CPU, through our child.

The comparison of issue 11: the golf shape at 4 layers, width 128, 4 heads with 2 KV
heads, byte vocabulary, sequence 256, 16 sequences a step, 300 steps, linear warmdown
over the last 60, fp32, on tiny Shakespeare (90/10 split). The parameter-golf reference
loop reached val 1.645 at 300 steps on this comparison and our AdamW-only recipe 2.017.

Three runs, each the real training child (`python -m cockpit.train`):
  muon        the seed recipe (train.optimizer=muon at seed 001's rates), 300 steps
  adamw       AdamW at 0.002 for every parameter, 300 steps (the old golf recipe)
  adamw-time  the same AdamW, given the muon run's training time instead of a step count
              (max_time_s, warming down by time over the last 60 mean step times)

Val loss is over the whole val split (train.eval_full_val) every 50 steps and at the end.

    python bench/golf_recipe.py [--data PATH] [--steps 300] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cockpit import rundir, runs  # noqa: E402
from cockpit.plan.presets import preset_from_dict  # noqa: E402
from cockpit.rundir import read_events  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
REFERENCE = {"reference_loop": 1.645, "adamw_only_before": 2.017}
TARGET_VAL = 1.70


def golf_shape(data: Path) -> dict:
    return {
        "name": "golf_recipe_bench",
        "model": {
            "arch": "golf",
            "n_layer": 4,
            "n_head": 4,
            "n_kv_head": 2,
            "n_embd": 128,
            "block_size": 256,
            "vocab_size": 256,
            "mlp_ratio": 2,
            "tie_embeddings": True,
            "logit_softcap": 30.0,
            "qk_gain_init": 1.5,
        },
        "train": {
            "batch_size": 16,
            "grad_accum": 1,
            "schedule": "warmdown",
            "warmup_steps": 0,
            "warmdown_steps": 60,
            "min_lr": 0.0,
            "weight_decay": 0.0,
            "beta1": 0.9,
            "beta2": 0.95,
            "grad_clip": 0.0,
            "dtype": "fp32",
            "eval_interval": 50,
            "eval_full_val": True,
            "eval_steps": 4,
            "log_interval": 10,
            "sample_tokens": 0,
            "seed": 1337,
        },
        "data": {"source": str(data), "tokenizer": "byte", "val_fraction": 0.1},
    }


def variant(
    data: Path, name: str, steps: int, max_time_s: float = 0.0, eval_interval: int = 50
) -> dict:
    raw = golf_shape(data)
    t = raw["train"]
    t["eval_interval"] = eval_interval
    t["max_steps"] = steps
    t["warmdown_steps"] = min(60, steps)
    t["max_time_s"] = max_time_s
    if name == "muon":
        t.update(optimizer="muon", lr=0.04, matrix_lr=0.04, tied_embed_lr=0.05, scalar_lr=0.04)
    else:
        t.update(optimizer="adamw", lr=0.002)
    raw["name"] = f"golf_recipe_{name}"
    return raw


def run(raw: dict, root: Path, label: str) -> dict:
    """Train one preset in the child; its eval curve, training time and step times."""
    preset = preset_from_dict(raw)
    run_dir = rundir.create_run_dir(preset, root / label)
    t0 = time.perf_counter()
    handle = runs.launch(run_dir, device="cpu", detach=False)
    while handle.poll() is None:
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    if handle.process.returncode != 0:
        raise SystemExit(
            f"{label}: the child exited with {handle.process.returncode}; see {run_dir}"
        )
    records = read_events(run_dir / rundir.EVENTS_JSONL)
    steps = [r for r in records if r["event"] == "step"]
    cumulative: list[tuple[int, float]] = []  # (step, training seconds up to it)
    train_s, last = 0.0, 0
    for r in steps:  # step_ms is the mean over its read-back interval, evals left out
        train_s += r["step_ms"] / 1000.0 * (r["step"] - last)
        last = r["step"]
        cumulative.append((last, train_s))
    train_curve = [
        (r["step"], round(r["loss"], 3)) for r in steps if r["step"] % 50 == 0 or r is steps[-1]
    ]
    curve = []
    for r in records:
        if r["event"] == "eval":
            at = max((t for s, t in cumulative if s <= r["step"]), default=0.0)
            curve.append((r["step"], round(at, 1), round(r["val_loss"], 4)))
    end = [r for r in records if r["event"] == "end"][-1]
    return {
        "label": label,
        "steps": steps[-1]["step"] if steps else 0,
        "end": end["reason"],
        "train_s": round(train_s, 1),
        "wall_s": round(wall, 1),
        "ms_per_step_median": round(statistics.median(r["step_ms"] for r in steps), 1),
        "val_curve": curve,
        "train_curve": train_curve,
        "final_val": curve[-1][2] if curve else None,
        "run_dir": str(run_dir),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument(
        "--eval-interval",
        type=int,
        default=50,
        help="steps between full-val evals (0: the end only)",
    )
    parser.add_argument(
        "--skip-adamw-steps",
        action="store_true",
        help="leave out the AdamW run of --steps steps (the equal-time one stays)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not args.data.is_file():
        print(f"no data at {args.data}; pass --data PATH to tiny Shakespeare", file=sys.stderr)
        return 2
    data = args.data.resolve()
    root = Path(tempfile.mkdtemp(prefix="golf_recipe_"))
    load_before = os.getloadavg()
    print(
        f"cpu threads for the children: {os.environ.get('GPT_COCKPIT_CPU_THREADS') or 'the default'}",
        flush=True,
    )
    every = args.eval_interval
    muon = run(variant(data, "muon", args.steps, eval_interval=every), root, "muon")
    print(f"muon: val {muon['final_val']} after {muon['train_s']} s of training", flush=True)
    budget = muon["train_s"]
    timed = variant(data, "adamw", 1_000_000, max_time_s=budget, eval_interval=every)
    timed_r = run(timed, root, "adamw-time")
    print(f"adamw-time: val {timed_r['final_val']} after {timed_r['steps']} steps", flush=True)
    results = [muon, timed_r]
    if not args.skip_adamw_steps:
        results.append(run(variant(data, "adamw", args.steps, eval_interval=every), root, "adamw"))
    load_after = os.getloadavg()

    print()
    print(
        f"{'run':<11} {'steps':>6} {'train s':>8} {'ms/step':>8} {'final val':>9}  val curve (step, train s, val)"
    )
    for r in results:
        print(
            f"{r['label']:<11} {r['steps']:>6} {r['train_s']:>8} {r['ms_per_step_median']:>8} "
            f"{r['final_val']:>9}  {r['val_curve']}"
        )
    print()
    print("train loss (step, loss):")
    for r in results:
        print(f"  {r['label']:<11} {r['train_curve']}")
    print()
    print(
        f"muon val@{args.steps} {muon['final_val']} (target <= {TARGET_VAL}; reference loop "
        f"{REFERENCE['reference_loop']}): {muon['final_val'] <= TARGET_VAL}"
    )
    if len(results) > 2:
        print(
            f"adamw val@{args.steps} {results[2]['final_val']} "
            f"(before: {REFERENCE['adamw_only_before']})"
        )
    print(
        f"adamw at muon's {budget} s of training: {timed_r['final_val']} after {timed_r['steps']} steps"
    )
    print(f"muon beats adamw at equal wall time: {muon['final_val'] < timed_r['final_val']}")
    print(
        f"load average {tuple(round(x, 2) for x in load_before)} before, "
        f"{tuple(round(x, 2) for x in load_after)} after ({os.cpu_count()} CPUs)"
    )
    if args.json:
        figures = {"runs": results, "load_before": load_before, "load_after": load_after}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
