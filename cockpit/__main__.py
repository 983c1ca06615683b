"""Command-line entry point: the app by default, `--no-ui` headless, and planning commands.

Every subcommand's implementation is imported only when it runs, so
`gpt-cockpit --help` starts fast and never imports torch or textual.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from cockpit import __version__
from cockpit.common.diagnostics import EXIT_USAGE, error

# subcommand -> "module:function"; each function takes the parsed args and returns an exit code.
_COMMANDS = {
    "presets": "cockpit.cli.plan:cmd_presets",
    "estimate": "cockpit.cli.plan:cmd_estimate",
    "probe": "cockpit.cli.plan:cmd_probe",
    "gpus": "cockpit.cli.plan:cmd_gpus",
    "runs": "cockpit.cli.runs:cmd_runs",
    "attach": "cockpit.cli.runs:cmd_attach",
    "resume": "cockpit.cli.runs:cmd_resume",
    "stop": "cockpit.cli.runs:cmd_stop",
    "sample": "cockpit.cli.tools:cmd_sample",
    "compare": "cockpit.cli.tools:cmd_compare",
    "export": "cockpit.cli.tools:cmd_export",
    "plot": "cockpit.cli.tools:cmd_plot",
    "serve": "cockpit.cli.tools:cmd_serve",
    "queue": "cockpit.cli.queue:cmd_queue",
}


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        "-p",
        metavar="NAME",
        help="preset name or path to a preset .json (default: tiny_char)",
    )
    parser.add_argument(
        "--data",
        metavar="PATH",
        help="text file, folder of text, .bin tokens or a shard glob (default: the embedded corpus)",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        metavar="N",
        help="override train.max_steps (default: the preset's)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="where to train (default: cuda if present)",
    )
    parser.add_argument(
        "--run-dir", metavar="DIR", help="run directory (default: runs/<time>-<preset>)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=SET_HELP,
    )


def _add_rank_options(parser: argparse.ArgumentParser) -> None:
    """--nproc and the options for several machines (torchrun; docs/multi-gpu.md)."""
    parser.add_argument(
        "--nproc",
        metavar="N",
        default=None,
        help="training processes on this machine, one per GPU (torchrun DDP); auto = every GPU CUDA sees (default: 1)",
    )
    parser.add_argument(
        "--nnodes", type=int, default=1, metavar="N", help="machines in the job (default: 1)"
    )
    parser.add_argument(
        "--node-rank",
        type=int,
        default=0,
        metavar="R",
        help="this machine's number; the cockpit runs node 0 and prints the others' commands",
    )
    parser.add_argument(
        "--rdzv-endpoint",
        metavar="HOST:PORT",
        default="",
        help="node 0's address that every machine reaches (several machines)",
    )


def _add_set_option(parser: argparse.ArgumentParser) -> None:
    """--set for the planning commands (the top level's is in _add_train_options)."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=argparse.SUPPRESS,
        metavar="KEY=VALUE",
        help=SET_HELP,
    )


def _add_gpu_option(parser: argparse.ArgumentParser, default: object = None) -> None:
    parser.add_argument(
        "--gpu",
        metavar="G",
        default=default,
        help="plan for a catalog GPU instead of this machine's (e.g. A100-80GB, H100, T4)",
    )


RUNS_DIR_HELP = "where runs live (default: $GPT_COCKPIT_RUNS or ./runs)"
RUN_HELP = "a run id, a unique prefix or suffix of one, a path, or 'last'"
SET_HELP = "override a preset field by dotted path, e.g. --set train.lr=3e-4 (repeatable)"
RUN_COMMANDS = ("runs", "attach", "resume", "stop")
TOOL_COMMANDS = ("sample", "compare", "export", "plot")  # they read runs: --runs-dir after them too


def _try_create(path: Path) -> None:
    """Raise OSError if `path` cannot be made; leave nothing behind (a run makes it later)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for folder in missing:  # deepest first
        folder.rmdir()


def runs_dir_problem(args: argparse.Namespace) -> str | None:
    """Why the runs folder named by --runs-dir or $GPT_COCKPIT_RUNS cannot be used, in one line.

    Launching (the app, headless) needs a folder it can create and write; the run commands
    only read one, and a folder that does not exist yet simply holds no runs.
    """
    value, name = getattr(args, "runs_dir", None), "--runs-dir"
    if not value:
        value, name = os.environ.get("GPT_COCKPIT_RUNS"), "$GPT_COCKPIT_RUNS"
    if not value:
        return None
    path = Path(value)
    if path.exists() and not path.is_dir():
        return f"{name} {value}: not a directory"
    if args.command is None:
        try:
            _try_create(path)
        except OSError as exc:
            return f"{name} {value}: cannot create it ({exc.strerror or exc})"
    need = os.R_OK | os.X_OK | (os.W_OK if args.command is None else 0)
    if path.is_dir() and not os.access(path, need):
        return f"{name} {value}: permission denied"
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpt-cockpit",
        description="Plan, launch and watch small GPT training runs. With no command, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"gpt-cockpit {__version__}")
    parser.add_argument(
        "--no-ui", action="store_true", help="train headless: one line per log interval on stdout"
    )
    parser.add_argument("--runs-dir", metavar="DIR", help=RUNS_DIR_HELP)
    parser.add_argument(
        "--force",
        action="store_true",
        help="launch even when the plan says the run does not fit this machine's memory",
    )
    _add_train_options(parser)
    _add_rank_options(parser)
    _add_gpu_option(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("presets", help="list presets, or show one in full")
    p.add_argument("name", nargs="?", help="preset to show")
    _add_set_option(p)
    _add_gpu_option(p, argparse.SUPPRESS)

    p = sub.add_parser(
        "estimate",
        help="estimate parameters, FLOPs, a VRAM breakdown, a verdict and a batch suggestion",
    )
    p.add_argument("name", help="preset name or path")
    p.add_argument(
        "--batch-size",
        "-b",
        type=int,
        metavar="B",
        help="micro-batch to estimate (default: the preset's)",
    )
    _add_set_option(p)
    p.add_argument(
        "--headroom",
        type=float,
        default=None,
        metavar="FRAC",
        help="fraction of GPU memory kept free when suggesting a batch (default: 0.08)",
    )
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default=argparse.SUPPRESS,
        help="cpu: plan a CPU run (host RAM, and an ETA from this machine's measured speed)",
    )
    p.add_argument(
        "--nproc",
        type=int,
        default=None,
        metavar="N",
        help="plan for N GPUs training together (memory per GPU: DDP buckets, or FSDP shards with train.parallel=fsdp)",
    )
    p.add_argument(
        "--exact",
        action="store_true",
        help="also trace the real training step on fake CUDA tensors (no GPU needed; cached per shape)",
    )
    _add_gpu_option(p, argparse.SUPPRESS)

    p = sub.add_parser(
        "probe",
        help="measure peak memory on this GPU at two batch sizes and calibrate the estimate",
    )
    p.add_argument("name", help="preset name or path")
    _add_set_option(p)
    p.add_argument(
        "--steps",
        type=int,
        default=2,
        metavar="N",
        help="training steps per probed batch size (default: 2)",
    )

    sub.add_parser("gpus", help="list the GPUs NVML sees here, and the catalog for planning")

    p = sub.add_parser(
        "runs", help="list runs with status, preset, step, best val loss, last loss, age"
    )
    p.add_argument("--json", action="store_true", help="print the list as JSON lines")

    p = sub.add_parser("attach", help="watch a run (in the app, or headless with --no-ui)")
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument(
        "--no-ui",
        action="store_true",
        default=argparse.SUPPRESS,
        help="follow the run's events as text lines",
    )

    p = sub.add_parser("resume", help="continue a stopped or crashed run from its last checkpoint")
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument(
        "--no-ui",
        action="store_true",
        default=argparse.SUPPRESS,
        help="train headless in this terminal",
    )
    p.add_argument(
        "--device",
        default=argparse.SUPPRESS,
        choices=("auto", "cpu", "cuda"),
        help="where to train (default: as the run was launched)",
    )
    p.add_argument(
        "--max-steps",
        type=int,
        default=argparse.SUPPRESS,
        metavar="N",
        help="raise train.max_steps to train past the old end",
    )
    p.add_argument(
        "--nproc",
        default=argparse.SUPPRESS,
        metavar="N",
        help="ranks on this machine (default: as the run was launched; a resume keeps the world size)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        default=argparse.SUPPRESS,
        help="resume even when the plan says the run does not fit this machine's memory, or when "
        "your own model's file changed since the run started",
    )

    p = sub.add_parser("stop", help="stop a run gracefully (checkpoint first), or --kill it")
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument("--kill", action="store_true", help="SIGKILL at once instead of a graceful stop")
    _add_tool_commands(sub)
    _add_queue_command(sub)
    for command in (
        RUN_COMMANDS + TOOL_COMMANDS
    ):  # `runs --runs-dir X` as well as `--runs-dir X runs`
        sub.choices[command].add_argument(
            "--runs-dir", metavar="DIR", default=argparse.SUPPRESS, help=RUNS_DIR_HELP
        )
    _add_examples(parser, sub)
    return parser


def _add_tool_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """sample, compare, export, plot, serve: what to do with runs afterwards (cockpit.cli.tools)."""
    p = sub.add_parser("sample", help="generate text from a run's checkpoint, with its tokenizer")
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument(
        "--prompt", default="", metavar="TEXT", help="text to continue (default: a newline)"
    )
    p.add_argument(
        "--tokens", type=int, default=200, metavar="N", help="tokens to generate (default: 200)"
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=0.8,
        metavar="T",
        help="sampling temperature: lower is safer, higher is wilder (default: 0.8)",
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=200,
        metavar="K",
        help="sample from the K likeliest tokens; 0: from all (default: 200)",
    )
    p.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="auto",
        help="which checkpoint (default: best.pt when there is one, else last.pt)",
    )
    p.add_argument(
        "--seed", type=int, default=None, metavar="S", help="random seed, for a repeatable sample"
    )
    p.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="where to run the model (default: cuda if present)",
    )

    p = sub.add_parser(
        "compare",
        help="show runs side by side: best val, final loss, tokens, preset differences",
    )
    p.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help=f"two or more runs, each {RUN_HELP}; a queue group's name stands for its runs",
    )
    p.add_argument(
        "--align",
        choices=("step", "tokens"),
        default="step",
        help="say where best val was by step or by tokens (default: step)",
    )
    p.add_argument("--json", action="store_true", help="print the comparison as one JSON object")

    p = sub.add_parser(
        "plot", help="draw loss, val, LR and grad norm as a PNG, health warnings marked"
    )
    p.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help=f"one or more runs, each {RUN_HELP}",
    )
    p.add_argument("--out", "-o", required=True, metavar="FILE.png", help="the picture to write")
    p.add_argument(
        "--align", choices=("step", "tokens"), default="step", help="x axis (default: step)"
    )

    p = sub.add_parser("serve", help="serve the app to a web browser (textual-serve)")
    p.add_argument(
        "--host", default="localhost", metavar="H", help="address to listen on (default: localhost)"
    )
    p.add_argument(
        "--port", type=int, default=8000, metavar="P", help="port to listen on (default: 8000)"
    )

    p = sub.add_parser(
        "export",
        help="write safetensors weights and a config (gpt: a Hugging Face GPT-2 folder)",
    )
    p.add_argument("run", metavar="RUN", help=RUN_HELP)
    p.add_argument("--to", required=True, metavar="DIR", help="folder to write (made if missing)")
    p.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="auto",
        help="which checkpoint (default: best.pt when there is one, else last.pt)",
    )


def _add_slurm_options(parser: argparse.ArgumentParser, *, gpu: bool) -> None:
    """--on, --partition, --account, --sbatch-arg (and --gpu for `run`): cockpit.cli.queue_slurm."""
    parser.add_argument(
        "--on",
        choices=("local", "slurm"),
        default="local",
        help="local: train on this machine (default); slurm: submit each entry as an sbatch job",
    )
    parser.add_argument("--partition", metavar="P", help="the Slurm partition (--on slurm)")
    parser.add_argument("--account", metavar="A", help="the Slurm account (--on slurm)")
    parser.add_argument(
        "--sbatch-arg",
        dest="sbatch_args",
        action="append",
        default=[],
        metavar="ARG",
        help="one more sbatch option for every job, as --sbatch-arg=--constraint=a100 (repeatable)",
    )
    if gpu:
        parser.add_argument(
            "--gpu",
            metavar="G",
            help="the cluster's GPU kind (--on slurm), e.g. H100: plans memory and --time by it",
        )


def _add_queue_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`queue` and its subcommands on the main parser (cockpit/__main__.py)."""
    p = sub.add_parser(
        "queue",
        help="a lasting queue of runs and sweeps, packed onto the GPUs by their memory plans",
    )
    p.add_argument("--json", action="store_true", help="the list as JSON lines")
    p.add_argument("--runs-dir", metavar="DIR", default=argparse.SUPPRESS, help=RUNS_DIR_HELP)
    qs = p.add_subparsers(
        dest="queue_command",
        metavar="SUBCOMMAND",
        help="add, rm, retry, run, stop, plan or notify (none: list the queue)",
    )
    a = qs.add_parser("add", help="add a preset (or a sweep's grid) to the queue")
    a.add_argument("preset", metavar="PRESET", help="a preset name or a preset .json file")
    a.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP
    )
    a.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="add one entry per value (several --sweep: every combination), as one group",
    )
    dev = a.add_mutually_exclusive_group()
    dev.add_argument(
        "--gpus", type=int, metavar="N", help="train on N GPUs of this machine (torchrun for N > 1)"
    )
    dev.add_argument(
        "--device",
        dest="queue_device",
        choices=("any", "cpu"),
        default="any",
        help="any: a GPU where there is one, else the CPU (default); cpu: the CPU only",
    )
    a.add_argument(
        "--priority", type=int, default=0, metavar="P", help="higher starts first (default: 0)"
    )
    a.add_argument("--after", type=int, metavar="ID", help="start only once entry ID is done")
    a.add_argument(
        "--prune",
        choices=("median", "halving"),
        help="stop a sweep's losers early: median stopping or successive halving (docs/queue.md)",
    )
    a.add_argument(
        "--name", metavar="NAME", help="a label for the entry, or the sweep's group name"
    )
    a.add_argument("--runs-dir", metavar="DIR", default=argparse.SUPPRESS, help=RUNS_DIR_HELP)
    a.add_argument(
        "--on",
        choices=("local", "slurm"),
        default="local",
        help="slurm: the entry is for `queue run --on slurm` (--gpus counts the cluster's GPUs)",
    )
    r = qs.add_parser(
        "rm", help="cancel an entry or a whole group (a running one stops with a checkpoint)"
    )
    r.add_argument("ref", metavar="ID|GROUP", help="an entry ID or a group name")
    retry = qs.add_parser(
        "retry", help="queue stopped, failed or cancelled entries again (they resume)"
    )
    retry.add_argument("ref", metavar="ID|GROUP", help="an entry ID or a group name")
    run = qs.add_parser(
        "run", help="start the scheduler, detached: it outlives the shell and the app"
    )
    run.add_argument(
        "--foreground", action="store_true", help="run the scheduler in this terminal (for scripts)"
    )
    run.add_argument(
        "--budget",
        metavar="DOLLARS",
        help="start nothing that would not finish inside it; stop runs with a checkpoint when it is spent",
    )
    run.add_argument(
        "--until",
        metavar="HH:MM",
        help="a deadline: start nothing that would not finish by then; stop runs with a checkpoint when it comes",
    )
    run.add_argument(
        "--price-per-gpu-hour",
        metavar="DOLLARS",
        help="dollars per GPU-hour (else $GPT_COCKPIT_PRICE_PER_GPU_HOUR or queue.json)",
    )
    run.add_argument(
        "--tick",
        type=float,
        metavar="SECONDS",
        help="how often the scheduler looks at its runs (default 2; with --on slurm each look"
        " is one squeue per live entry)",
    )
    _add_slurm_options(run, gpu=True)
    s = qs.add_parser(
        "stop", help="stop launching; --now also stops running entries with a checkpoint"
    )
    s.add_argument(
        "--now",
        action="store_true",
        help="also stop the running entries (each writes a checkpoint)",
    )
    n = qs.add_parser(
        "notify", help="where notices are pushed (Apprise URLs); --test sends a test message"
    )
    n.add_argument("--test", action="store_true", help="send a test message to each destination")
    pl = qs.add_parser("plan", help="what would run where and when, without running anything")
    pl.add_argument(
        "--gpu",
        metavar="G",
        help="plan for catalog GPUs instead of this machine's, e.g. H100, 4xA100-80GB or "
        "H100,T4 (mixed kinds)",
    )
    pl.add_argument(
        "--price-per-gpu-hour", metavar="DOLLARS", help="dollars per GPU-hour for the plan's cost"
    )
    pl.add_argument("--json", action="store_true", help="the plan as one JSON object")
    _add_slurm_options(pl, gpu=False)  # --on slurm: the job script of each queued entry
    helps = {action.dest: action.help or "" for action in qs._choices_actions}
    for name, q in qs.choices.items():
        q.description = helps[name][:1].upper() + helps[name][1:] + "."
        q.formatter_class = argparse.RawDescriptionHelpFormatter
        q.epilog = "\n  ".join(["examples:", *QUEUE_EXAMPLES[name]])


# What `--help` shows under each command's options: a line or two that work as typed.
MAIN_EXAMPLES = """examples:
  gpt-cockpit                                        the app
  gpt-cockpit --no-ui --preset tiny_char --max-steps 500
  gpt-cockpit --no-ui --preset small --data input.txt --set train.lr=3e-4
  gpt-cockpit estimate gpt2_124m --gpu A100-80GB

Each command has its own help, e.g. gpt-cockpit sample --help. RUN, in the
commands on runs, is a run id, a unique prefix or suffix of one, a path, or 'last'."""
EXAMPLES = {
    "presets": ["gpt-cockpit presets", "gpt-cockpit presets small --set model.n_layer=8"],
    "estimate": [
        "gpt-cockpit estimate gpt2_124m --gpu A100-80GB",
        "gpt-cockpit estimate small --batch-size 32 --exact --json",
    ],
    "probe": ["gpt-cockpit probe small --steps 3"],
    "gpus": ["gpt-cockpit gpus"],
    "runs": ["gpt-cockpit runs", "gpt-cockpit runs --json"],
    "attach": ["gpt-cockpit attach last", "gpt-cockpit attach last --no-ui"],
    "resume": ["gpt-cockpit resume last --no-ui --max-steps 4000"],
    "stop": ["gpt-cockpit stop last", "gpt-cockpit stop last --kill"],
    "sample": ["gpt-cockpit sample last --prompt 'ROMEO:' --tokens 300 --seed 1"],
    "compare": ["gpt-cockpit compare 20261121-170502-small last --align tokens"],
    "plot": ["gpt-cockpit plot last --out loss.png"],
    "serve": ["gpt-cockpit serve --host 0.0.0.0 --port 8000"],
    "export": ["gpt-cockpit export last --to exported/ --checkpoint best"],
    "queue": [
        "gpt-cockpit queue",
        "gpt-cockpit queue add small --sweep train.lr=1e-3,3e-4,1e-4",
        "gpt-cockpit queue run --budget 25 --until 07:00 --price-per-gpu-hour 2.49",
        "gpt-cockpit queue plan --gpu H100",
    ],
}
QUEUE_EXAMPLES = {
    "add": [
        "gpt-cockpit queue add small --sweep train.lr=1e-3,3e-4,1e-4",
        "gpt-cockpit queue add small --sweep train.lr=1e-3,3e-4,1e-4,3e-5 --prune median",
        "gpt-cockpit queue add gpt2_124m --gpus 2 --priority 5 --after 3",
    ],
    "rm": ["gpt-cockpit queue rm 4", "gpt-cockpit queue rm small-sweep1"],
    "retry": ["gpt-cockpit queue retry 4", "gpt-cockpit queue retry small-sweep1"],
    "run": [
        "gpt-cockpit queue run --budget 25 --until 07:00 --price-per-gpu-hour 2.49",
        "gpt-cockpit queue run --foreground",
        "gpt-cockpit queue run --on slurm --partition gpu --gpu H100",
    ],
    "stop": ["gpt-cockpit queue stop", "gpt-cockpit queue stop --now"],
    "plan": [
        "gpt-cockpit queue plan --gpu H100",
        "gpt-cockpit queue plan --gpu 4xA100-80GB",
        "gpt-cockpit queue plan --on slurm --gpu H100",
    ],
    "notify": [
        "GPT_COCKPIT_NOTIFY=ntfy://my-night-runs gpt-cockpit queue notify --test",
        "gpt-cockpit queue notify",
    ],
}


def _add_examples(
    parser: argparse.ArgumentParser, sub: argparse._SubParsersAction[argparse.ArgumentParser]
) -> None:
    """Each command's help line as its description, and examples below every option list."""
    parser.epilog = MAIN_EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    helps = {action.dest: action.help or "" for action in sub._choices_actions}
    for name, command in sub.choices.items():
        line = helps.get(name, "")
        command.description = line[:1].upper() + line[1:] + "." if line else None
        examples = EXAMPLES.get(name, [])
        if examples:
            heading = "examples:" if len(examples) > 1 else "example:"
            command.epilog = "\n  ".join([heading, *examples])
        command.formatter_class = argparse.RawDescriptionHelpFormatter


def _dispatch(target: str, args: argparse.Namespace) -> int:
    module_name, func_name = target.split(":")
    module = importlib.import_module(module_name)
    return int(getattr(module, func_name)(args) or 0)


def main(argv: list[str] | None = None, *, whole_process: bool | None = None) -> int:
    """Run one command. `whole_process` (the default when argv comes from sys.argv) says the
    process ends with it, so a command may leave signal handlers for its last moments."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.whole_process = argv is None if whole_process is None else whole_process
    problem = runs_dir_problem(args)
    if problem:
        error(problem)
        return EXIT_USAGE
    try:
        if args.command:
            return _dispatch(_COMMANDS[args.command], args)
        if args.no_ui:
            return _dispatch("cockpit.headless:cmd_headless", args)
        return _dispatch("cockpit.tui.app:cmd_app", args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except ModuleNotFoundError as exc:
        error(
            f"missing Python package {exc.name!r}: install it with `pip install {exc.name}` (or reinstall gpt-cockpit)"
        )
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
