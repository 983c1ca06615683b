"""`gpt-cockpit sample`, `compare`, `export`, `plot` and `serve`: what to do with runs afterwards.

torch, matplotlib and textual-serve are imported inside the commands that need them, so
importing this module (and `gpt-cockpit --help`) loads none of them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cockpit import arch as archs
from cockpit import rundir, runs
from cockpit.common.diagnostics import EXIT_FAILED, EXIT_OK, EXIT_USAGE, error, info

if TYPE_CHECKING:
    from cockpit.runs.compare import RunCurves


def _find(name: str, args: argparse.Namespace) -> Path | None:
    """The run called `name`, or None after printing why not."""
    return runs.find_run_or_say(name, getattr(args, "runs_dir", None))


def cmd_sample(args: argparse.Namespace) -> int:
    """Generate text from a run's checkpoint with the run's own tokenizer."""
    run_dir = _find(args.run, args)
    if run_dir is None:
        return EXIT_USAGE
    from cockpit.train.sample import SampleError, generate, load_run_model

    try:
        rm = load_run_model(run_dir, args.checkpoint, args.device)
        info(f"sampling {run_dir.name} from {rm.path.name} (step {rm.step}) on {rm.device}")
        if rm.note:
            info(rm.note)
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


def _group_runs(name: str) -> list[Path]:
    """The run directories of queue group `name` (none when there is no such group or queue)."""
    from cockpit.campaign.locations import queue_db_path

    if not queue_db_path().is_file():
        return []  # no queue here: never create one just to look
    from cockpit.campaign.store import Queue, QueueError

    try:
        with Queue() as queue:
            entries = queue.entries(group=name)
    except QueueError:
        return []
    return [Path(e.run_dir) for e in entries if e.run_dir and Path(e.run_dir).is_dir()]


def _find_all(names: list[str], args: argparse.Namespace) -> list[Path] | None:
    """The runs named, a queue group's name standing for each run of the group."""
    found = []
    for name in names:
        group = _group_runs(name)
        if group:
            found.extend(group)
            continue
        run_dir = _find(name, args)
        if run_dir is None:
            return None
        found.append(run_dir)
    return found


def _read_all(run_dirs: list[Path]) -> list[RunCurves] | None:
    from cockpit.runs.compare import read_curves

    out: list[RunCurves] = []
    for run_dir in run_dirs:
        try:
            out.append(read_curves(run_dir))
        except (rundir.RunError, ValueError) as exc:
            error(f"{run_dir.name}: cannot be read ({exc})")
            return None
    return out


def cmd_compare(args: argparse.Namespace) -> int:
    """Runs side by side: best val (and where), final loss, tokens; the presets' differences."""
    from cockpit.runs import compare

    run_dirs = _find_all(args.runs, args)
    curves = _read_all(run_dirs) if run_dirs is not None else None
    if curves is None:
        return EXIT_USAGE
    rows = compare.summary_rows(curves, args.align)
    diffs = compare.preset_differences(curves)
    if args.json:
        import json

        print(json.dumps({"align": args.align, "runs": rows, "differences": dict(diffs)}))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    # a pipe or a file gets whole columns (rich would squeeze them to 80)
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in compare.SUMMARY_COLUMNS:
        left = name in ("run", "status", "preset")
        table.add_column(name, justify="left" if left else "right", no_wrap=True)
    for row in rows:
        table.add_row(*compare.summary_text(row, args.align))
    console.print(table)
    console.print()
    if not diffs:
        console.print("the presets are the same in every field")
        return EXIT_OK
    table = Table(box=None, header_style="bold", pad_edge=False, title_justify="left")
    table.add_column("preset field", no_wrap=True)
    for c in curves:
        table.add_column(c.run_id, no_wrap=True)
    for key, values in diffs:
        table.add_row(key, *(compare.fmt_value(v) for v in values))
    console.print(table)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    """safetensors weights and a config (Hugging Face's GPT-2 layout for gpt) in --to DIR."""
    run_dir = _find(args.run, args)
    if run_dir is None:
        return EXIT_USAGE
    from cockpit.train.export import export_run
    from cockpit.train.sample import SampleError, load_run_model

    try:
        rm = load_run_model(run_dir, args.checkpoint, "cpu", tokenizer=False)
        written = export_run(rm, args.to, run_dir.name)
    except SampleError as exc:
        error(str(exc))
        return EXIT_USAGE
    except OSError as exc:
        error(f"cannot write {args.to}: {exc.strerror or exc}")
        return EXIT_FAILED
    hf = archs.supports(rm.preset.model.arch, "hf_export")
    kind = "Hugging Face GPT-2 layout" if hf else "safetensors"
    info(f"exported {run_dir.name} ({rm.path.name}, step {rm.step}) to {args.to} ({kind})")
    for path in written:
        print(path)
    return EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    """Loss, val, LR and grad norm of one or more runs, warnings marked, as a PNG."""
    from cockpit.runs.plot import PlotUnavailable, draw

    if not str(args.out).lower().endswith(".png"):
        error(f"--out {args.out}: the picture is a PNG; name it FILE.png")
        return EXIT_USAGE
    run_dirs = _find_all(args.runs, args)
    curves = _read_all(run_dirs) if run_dirs is not None else None
    if curves is None:
        return EXIT_USAGE
    try:
        path = draw(curves, args.out, align=args.align)
    except PlotUnavailable as exc:
        error(str(exc))
        return EXIT_USAGE
    except OSError as exc:
        error(f"cannot write {args.out}: {exc.strerror or exc}")
        return EXIT_FAILED
    print(path)
    return EXIT_OK


def serve_command(args: argparse.Namespace) -> str:
    """The command textual-serve runs for each browser session: this app, same runs folder."""
    import shlex

    parts = [sys.executable, "-m", "cockpit"]
    if getattr(args, "runs_dir", None):
        parts += ["--runs-dir", str(Path(args.runs_dir).resolve())]
    return shlex.join(parts)


def cmd_serve(args: argparse.Namespace) -> int:
    """The app in a browser through textual-serve (each page load starts its own app process)."""
    try:
        from textual_serve.server import Server
    except ImportError:
        error(
            "serve needs textual-serve: pip install textual-serve (or pip install 'gpt-cockpit[serve]')"
        )
        return EXIT_USAGE
    url = f"http://{args.host}:{args.port}"
    info(f"serving the cockpit at {url} (Ctrl-C stops serving; runs keep training)")
    server = Server(serve_command(args), host=args.host, port=args.port, title="gpt-cockpit")
    server.serve()
    return EXIT_OK
