"""Slurm as a campaign's engine: the job script of a run, sbatch, squeue/scontrol, scancel.

One queued entry is one batch job. Its script trains the run directory in place (the
directory lives on the cluster's shared filesystem, so the run screen, `attach`, `runs`
and `compare` read it from any node), through torchrun for several GPUs, with srun and a
rendezvous from the SLURM_* variables for several nodes. The script asks Slurm for
`--signal=B:USR1@120`: two minutes before the time limit the run checkpoints and the job
requeues itself, and the requeued job resumes from that checkpoint. SIGTERM (scancel,
preemption, `queue stop --now`) stops the run with a checkpoint too.

Job state is read with squeue, and with scontrol for one job; never with sacct, which
small clusters often run without. Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cockpit import rundir
from cockpit.common.fsutil import atomic_writer
from cockpit.plan.estimate import count_params, optimizer_state_bytes
from cockpit.plan.presets import Preset
from cockpit.rundir.info import atomic_write_text
from cockpit.runs import Ranks, child_command
from cockpit.runs import index as run_index

CLIENTS = ("sbatch", "squeue", "scontrol", "scancel")
JOB_SCRIPT = "slurm-job.sh"  # the script as submitted, in the run directory (sbatch it by hand)
SLURM_JSON = "slurm.json"  # the jobs that trained this run: ids, cluster, when submitted
QUEUED = rundir.WAITING_STATUSES[0]  # run.json status while the job waits in Slurm's queue

SIGNAL_LEAD_S = 120  # USR1 this long before the time limit: time for a step and a checkpoint
TIME_MARGIN = 1.25  # --time is the ETA times this...
START_ALLOWANCE_S = 600  # ...plus this for imports, data, compile, evals and the last checkpoint
MEM_ROUND_MB = 256
MEM_MARGIN = 1.25  # on the host plan: Slurm kills a job over its --mem
CPUS_PER_GPU = 4  # data loading and the host side of each GPU's rank
CALL_TIMEOUT_S = 60.0  # a Slurm client that hangs this long means slurmctld does not answer

# Slurm job states by what they mean for the run (squeue's %T).
WAITING = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESV_DEL_HOLD")
ACTIVE = ("RUNNING", "COMPLETING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "RESIZING", "STOPPED")
# Ends that Slurm imposed on a run that was not done (it checkpoints on the way out): resume it.
RESUMABLE_ENDS = ("TIMEOUT", "PREEMPTED", "NODE_FAIL", "BOOT_FAIL", "DEADLINE")


class SlurmError(RuntimeError):
    """A Slurm command failed; the message is one line that says why."""


class SlurmUnavailable(SlurmError):
    """This machine has no Slurm client (or no controller answers)."""


class SlurmRefused(SlurmError):
    """sbatch refused the job (memory or GPUs the partition cannot give, an unknown partition)."""


def slurm_problem() -> str | None:
    """Why jobs cannot be submitted from here (one line), or None."""
    missing = [c for c in CLIENTS if shutil.which(c) is None]
    if not missing:
        return None
    return (
        f"{', '.join(missing)} not found: this machine is no Slurm login node "
        "(run the queue on one, or without --on slurm to train here)"
    )


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


# --------------------------------------------------------------------------- Slurm's commands


def _call(
    argv: Sequence[str], *, timeout: float = CALL_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run a Slurm client; SlurmUnavailable when it is missing or does not answer."""
    try:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=_client_env(),
        )
    except FileNotFoundError:
        raise SlurmUnavailable(slurm_problem() or f"{argv[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise SlurmUnavailable(
            f"{argv[0]} did not answer in {timeout:.0f} s: is slurmctld up? (`sinfo` says)"
        ) from None


def _client_env() -> dict[str, str]:
    """Our environment for Slurm's clients (a job inherits it): no GPU pinning of our own."""
    env = dict(os.environ)
    env.pop("CUDA_VISIBLE_DEVICES", None)  # Slurm sets it for the GPUs it grants
    return env


def refusal(stderr: str) -> str:
    """sbatch's error lines as one: the failure, then its details in brackets."""
    errors = []
    for line in stderr.splitlines():
        text = line.strip()
        for prefix in ("sbatch: error:", "error:"):
            if text.startswith(prefix):
                text = text[len(prefix) :].strip()
                break
        else:
            continue
        errors.append(text)
    if not errors:
        return " ".join(stderr.split()) or "failed without a message"
    main = [
        e.split(":", 1)[1].strip() for e in errors if e.startswith("Batch job submission failed")
    ]
    rest = [e for e in errors if not e.startswith("Batch job submission failed")]
    head = main[0] if main else rest.pop(0)
    return f"{head} ({'; '.join(rest)})" if rest else head


def submit(req: JobRequest, opts: SlurmOptions | None = None) -> str:
    """Submit the run's job; its id. The run reads `queued` until the job starts.

    SlurmRefused (with Slurm's reason, recorded on the run as an error) when sbatch refuses
    it; SlurmUnavailable when there is no Slurm here.
    """
    opts = opts or SlurmOptions()
    problem = opts.problem() or slurm_problem()
    if problem:
        raise SlurmUnavailable(problem) if not opts.problem() else SlurmError(problem)
    script = req.run_dir / JOB_SCRIPT
    with atomic_writer(script, "w") as handle:
        handle.write(job_script(req, opts))
    os.chmod(script, 0o755)
    before = rundir.read_run_info(req.run_dir)
    _mark_queued(req.run_dir)
    out = _call(["sbatch", "--parsable", str(script)])
    job_id = out.stdout.strip().split(";")[0] if out.returncode == 0 else ""
    if not job_id.isdigit():
        why = refusal(out.stderr) if out.returncode else f"sbatch said {out.stdout.strip()!r}"
        _restore_after_refusal(req.run_dir, before, why)
        raise SlurmRefused(f"Slurm refused the job: {why}")
    _record_job(req.run_dir, job_id, opts)
    run_index.record(req.run_dir)  # `runs`, `attach last` and `compare` find it from anywhere
    return job_id


def _mark_queued(run_dir: Path) -> None:
    """run.json while the job waits: `queued`, unless a trainer already holds the run."""

    def change(current: rundir.RunInfo) -> dict[str, object]:
        if rundir.lock_holder(run_dir):
            return {}
        return {"status": QUEUED, "end_reason": None, "end_message": None}

    rundir.update_run_info(run_dir, change)


def _restore_after_refusal(run_dir: Path, before: rundir.RunInfo, why: str) -> None:
    """A refused job leaves the run as it was; a run that never trained says why it did not."""
    if before.status in rundir.FINAL_STATUSES:
        rundir.update_run_info(
            run_dir,
            status=before.status,
            end_reason=before.end_reason,
            end_message=before.end_message,
        )
        return
    rundir.update_run_info(
        run_dir,
        status="error",
        end_reason="error",
        end_message=f"Slurm refused the job: {why}",
        ended=time.time(),
    )


def read_slurm_record(run_dir: str | os.PathLike[str]) -> dict[str, object]:
    """slurm.json of a run ({} when it never went to Slurm or cannot be read)."""
    try:
        raw = json.loads((Path(run_dir) / SLURM_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _record_job(run_dir: Path, job_id: str, opts: SlurmOptions) -> None:
    record = read_slurm_record(run_dir)
    listed = record.get("jobs")
    jobs = [j for j in listed if isinstance(j, dict)] if isinstance(listed, list) else []
    jobs.append({"job_id": job_id, "submitted": time.time(), "host": platform.node()})
    record.update(
        job_id=job_id,
        jobs=jobs,
        partition=opts.partition,
        account=opts.account,
        cluster_conf=os.environ.get("SLURM_CONF"),
    )
    atomic_write_text(run_dir / SLURM_JSON, json.dumps(record, indent=2) + "\n")


def job_of_run(run_dir: str | os.PathLike[str]) -> str | None:
    """The id of the last job submitted for this run, or None."""
    job = read_slurm_record(run_dir).get("job_id")
    return str(job) if job else None


@dataclass(frozen=True)
class JobState:
    """One job as squeue (or scontrol) sees it."""

    job_id: str
    state: str  # PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, CANCELLED...
    reason: str = ""  # why it is pending (Resources, Priority, BeginTime...), or how it ended
    nodes: str = ""
    elapsed: str = ""

    @property
    def waiting(self) -> bool:
        return self.state in WAITING

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def ended(self) -> bool:
        return not (self.waiting or self.active)

    def describe(self) -> str:
        """`PENDING (Resources)`, `RUNNING on node12`, `COMPLETED`."""
        text = self.state
        if self.reason and self.reason not in ("None", "(null)"):
            text += f" ({self.reason})"
        if self.active and self.nodes:
            text += f" on {self.nodes}"
        return text


SQUEUE_FORMAT = "%i|%T|%r|%N|%M"


def read_jobs(job_ids: Sequence[str]) -> dict[str, JobState]:
    """The jobs squeue still knows, by id (one it has forgotten, MinJobAge after its end, is left
    out); SlurmUnavailable when squeue fails for any other reason (slurmctld down)."""
    ids = [str(j) for j in job_ids if str(j).isdigit()]
    if not ids:
        return {}
    out = _call(
        [
            "squeue",
            "--noheader",
            "--states=all",
            f"--jobs={','.join(ids)}",
            f"--format={SQUEUE_FORMAT}",
        ]
    )
    if out.returncode != 0:
        if not _unknown_job(out.stderr):  # no answer is not an answer: the caller waits
            raise SlurmUnavailable(f"squeue: {refusal(out.stderr)}")
        if len(ids) > 1:  # squeue refuses the whole list when one id is unknown (old Slurm)
            found: dict[str, JobState] = {}
            for one in ids:
                found.update(read_jobs([one]))
            return found
        return {}
    found = {}
    for line in out.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 5 and parts[0] in ids:
            found[parts[0]] = JobState(parts[0], parts[1], parts[2], parts[3], parts[4])
    return found


def _unknown_job(stderr: str) -> bool:
    """Slurm's answer for a job it does not know (never had, or forgot MinJobAge after its end)."""
    return "invalid job id" in stderr.lower()


def read_job(job_id: str) -> JobState | None:
    """One job from squeue, else from scontrol (which may know it a little longer); None if
    Slurm does not know it. SlurmUnavailable when Slurm does not answer (not the same thing)."""
    found = read_jobs([job_id]).get(str(job_id))
    if found is not None:
        return found
    out = _call(["scontrol", "show", "job", "--oneliner", str(job_id)])
    if out.returncode != 0:
        if _unknown_job(out.stderr):
            return None
        raise SlurmUnavailable(f"scontrol show job {job_id}: {refusal(out.stderr)}")
    fields = dict(item.split("=", 1) for item in out.stdout.split() if "=" in item)
    state = fields.get("JobState", "")
    if not state:
        return None
    return JobState(
        str(job_id),
        state,
        fields.get("Reason", ""),
        fields.get("NodeList", ""),
        fields.get("RunTime", ""),
    )


def cancel(job_id: str, *, checkpoint: bool = True) -> str:
    """Cancel a job; a running one (with `checkpoint`) gets SIGTERM in its batch script, which
    stops the run with a checkpoint and ends the job. Returns what was done, in a few words."""
    job = read_job(job_id)
    if job is None or job.ended:
        return "already ended"
    if checkpoint and job.active:
        # Only the batch shell: it asks the run to stop and waits for the checkpoint. A signal
        # to a pending job would keep scancel retrying; that one is simply cancelled below.
        out = _call(["scancel", "--batch", "--signal=TERM", str(job_id)])
        if out.returncode == 0:
            return "asked to stop with a checkpoint"
    out = _call(["scancel", str(job_id)])
    if out.returncode != 0:
        raise SlurmError(f"scancel {job_id}: {refusal(out.stderr)}")
    return "cancelled"


def warn_time_limit(job_id: str) -> None:
    """Send the batch script the time limit's USR1 now: checkpoint, requeue, resume."""
    out = _call(["scancel", "--batch", "--signal=USR1", str(job_id)])
    if out.returncode != 0:
        raise SlurmError(f"scancel --signal=USR1 {job_id}: {refusal(out.stderr)}")


def requeue(job_id: str) -> None:
    """Put a job back in the queue (a running one is stopped first; it resumes from its checkpoint)."""
    out = _call(["scontrol", "requeue", str(job_id)])
    if out.returncode != 0:
        raise SlurmError(f"scontrol requeue {job_id}: {refusal(out.stderr)}")


def requeue_run(run_dir: str | os.PathLike[str]) -> str:
    """Requeue the run's last job (Slurm still knows it) so it resumes from its checkpoint; its id.

    SlurmError when the run never went to Slurm or Slurm has forgotten the job (submit again).
    """
    path = Path(run_dir)
    job_id = job_of_run(path)
    if job_id is None:
        raise SlurmError(f"{path.name} was never submitted to Slurm ({SLURM_JSON} is missing)")
    before = rundir.read_run_info(path)
    _mark_queued(path)
    try:
        requeue(job_id)
    except SlurmError:
        rundir.update_run_info(
            path, status=before.status, end_reason=before.end_reason, end_message=before.end_message
        )
        raise
    return job_id


def settle_run(run_dir: str | os.PathLike[str], job: JobState | None) -> str:
    """Record the end of a run whose job ended before the run could (it never started, or the
    node took it down); returns the run's status. A run that recorded its own end is left alone."""
    path = Path(run_dir)
    info = rundir.read_run_info(path)
    if job is not None and not job.ended:
        return rundir.run_status(path)
    if info.status not in (QUEUED, *rundir.LIVE_STATUSES) or rundir.lock_holder(path):
        return rundir.run_status(path)
    ended = [r for r in rundir.read_last_records(path / rundir.EVENTS_JSONL) if r["event"] == "end"]
    if ended:
        return rundir.run_status(path, update=True)
    how = f"Slurm job {job.job_id} ended {job.describe()}" if job else "its Slurm job is gone"
    never = info.status == QUEUED
    status = "stopped" if never and job is not None and job.state == "CANCELLED" else "crashed"
    log = f"slurm-{job.job_id}.out" if job else "slurm-*.out"
    message = (
        f"{how} before the run started; see {log}"
        if never
        else f"{how} before the run recorded its end; see {log}"
    )
    rundir.update_run_info(
        path, status=status, end_reason=status, end_message=message, ended=time.time()
    )
    return status
