"""What a run's Slurm job asks for, and its sbatch script (cockpit.campaign.slurm submits it).

The request: GPUs and CPUs per node, `--mem` from the run's host memory plan, `--time` from
its ETA with a margin. The script trains the run directory in place (fresh, or resumed from
its checkpoint), through torchrun for several GPUs and srun for several nodes, traps the time
limit's USR1 (checkpoint, then requeue itself) and SIGTERM (stop with a checkpoint). Pure text
and arithmetic: nothing here runs a Slurm command or imports torch.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cockpit.plan.estimate import count_params, optimizer_state_bytes
from cockpit.plan.presets import Preset
from cockpit.runs import Ranks, child_command

SIGNAL_LEAD_S = 120  # USR1 this long before the time limit: time for a step and a checkpoint
TIME_MARGIN = 1.25  # --time is the ETA times this...
START_ALLOWANCE_S = 600  # ...plus this for imports, data, compile, evals and the last checkpoint
MEM_ROUND_MB = 256
MEM_MARGIN = 1.25  # on the host plan: Slurm kills a job over its --mem
CPUS_PER_GPU = 4  # data loading and the host side of each GPU's rank


# --------------------------------------------------------------------------- what a job asks for


@dataclass(frozen=True)
class SlurmOptions:
    """How `queue run --on slurm` submits: where, on whose account, and any other sbatch option."""

    partition: str | None = None  # --partition; None: the cluster's default partition
    account: str | None = None  # --account; None: the user's default account
    sbatch_args: tuple[str, ...] = ()  # more sbatch options, one each, as `--constraint=a100`
    python: str = field(default_factory=lambda: sys.executable)  # on the shared filesystem

    def problem(self) -> str | None:
        """Why these options cannot make a job script, or None."""
        for arg in self.sbatch_args:
            if not arg.startswith("-") or any(c in arg for c in "\n\r"):
                return f"--sbatch-arg {arg!r} is not one sbatch option (e.g. --constraint=a100)"
        for name, value in (("--partition", self.partition), ("--account", self.account)):
            if value is not None and (not value.strip() or any(c.isspace() for c in value)):
                return f"{name} {value!r} is not a name"
        return None


@dataclass(frozen=True)
class JobRequest:
    """What one run asks of Slurm: nodes, GPUs and CPUs per node, memory per node, time."""

    run_dir: Path
    gpus_per_node: int = 0
    nodes: int = 1
    cpus_per_task: int = 1  # CPUs per node for the run's processes on it
    mem_bytes: int = 0  # per node; 0 leaves the partition's default (DefMemPerCPU)
    time_limit_s: int | None = None  # None leaves the partition's default time limit
    eta_s: float | None = None  # the estimate the time limit came from, for the script's comment
    preset_name: str = ""
    workdir: Path | None = None  # where the child starts (relative data paths); None: run_dir

    @property
    def ranks(self) -> Ranks:
        return Ranks(nproc=max(1, self.gpus_per_node), nnodes=self.nodes)

    @property
    def device(self) -> str:
        """The child's --device: cpu for a CPU entry (whatever the node has), auto with GPUs."""
        return "auto" if self.gpus_per_node else "cpu"

    @property
    def mem_mb(self) -> int:
        mb = math.ceil(self.mem_bytes / (1 << 20))
        return -(-mb // MEM_ROUND_MB) * MEM_ROUND_MB if mb else 0


def host_memory_bytes(preset: Preset, gpus_per_node: int = 0) -> int:
    """Host memory the run needs on one node (bytes): what `--mem` asks for.

    cockpit.plan.host's plan (a CPU run's tensors, runtime and data; a GPU run's CUDA runtime,
    data and pinned buffers, per process), plus what a resume holds on top of it: each process
    loads the checkpoint to the CPU first (weights and optimizer state, fp32); with a margin,
    since Slurm kills a job that goes over (with cgroup enforcement).
    """
    from cockpit.plan.host import host_memory

    procs = max(1, gpus_per_node)
    plan = host_memory(preset, "cuda" if gpus_per_node else "cpu", nproc=procs).total_bytes
    state = count_params(preset.model) * 4
    state += optimizer_state_bytes(preset.model, preset.train.optimizer)
    return int((plan + procs * state) * MEM_MARGIN)


def time_limit_s(preset: Preset, eta_s: float | None) -> int | None:
    """`--time` in seconds: the ETA with a margin, capped by the preset's own wall-clock limit
    (the run ends itself there); None when neither is known (the partition's default applies)."""
    limits = []
    if eta_s is not None and eta_s > 0:
        limits.append(eta_s * TIME_MARGIN + START_ALLOWANCE_S + SIGNAL_LEAD_S)
    if preset.train.max_time_s > 0:
        limits.append(preset.train.max_time_s + START_ALLOWANCE_S + SIGNAL_LEAD_S)
    if not limits:
        return None
    return int(math.ceil(min(limits) / 60.0) * 60)  # Slurm counts whole minutes


def job_request(
    run_dir: str | os.PathLike[str],
    preset: Preset,
    *,
    gpus: int = 0,
    nodes: int = 1,
    cpus: int | None = None,
    eta_s: float | None = None,
    workdir: str | os.PathLike[str] | None = None,
) -> JobRequest:
    """The job for `preset` in `run_dir`: `gpus` per node on `nodes` nodes (0: a CPU run)."""
    if gpus < 0 or nodes < 1:
        raise ValueError("a job needs at least one node and no negative GPU count")
    for path in (run_dir, workdir or ""):
        if any(c.isspace() for c in str(path)):
            raise ValueError(f"{path}: Slurm's job options need a path without spaces")
    if nodes > 1 and gpus < 1:
        raise ValueError("a run on several nodes trains on GPUs (--gpus N per node)")
    cpus_per_task = cpus if cpus and cpus > 0 else (CPUS_PER_GPU * gpus if gpus else 1)
    return JobRequest(
        run_dir=Path(run_dir).resolve(),
        gpus_per_node=gpus,
        nodes=nodes,
        cpus_per_task=cpus_per_task,
        mem_bytes=host_memory_bytes(preset, gpus),
        time_limit_s=time_limit_s(preset, eta_s),
        eta_s=eta_s,
        preset_name=preset.name,
        workdir=Path(workdir).resolve() if workdir else None,
    )


# --------------------------------------------------------------------------- the job script


def slurm_time(seconds: int) -> str:
    """Seconds as sbatch's D-HH:MM:SS."""
    days, rest = divmod(int(seconds), 86400)
    return f"{days}-{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


def sbatch_lines(req: JobRequest, opts: SlurmOptions) -> list[str]:
    """The #SBATCH options of the job (the user's own --sbatch-arg last, so they win)."""
    run_dir = req.run_dir
    lines = [
        f"--job-name=cockpit-{run_dir.name}",
        f"--chdir={run_dir}",
        f"--output={run_dir}/slurm-%j.out",
        "--open-mode=append",  # a requeued job writes on after its first attempt
        f"--nodes={req.nodes}",
        "--ntasks-per-node=1",  # one launcher per node (the child, or torchrun and its ranks)
        f"--cpus-per-task={req.cpus_per_task}",
    ]
    if req.gpus_per_node:
        lines.append(f"--gres=gpu:{req.gpus_per_node}")
    if req.mem_mb:
        lines.append(f"--mem={req.mem_mb}M")
    if req.time_limit_s:
        lines.append(f"--time={slurm_time(req.time_limit_s)}")
    lines += [f"--signal=B:USR1@{SIGNAL_LEAD_S}", "--requeue"]
    if opts.partition:
        lines.append(f"--partition={opts.partition}")
    if opts.account:
        lines.append(f"--account={opts.account}")
    return lines + list(opts.sbatch_args)


def _train_command(req: JobRequest, python: str) -> tuple[str, bool]:
    """The shell command that trains the run (resume flags appended by the script); torchrun?"""
    ranks = req.ranks
    argv = child_command(req.run_dir, device=req.device, ranks=ranks)
    argv[0] = python
    if ranks.nnodes == 1:
        return shlex.join(argv), ranks.torchrun
    # One torchrun per node, started by srun; each learns its node rank from its own
    # SLURM_NODEID, and node 0 (this batch host) holds rank 0, which writes the run.
    launcher = [
        python,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        str(ranks.nnodes),
        "--nproc-per-node",
        str(ranks.nproc),
        "--master-addr",
        "$MASTER_ADDR",
        "--master-port",
        "$MASTER_PORT",
    ]
    child = child_command(req.run_dir, device=req.device)[1:]
    quoted = [a if a.startswith("$") else shlex.quote(a) for a in launcher]
    inner = " ".join([*quoted[:5], '--node-rank "$SLURM_NODEID"', *quoted[5:]])
    inner = inner.replace("$MASTER_ADDR", '"$MASTER_ADDR"').replace(
        "$MASTER_PORT", '"$MASTER_PORT"'
    )
    inner = f'exec {inner} {shlex.join(child)} "$@"'
    srun = "srun --ntasks-per-node=1 --kill-on-bad-exit=1"
    return f"{srun} bash -c {shlex.quote(inner)} torchrun", True


def _about(req: JobRequest) -> list[str]:
    """The script's comment: what it trains and where its numbers come from."""
    from cockpit.common.format import counted, human_bytes, human_duration

    what = counted(req.gpus_per_node, "GPU") if req.gpus_per_node else "the CPU"
    if req.nodes > 1:
        what += f" on each of {req.nodes} nodes"
    mem = (
        f"{human_bytes(req.mem_bytes)} planned host memory (per node, with a margin)"
        if req.mem_bytes
        else "the partition's default memory"
    )
    if req.time_limit_s and req.eta_s:
        when = f"ETA {human_duration(req.eta_s)} x {TIME_MARGIN} + {START_ALLOWANCE_S // 60} min"
    elif req.time_limit_s:
        when = "the preset's train.max_time_s + a start allowance"
    else:
        when = "no ETA known: the partition's default time limit"
    return [
        f"# gpt-cockpit: trains {req.run_dir.name} (preset {req.preset_name or '?'}) on {what}.",
        f"# Memory: {mem}. Time: {when}.",
        f"# {SIGNAL_LEAD_S} s before the time limit Slurm sends USR1: the run checkpoints and",
        "# the job requeues itself; the requeued job resumes from that checkpoint. SIGTERM",
        "# (scancel, preemption, `gpt-cockpit queue stop --now`) stops it with a checkpoint.",
        "# The training child's output goes to console.log, this script's to slurm-<job>.out.",
    ]


def job_script(req: JobRequest, opts: SlurmOptions | None = None) -> str:
    """The sbatch script that trains `req.run_dir` (fresh, or resumed when it has a checkpoint)."""
    opts = opts or SlurmOptions()
    python = opts.python
    command, torchrun = _train_command(req, python)
    q_run, q_python = shlex.quote(str(req.run_dir)), shlex.quote(python)
    cd = 'cd "$RUN_DIR" || exit 1'
    if req.workdir and req.workdir != req.run_dir:
        cd = f"cd {shlex.quote(str(req.workdir))} || exit 1  # relative data paths, as when added"
    if torchrun:  # rank 0 (the run's lock holder) stops first; the other ranks follow it
        stop = (
            '    if "$PYTHON" -m cockpit stop "$RUN_DIR" >/dev/null 2>&1; then\n'
            '        echo "gpt-cockpit: asked rank 0 to stop; the other ranks follow it"\n'
            '    elif [ -n "$child" ]; then\n'
            '        kill -TERM "$child" 2>/dev/null\n'
            "    fi"
        )
    else:
        stop = '    [ -n "$child" ] && kill -TERM "$child" 2>/dev/null'
    rendezvous = ""
    if req.nodes > 1:
        rendezvous = (
            'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)\n'
            "MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))\n"
            "export MASTER_ADDR MASTER_PORT\n"
        )
    lines = ["#!/bin/bash", *(f"#SBATCH {line}" for line in sbatch_lines(req, opts)), "#"]
    lines += _about(req)
    body = f"""
set -u
RUN_DIR={q_run}
PYTHON={q_python}
{cd}
export PYTHONUNBUFFERED=1
export GPT_COCKPIT_CPU_THREADS="${{GPT_COCKPIT_CPU_THREADS:-${{SLURM_CPUS_PER_TASK:-1}}}}"
{"" if req.gpus_per_node else "unset CUDA_VISIBLE_DEVICES  # a CPU run: no GPU of the submitting shell"}
resume=()  # a non-empty checkpoint: resume from it (runs.prelaunch.resume_problem's rule)
if [ -s "$RUN_DIR/checkpoints/last.pt" ] || [ -s "$RUN_DIR/checkpoints/last.prev.pt" ]; then
    resume=(--resume)
fi
{rendezvous}child=""
requeue=0
stop_training() {{
{stop}
}}
on_time_limit() {{
    echo "gpt-cockpit: the time limit is near: checkpointing, then requeueing job $SLURM_JOB_ID"
    requeue=1
    stop_training
}}
on_stop() {{
    echo "gpt-cockpit: $1 received: stopping the run with a checkpoint"
    stop_training
}}
trap on_time_limit USR1
trap 'on_stop SIGTERM' TERM
trap 'on_stop SIGINT' INT
trap 'on_stop SIGHUP' HUP

echo "gpt-cockpit: job $SLURM_JOB_ID on $(hostname) (restart ${{SLURM_RESTART_COUNT:-0}}):" \\
    "${{resume[*]:-fresh start}}"
{command} ${{resume[@]+"${{resume[@]}}"}} >> "$RUN_DIR/console.log" 2>&1 &
child=$!
while :; do  # a trapped signal ends `wait` early: wait again until the child is gone
    wait "$child"
    status=$?
    kill -0 "$child" 2>/dev/null || break
done
echo "gpt-cockpit: the training child exited with $status"
trap '' USR1 TERM INT HUP  # the run is over: a requeue's own SIGTERM has nothing left to stop
if [ "$requeue" = 1 ] && [ "$status" = 0 ] && "$PYTHON" -c \\
    'import json, sys; sys.exit(json.load(open(sys.argv[1])).get("status") != "stopped")' \\
    "$RUN_DIR/run.json"; then
    echo "gpt-cockpit: requeueing job $SLURM_JOB_ID: it resumes from the checkpoint"
    scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
"""
    text = "\n".join(lines) + "\n" + body
    return text.replace("\n\n\n", "\n\n")
