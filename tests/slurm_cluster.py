"""A real single-node Slurm cluster for the tests, started by hand in a temporary folder.

munged, slurmctld and slurmd run in the foreground as children of the test process, with
every piece of state (keys, sockets, pids, spool, logs) under one folder; the cluster is
found by SLURM_CONF alone. Jobs run as the user who submits them, so slurmd needs root.
Two fake GPUs (character devices 195:0 and 195:1, the NVIDIA major) make `--gres=gpu:N`
work: a job asking for one gets CUDA_VISIBLE_DEVICES from Slurm.

`start_cluster` returns once the node is idle; `SlurmCluster.stop` cancels every job,
waits for them to end (a running slurmstepd ignores SIGTERM, so slurmd must outlive
its jobs), then stops the daemons by the PIDs it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_HINT = (
    "Slurm is not installed: `apt-get install -y slurm-wlm munge` (as root) runs these tests"
)
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")

# What the test node offers. config_overrides makes slurmd take these as the node's size,
# whatever the machine has, so the same jobs fit (and the same ones are refused) everywhere.
NODE_CPUS = 6  # room for the requeue test's runs at once: a two-rank job and three of one CPU
NODE_MEMORY_MB = 8000
DEF_MEM_PER_CPU_MB = 1000  # without it a job takes the whole node's memory: one job at a time
NODE_GPUS = 2
PARTITION = "debug"
CRED_EXPIRE_S = 5  # a requeued job waits this long (+1 s) before it may start again
READY_TIMEOUT_S = 30.0


def skip_reason() -> str | None:
    """Why the test cluster cannot run here (one line), or None."""
    missing = [p for p in (*DAEMONS, *CLIENTS) if shutil.which(p) is None]
    if missing:
        return f"{INSTALL_HINT} ({', '.join(missing)} not found)"
    if os.geteuid() != 0:
        return "the test Slurm cluster needs root: slurmd runs each job as the user who submits it"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fake_gpus(dev: Path) -> list[Path]:
    """Two character devices with the NVIDIA major for gres.conf; none where mknod is not allowed."""
    dev.mkdir()
    made = []
    for minor in range(NODE_GPUS):
        path = dev / f"nvidia{minor}"
        try:
            os.mknod(path, 0o600 | 0o020000, os.makedev(195, minor))  # S_IFCHR
        except OSError:
            return []
        made.append(path)
    return made


@dataclass
class SlurmCluster:
    """One running test cluster: its folder, its node, and the processes it started."""

    root: Path
    node: str
    gpus: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    partition = PARTITION
    cpus = NODE_CPUS
    memory_mb = NODE_MEMORY_MB

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """The environment of a Slurm client talking to this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A Slurm client command against this cluster (its output as text)."""
        return subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=30, check=check
        )

    def log_tail(self, lines: int = 15) -> str:
        """The end of each daemon's log, for a failure message."""
        out = []
        for path in sorted((self.root / "log").glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)

    def node_state(self) -> str:
        probe = self.run("sinfo", "-h", "-n", self.node, "-o", "%T", check=False)
        return probe.stdout.strip() if probe.returncode == 0 else ""

    def job_ids(self) -> list[str]:
        probe = self.run("squeue", "-h", "-o", "%i", check=False)
        return probe.stdout.split() if probe.returncode == 0 else []

    def cancel_all(self, timeout: float = 60.0) -> None:
        """Cancel every job and wait until none is left running or completing."""
        ids = self.job_ids()
        if ids:
            self.run("scancel", *ids, check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = self.run("squeue", "-h", "-t", "R,CG,S", "-o", "%i", check=False)
            if probe.returncode != 0 or not probe.stdout.strip():
                return
            time.sleep(0.2)

    def stop(self) -> None:
        """Cancel all jobs, then stop slurmd, slurmctld and munged (by the PIDs started here)."""
        if self.processes.get("slurmctld") and self.processes["slurmctld"].poll() is None:
            self.cancel_all()
        for name in reversed(DAEMONS):  # slurmd first: munged must outlive the others
            proc = self.processes.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def _slurm_conf(root: Path, node: str, gpus: int) -> str:
    ports = (_free_port(), _free_port())
    gres = f" Gres=gpu:{gpus}" if gpus else ""
    lines = [
        f"ClusterName=cockpit{os.getpid()}",
        f"SlurmctldHost={node}(127.0.0.1)",
        "SlurmUser=root",
        f"SlurmctldPort={ports[0]}",
        f"SlurmdPort={ports[1]}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root / 'munge' / 'munge.socket'},cred_expire={CRED_EXPIRE_S}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
        "ProctrackType=proctrack/pgid",  # with linuxproc, background children outlive their job
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU_Memory",
        f"DefMemPerCPU={DEF_MEM_PER_CPU_MB}",
        # No 3 s wait before each job; the main scheduler every second so a requeued job
        # starts as soon as it is eligible again (60 s by default).
        "SchedulerParameters=batch_sched_delay=0,sched_interval=1",
        "EnforcePartLimits=ALL",  # an impossible request is refused at sbatch, not left pending
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "ReturnToService=2",
        "SlurmdParameters=config_overrides",
        "KillWait=5",
        "GresTypes=gpu",
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory={NODE_MEMORY_MB}{gres}"
        " State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP",
    ]
    return "\n".join(lines) + "\n"


def start_cluster(root: Path) -> SlurmCluster:
    """Start munged, slurmctld and slurmd in `root` and return once the node is idle.

    RuntimeError (with the daemons' logs) if it does not come up; what was started is stopped.
    """
    node = socket.gethostname().split(".")[0]
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir(parents=True)
    munge = root / "munge"
    munge.mkdir(mode=0o711)  # clients must reach the socket; munged refuses a writable folder
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    devices = _fake_gpus(root / "dev")
    (root / "slurm.conf").write_text(_slurm_conf(root, node, len(devices)))
    gres = f"NodeName={node} Name=gpu File={root / 'dev'}/nvidia[0-{len(devices) - 1}]\n"
    (root / "gres.conf").write_text(gres if devices else "")
    cluster = SlurmCluster(root=root, node=node, gpus=len(devices))
    commands = {
        "munged": [
            "munged",
            "--foreground",
            "--force",
            f"--socket={munge / 'munge.socket'}",
            f"--key-file={key}",
            f"--pid-file={munge / 'munged.pid'}",
            f"--log-file={root / 'log' / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        ],
        "slurmctld": ["slurmctld", "-D", "-i"],
        "slurmd": ["slurmd", "-D"],
    }
    try:
        for name, argv in commands.items():
            out = open(root / "log" / f"{name}.out", "wb")
            with out:
                cluster.processes[name] = subprocess.Popen(
                    argv, env=cluster.env, stdout=out, stderr=subprocess.STDOUT, cwd=root
                )
            if name == "munged":
                _wait_for(lambda: (munge / "munge.socket").exists(), cluster, "munged's socket")
        _wait_for(lambda: cluster.node_state() == "idle", cluster, f"node {node} idle")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_for(ready, cluster: SlurmCluster, what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            if ready():
                return
        dead = [n for n, p in cluster.processes.items() if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited; logs:\n{cluster.log_tail()}")
        time.sleep(0.05)
    raise RuntimeError(f"no {what} after {READY_TIMEOUT_S:.0f} s; logs:\n{cluster.log_tail()}")
