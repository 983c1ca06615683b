"""Slurm as a campaign's engine: sbatch, squeue/scontrol and scancel for a run's job.

One queued entry is one batch job. Its script trains the run directory in place (the
directory lives on the cluster's shared filesystem, so the run screen, `attach`, `runs`
and `compare` read it from any node), through torchrun for several GPUs, with srun and a
rendezvous from the SLURM_* variables for several nodes. The script asks Slurm for
`--signal=B:USR1@120`: two minutes before the time limit the run checkpoints and the job
requeues itself, and the requeued job resumes from that checkpoint. SIGTERM (scancel,
preemption, `queue stop --now`) stops the run with a checkpoint too.

Job state is read with squeue, and with scontrol for one job; never with sacct, which
small clusters often run without. The request and the script are cockpit.campaign.slurm_script's
(re-exported here). Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cockpit import rundir
from cockpit.campaign.slurm_script import (  # the request and the script, re-exported
    CPUS_PER_GPU,
    MEM_MARGIN,
    MEM_ROUND_MB,
    SIGNAL_LEAD_S,
    START_ALLOWANCE_S,
    TIME_MARGIN,
    JobRequest,
    SlurmOptions,
    host_memory_bytes,
    job_request,
    job_script,
    sbatch_lines,
    slurm_time,
    time_limit_s,
)
from cockpit.common.fsutil import atomic_writer
from cockpit.rundir.info import atomic_write_text
from cockpit.runs import index as run_index

__all__ = [
    "CPUS_PER_GPU",
    "JOB_SCRIPT",
    "MEM_MARGIN",
    "MEM_ROUND_MB",
    "QUEUED",
    "RESUMABLE_ENDS",
    "SIGNAL_LEAD_S",
    "SLURM_JSON",
    "START_ALLOWANCE_S",
    "TIME_MARGIN",
    "JobRequest",
    "JobState",
    "SlurmError",
    "SlurmOptions",
    "SlurmRefused",
    "SlurmUnavailable",
    "cancel",
    "host_memory_bytes",
    "job_of_run",
    "job_request",
    "job_script",
    "read_job",
    "read_jobs",
    "read_slurm_record",
    "refusal",
    "requeue",
    "requeue_run",
    "sbatch_lines",
    "settle_run",
    "slurm_problem",
    "slurm_time",
    "submit",
    "time_limit_s",
    "warn_time_limit",
]

CLIENTS = ("sbatch", "squeue", "scontrol", "scancel")
JOB_SCRIPT = "slurm-job.sh"  # the script as submitted, in the run directory (sbatch it by hand)
SLURM_JSON = "slurm.json"  # the jobs that trained this run: ids, cluster, when submitted
QUEUED = rundir.WAITING_STATUSES[0]  # run.json status while the job waits in Slurm's queue

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
