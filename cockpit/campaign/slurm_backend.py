"""The Slurm backend: each queue entry is one sbatch job; Slurm decides where and when it runs.

The scheduler submits every entry that is ready (its `--after` done, inside the budget and
the deadline) with the GPUs and CPUs it asks for, instead of packing it onto this machine:
the cluster's own scheduler packs. An entry stays `starting` while its job waits in Slurm's
queue and becomes `running` when its job runs; it is charged GPU time only then. Polling
reads the job from squeue/scontrol and the run from its directory on the shared filesystem;
everything needed to find a job again is in the entry (`backend_job` = the job id), so a
scheduler restarted on another login node goes on where this one stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cockpit import rundir
from cockpit.campaign import slurm
from cockpit.campaign.backend import Backend, Placement, RunState
from cockpit.campaign.packing import Gpu, Machine, Need, Refusal, never_fits
from cockpit.campaign.store import Entry
from cockpit.plan.gpu import GpuSpec
from cockpit.plan.presets import Preset

CLUSTER_GPUS = 64  # what a cluster "machine" offers the planner: more than any one job asks
CLUSTER_CORES = 1 << 16
CLUSTER_RAM_BYTES = 1 << 60
CPUS_PER_CPU_RUN = 4  # a CPU entry's --cpus-per-task (`--sbatch-arg=--cpus-per-task=N` wins)


def cluster_machine(
    spec: GpuSpec | None,
) -> Callable[[dict[int, int], int], tuple[Machine, dict[int, GpuSpec]]]:
    """The scheduler's `machine` for Slurm: GPUs of the cluster's kind (`--gpu`, for the memory
    check and the ETA behind `--time`), or of no known kind (no plan: Slurm's defaults)."""

    def machine(_ours: dict[int, int], _ram: int) -> tuple[Machine, dict[int, GpuSpec]]:
        capacity = spec.usable_bytes if spec is not None else CLUSTER_RAM_BYTES
        name = spec.name if spec is not None else "GPU"
        gpus = tuple(Gpu(i, name, capacity) for i in range(CLUSTER_GPUS))
        specs = {i: spec for i in range(CLUSTER_GPUS)} if spec is not None else {}
        label = f"the Slurm cluster ({name})" if spec is not None else "the Slurm cluster"
        return Machine(gpus, CLUSTER_CORES, CLUSTER_RAM_BYTES, label), specs

    return machine


class SlurmBackend(Backend):
    """Runs entries as Slurm batch jobs (cockpit.campaign.slurm)."""

    name = "slurm"
    packs_itself = True

    def __init__(self, options: slurm.SlurmOptions | None = None) -> None:
        self.options = options or slurm.SlurmOptions()
        self._looked: dict[str, slurm.JobState] = {}  # this tick's squeue by job id, each used once

    def place(self, need: Need, machine: Machine) -> Placement | Refusal:
        """The GPUs the entry asks for (Slurm picks which), or the CPU; refused only when the
        plan says it can never run on the cluster's GPUs (`--gpu`), or its preset is unusable."""
        never = never_fits(need, machine)
        if never:
            return Refusal(never, never=True)
        if need.on_gpu(machine):
            return Placement(gpus=tuple(range(need.gpus)), planned_bytes=need.gpu_bytes or None)
        return Placement(planned_bytes=need.ram_bytes or None)

    def request(
        self, entry: Entry, run_dir: Path, placement: Placement, preset: Preset | None = None
    ) -> slurm.JobRequest:
        """The job an entry asks for in `run_dir` (its preset read there unless given)."""
        preset = preset or rundir.load_run_preset(run_dir)
        gpus = len(placement.gpus)
        cpus = placement.threads if not gpus and placement.threads else None
        return slurm.job_request(
            run_dir,
            preset,
            gpus=gpus,
            cpus=cpus or (None if gpus else CPUS_PER_CPU_RUN),
            eta_s=entry.planned_seconds,
            workdir=entry.workdir or None,
        )

    def start(self, entry: Entry, run_dir: Path, placement: Placement, *, resume: bool) -> str:
        """Submit the entry's job; its id. RuntimeError with Slurm's reason when it is refused
        (the job script finds the checkpoint and resumes by itself, whatever `resume` says)."""
        return slurm.submit(self.request(entry, run_dir, placement), self.options)

    def look(self, entries: list[Entry]) -> None:
        """One squeue for every live entry's job this tick, not one per entry (a sweep of a
        hundred runs would ask slurmctld a hundred times a tick)."""
        try:
            self._looked = slurm.read_jobs([e.backend_job for e in entries if e.backend_job])
        except slurm.SlurmError:
            self._looked = {}  # each poll asks again, and says why it cannot tell

    def poll(self, entry: Entry) -> RunState:
        """The job's state from Slurm and the run's from its directory."""
        if not entry.run_dir or not entry.backend_job:
            return RunState("unknown", message="no job yet")
        path = Path(entry.run_dir)
        try:
            # this tick's look, else its own question (a job squeue forgot: scontrol may know it)
            job = self._looked.pop(entry.backend_job, None) or slurm.read_job(entry.backend_job)
        except slurm.SlurmError as exc:
            return RunState("unknown", message=str(exc))
        try:
            info = rundir.read_run_info(path)
            status = slurm.settle_run(path, job)
        except rundir.RunError as exc:
            return RunState("unknown", message=str(exc))
        step, max_steps = info.step, info.max_steps or 0
        where = f"Slurm job {entry.backend_job} {job.describe()}" if job else ""
        if job is not None and job.waiting:
            return RunState("starting", step=step, max_steps=max_steps, message=where)
        if job is not None and job.active:
            live = status == "running" or (status == "starting" and step > 0)
            return RunState("running" if live else "starting", step, max_steps, message=where)
        # The job has ended (or Slurm has forgotten it): the run directory says how.
        info = rundir.read_run_info(path)
        reason, message = info.end_reason or status, info.end_message or ""
        if status == "finished":
            reason = "finished"
        elif status == "stopped" and job is not None and job.state in slurm.RESUMABLE_ENDS:
            # Slurm ended it (time limit, preemption, a node) and the run checkpointed: retry.
            reason, message = "signal", f"{where}; stopped with a checkpoint"
        elif status == "crashed":
            reason = "crashed"
        return RunState("ended", step=step, max_steps=max_steps, end_reason=reason, message=message)

    def stop(self, entry: Entry, *, checkpoint: bool = True) -> bool:
        """SIGTERM to the job's batch script (the run checkpoints, the job ends), or scancel."""
        if not entry.backend_job:
            return False
        try:
            done = slurm.cancel(entry.backend_job, checkpoint=checkpoint)
        except slurm.SlurmError:
            return False
        return done != "already ended"
