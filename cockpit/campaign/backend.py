"""What the scheduler needs from whatever runs an entry: start it, poll it, stop it.

A backend keeps no state of its own that matters: everything it needs to find an entry's
process again is in the entry (`run_dir`, `backend_job`), so a scheduler restarted after a
kill -9 builds a fresh backend and polls the entries the queue says are live. The local
backend (cockpit.campaign.local) starts the training child on this machine; a cluster
backend (Slurm) submits a job and keeps its job id in `backend_job`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cockpit.campaign.store import Entry

if TYPE_CHECKING:
    from cockpit.campaign.packing import Machine, Need, Refusal


@dataclass(frozen=True)
class Placement:
    """Where the scheduler puts an entry: its GPUs (none on CPU) and its CPU threads."""

    gpus: tuple[int, ...] = ()  # GPU indices as NVML numbers them (CUDA_VISIBLE_DEVICES)
    threads: int | None = None  # CPU threads for a CPU entry (GPT_COCKPIT_CPU_THREADS)
    planned_bytes: int | None = None  # planned peak per GPU (or RAM on CPU), bytes

    @property
    def device(self) -> str:
        """The words the queue records: "cuda:0", "cuda:2,3" or "cpu"."""
        return "cuda:" + ",".join(str(g) for g in self.gpus) if self.gpus else "cpu"

    @classmethod
    def parse(cls, device: str | None) -> Placement:
        """The placement an entry's planned_device names (for adopting a live entry)."""
        if device and device.startswith("cuda:"):
            return cls(gpus=tuple(int(g) for g in device[5:].split(",") if g.isdigit()))
        return cls()


@dataclass(frozen=True)
class RunState:
    """One poll of an entry's run.

    `state` is "starting" (launched, no step yet), "running", "ended" (its process is gone
    and `end_reason` says how: finished, stopped, halted, error, crashed, killed, oom,
    lost-gpu), or "unknown" (the backend cannot tell now; the scheduler waits).
    """

    state: str
    step: int = 0
    max_steps: int = 0
    end_reason: str = ""
    message: str = ""  # one line on why it ended, for the queue's reason column
    last_progress: float | None = None  # when it last wrote a step (epoch s), for the stall check


class Backend(ABC):
    """Runs queued entries somewhere; the scheduler calls these from one thread."""

    name: str = "?"
    # True for a cluster backend (Slurm) whose own scheduler decides where and when entries
    # run: the queue submits each ready entry with the GPUs it asks for instead of packing it
    # onto this machine, keeps it `starting` while it waits there, and charges it only while
    # its poll says `running`.
    packs_itself: bool = False

    @abstractmethod
    def start(self, entry: Entry, run_dir: Path, placement: Placement, *, resume: bool) -> str:
        """Start `entry` in the prepared `run_dir` (resume: from its last checkpoint); the
        backend's job id (a pid, a Slurm job id). OSError or RuntimeError when it cannot."""

    @abstractmethod
    def poll(self, entry: Entry) -> RunState:
        """The entry's run now, from its run directory and `entry.backend_job`."""

    def look(self, entries: list[Entry]) -> None:
        """Called each tick before `entries` are polled one by one: a backend that can read
        them all in one question (one squeue for every job) asks it here. Default: nothing."""
        return None

    @abstractmethod
    def stop(self, entry: Entry, *, checkpoint: bool = True) -> bool:
        """Ask the run to stop (checkpoint first) or, with checkpoint=False, kill it; False
        when there was nothing to stop."""

    def place(self, need: Need, machine: Machine) -> Placement | Refusal:
        """Where an entry goes on a backend that packs itself (called only when packs_itself)."""
        raise NotImplementedError(f"the {self.name} backend leaves placing to the scheduler")

    def cancel(self, entry: Entry) -> bool:
        """Stop an entry that is being cancelled (default: a stop with a checkpoint)."""
        return self.stop(entry, checkpoint=True)
