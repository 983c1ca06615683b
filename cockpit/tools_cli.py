"""`gpt-cockpit sample`, `compare`, `export`, `plot` and `serve`: what to do with runs afterwards.

torch, matplotlib and textual-serve are imported inside the commands that need them, so
importing this module (and `gpt-cockpit --help`) loads none of them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cockpit import rundir, runs
from cockpit.diagnostics import EXIT_OK, EXIT_USAGE, error, info


def _find(name: str, args: argparse.Namespace) -> Path | None:
    try:
        return runs.find_run(name, root=getattr(args, "runs_dir", None))
    except rundir.RunError as exc:
        error(str(exc))
        return None


def cmd_sample(args: argparse.Namespace) -> int:
    """Generate text from a run's checkpoint with the run's own tokenizer."""
    run_dir = _find(args.run, args)
    if run_dir is None:
        return EXIT_USAGE
    from cockpit.train.sample import SampleError, generate, load_run_model

    try:
        rm = load_run_model(run_dir, args.checkpoint, args.device)
        info(f"sampling {run_dir.name} from {rm.path.name} (step {rm.step}) on {rm.device}")
        text = generate(
            rm,
            args.prompt,
            tokens=args.tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            seed=args.seed,
        )
    except SampleError as exc:
        error(str(exc))
        return EXIT_USAGE
    print(args.prompt + text, flush=True)
    return EXIT_OK
