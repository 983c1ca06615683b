"""Launch, list and find runs; the run directory itself is cockpit.rundir's.

`launch` starts the training child on a directory that `rundir.create_run_dir`
made; `list_runs`, `summarize_run` and `find_run` read the runs folder through
cockpit.rundir (run.json, events.jsonl, the effective preset). Nothing here
imports torch: the app reaches a run only through its files and signals.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cockpit import rundir
from cockpit.common.diagnostics import error, info
from cockpit.plan.allocator import child_alloc_env
from cockpit.runs import index as run_index


@dataclass
class RunHandle:
    """A launched training child: its directory and, for our own children, the Popen."""

    run_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else rundir.read_run_info(self.run_dir).pid

    def poll(self) -> int | None:
        """Reap our child if it exited (None while it runs or when it is not ours)."""
        return self.process.poll() if self.process else None


@dataclass(frozen=True)
class Ranks:
    """How many training processes: `nproc` on this node, `nnodes` machines (torchrun's terms).

    One process on one node is a plain child (no torchrun). Several machines meet at
    `endpoint` (host:port of node 0, which the others must reach); node 0 (node_rank 0)
    holds rank 0, the one that writes the run directory.
    """

    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    endpoint: str = ""

    @property
    def world_size(self) -> int:
        return self.nproc * self.nnodes

    @property
    def torchrun(self) -> bool:
        return self.world_size > 1

    def problem(self) -> str | None:
        """Why these numbers cannot start a run, or None."""
        if self.nproc < 1 or self.nnodes < 1:
            return "--nproc and --nnodes must be at least 1"
        if not 0 <= self.node_rank < self.nnodes:
            return f"--node-rank must be between 0 and {self.nnodes - 1}"
        if self.nnodes > 1 and not _host_port(self.endpoint):
            return "several nodes need --rdzv-endpoint HOST:PORT (node 0's address, reachable from every node)"
        return None

    def torchrun_args(self, node_rank: int | None = None) -> list[str]:
        """torchrun's options for this node (or for node `node_rank`)."""
        if self.nnodes == 1:
            return ["--standalone", "--nproc-per-node", str(self.nproc)]
        host, port = _host_port(self.endpoint) or ("", "")
        rank = self.node_rank if node_rank is None else node_rank
        return [
            "--nnodes",
            str(self.nnodes),
            "--node-rank",
            str(rank),
            "--nproc-per-node",
            str(self.nproc),
            "--master-addr",
            host,
            "--master-port",
            port,
        ]


def _host_port(endpoint: str) -> tuple[str, str] | None:
    host, _, port = (endpoint or "").rpartition(":")
    return (host, port) if host and port.isdigit() else None


def resolve_nproc(value: str | int | None) -> int:
    """--nproc: a number, or `auto` (every GPU CUDA will see, CUDA_VISIBLE_DEVICES applied; 1
    without one). ValueError otherwise."""
    if value is None or value == "":
        return 1
    if str(value).strip().lower() == "auto":
        from cockpit.plan.gpu import query_gpus

        return max(1, len(query_gpus()))
    n = int(value)
    if n < 1:
        raise ValueError(f"--nproc must be at least 1 or auto, not {value}")
    return n


def child_command(
    run_dir: Path,
    *,
    device: str = "auto",
    resume: bool = False,
    ranks: Ranks | None = None,
    node_rank: int | None = None,
) -> list[str]:
    """The argv that starts the training child for `run_dir` (under torchrun for several ranks)."""
    cmd = [sys.executable, "-m", "cockpit.train", "--run-dir", str(run_dir), "--device", device]
    if resume:
        cmd.append("--resume")
    if ranks is not None and ranks.torchrun:
        # torchrun is `python -m torch.distributed.run`: the same interpreter, found without PATH
        launcher = [sys.executable, "-m", "torch.distributed.run", *ranks.torchrun_args(node_rank)]
        return [*launcher, *cmd[1:]]
    return cmd


def other_node_commands(run_dir: Path, ranks: Ranks, *, device: str, resume: bool) -> list[str]:
    """The exact command to run on each other node (the run directory on a shared path)."""
    import shlex

    out = []
    for node in range(ranks.nnodes):
        if node != ranks.node_rank:
            argv = child_command(run_dir, device=device, resume=resume, ranks=ranks, node_rank=node)
            out.append(f"node {node}: cd {shlex.quote(os.getcwd())} && {shlex.join(argv)}")
    return out


# The signals that ask a run to stop. The child inherits them blocked and unblocks them once
# its handlers are in, so a stop sent in its first moments (before Python has even started)
# waits for it instead of killing it without an `end` record.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _stop_signals_held() -> Iterator[None]:
    """Block the stop signals in this thread while a child is spawned (it inherits the mask)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)  # ours, held meanwhile, arrive now


def launch(
    run_dir: str | os.PathLike[str],
    *,
    device: str = "auto",
    resume: bool = False,
    detach: bool = True,
    env: dict[str, str] | None = None,
    ranks: Ranks | None = None,
) -> RunHandle:
    """Start the training child on a prepared run directory.

    `detach=True` puts the child in its own session with no terminal, so
    closing the app, a dropped SSH connection or SIGHUP do not stop it; its
    output goes to console.log. `detach=False` keeps it in our process group
    (headless mode: Ctrl-C reaches both) and still logs to console.log.

    With `ranks` of more than one process, the command is torchrun's; it always gets a
    session of its own (a terminal's Ctrl-C must not reach torchrun, which would pass it
    on to every rank as a second one): the caller stops it through rank 0 (`stop_run`).
    """
    path = Path(run_dir)
    rundir.read_run_info(path)  # RunError before anything starts if this is no run directory
    ranks = ranks or Ranks()
    if ranks.torchrun:
        cmd = child_command(path, device=device, resume=resume, ranks=ranks)
    else:
        cmd = child_command(path, device=device, resume=resume)
    # expandable segments unless the user set their own allocator settings (docs/estimator.md)
    child_env = child_alloc_env(dict(os.environ))
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    if env:
        child_env.update(env)
    log = open(path / rundir.CONSOLE_LOG, "ab")
    try:
        with _stop_signals_held():  # the child starts with them blocked: none can kill it unhandled
            process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=detach or ranks.torchrun,
                env=child_env,
                cwd=os.getcwd(),
            )
    finally:
        log.close()
    if detach:
        # Reap the child when it exits so a long-lived app leaves no zombie behind; if the
        # app exits first, the child is re-parented and runs on.
        threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()
    started = rundir.process_start_time(process.pid)
    run_index.record(path)  # found again from any directory (`runs`, `attach last`)

    def launched(current: rundir.RunInfo) -> dict[str, object]:
        holder = rundir.lock_holder(path)
        ours = bool(holder and holder != process.pid and _descends_from(holder, process.pid))
        if holder and holder != process.pid and not ours:
            return {}  # another trainer holds the run: this child will be refused, the record is its
        # A fast child may already say running; a resume starts over from starting.
        live = current.status in rundir.LIVE_STATUSES and not resume
        changes: dict[str, object] = {"status": current.status if live else "starting"}
        if resume:
            changes["end_reason"] = None
        if not ours:  # torchrun's rank 0 may already have written its own pid: keep it
            changes.update(pid=process.pid, pid_start_time=started)
        changes.update(
            command=cmd,
            device_requested=device,
            detached=detach,
            world_size=ranks.world_size,
            nnodes=ranks.nnodes,
        )
        return changes

    rundir.update_run_info(path, launched)
    return RunHandle(path, process)


def _descends_from(pid: int, ancestor: int) -> bool:
    """`pid` is a child (or grandchild...) of `ancestor`: torchrun's rank 0 holds the lock."""
    import psutil

    try:
        return any(p.pid == ancestor for p in psutil.Process(pid).parents())
    except (psutil.Error, ValueError):
        return False


def ranks_of_run(run_dir: str | os.PathLike[str]) -> Ranks:
    """The ranks a run was launched with (run.json), for a resume on the same world size.

    A run of several nodes resumes this node's share, as node 0, at the same endpoint.
    """
    info = rundir.read_run_info(run_dir)
    world, nnodes = info.world_size or 1, info.nnodes or 1
    endpoint = ""
    cmd = info.command or []
    if "--master-addr" in cmd and "--master-port" in cmd:
        endpoint = f"{cmd[cmd.index('--master-addr') + 1]}:{cmd[cmd.index('--master-port') + 1]}"
    return Ranks(nproc=max(1, world // max(1, nnodes)), nnodes=nnodes, endpoint=endpoint)


# --------------------------------------------------------------------------- listing


@dataclass
class RunSummary:
    """One line of the runs list."""

    run_dir: Path
    run_id: str
    status: str
    preset_name: str
    step: int
    max_steps: int
    best_val_loss: float | None
    last_loss: float | None
    created: float
    updated: float
    skipped: int = 0  # lines of events.jsonl's tail that were no valid record (left out, counted)
    problem: str = ""  # why a damaged run (status "damaged") could not be read

    @property
    def age_s(self) -> float:
        return max(0.0, time.time() - (self.updated or self.created))


def raise_max_steps(run_dir: str | os.PathLike[str], max_steps: int) -> None:
    """Record `resume --max-steps N` in run.json's overrides; preset.json stays as launched."""
    from cockpit.plan.presets import PresetError, apply_overrides

    preset = rundir.load_run_preset(run_dir)
    current = preset.train.max_steps
    if max_steps < current:
        raise PresetError(
            "train.max_steps",
            f"--max-steps {max_steps} is below the run's {current}; it can only grow",
        )
    if max_steps == current:
        return
    apply_overrides(preset, {"train.max_steps": max_steps})  # refuse before anything is written
    rundir.update_run_info(
        run_dir,
        lambda info: {"overrides": {**(info.overrides or {}), "train.max_steps": max_steps}},
        max_steps=max_steps,
    )


def _max_steps(path: Path, info: rundir.RunInfo) -> int:
    """run.json's max_steps; before the child wrote it (or if it died early) the preset's."""
    if info.max_steps:
        return info.max_steps
    try:
        return rundir.load_run_preset(path).train.max_steps
    except rundir.RunError:
        return 0


def summarize_run(run_dir: str | os.PathLike[str]) -> RunSummary:
    """Status (checked against the process), preset, progress, best val loss of one run."""
    path = Path(run_dir)
    status = rundir.run_status(path)
    info = rundir.read_run_info(path)
    records, skipped = rundir.read_tail(path / rundir.EVENTS_JSONL)
    last = [rundir.parse_event(r) for r in records]
    step = info.step
    last_loss = None
    evals: list[float] = []
    for event in last:
        if event is None:
            continue
        step = max(step, event.step)
        if isinstance(event, rundir.StepEvent):
            last_loss = event.loss
        elif isinstance(event, rundir.EvalEvent) and event.val_loss is not None:
            evals.append(event.val_loss)
    best = info.best_val_loss
    if best is None and evals:
        best = min(evals)
    return RunSummary(
        run_dir=path,
        run_id=info.run_id or path.name,
        status=status,
        preset_name=info.preset_name or "?",
        step=step,
        max_steps=_max_steps(path, info),
        best_val_loss=best,
        last_loss=last_loss,
        created=info.created,
        updated=info.updated,
        skipped=skipped,
    )


def is_run_dir(path: Path) -> bool:
    """A folder that holds a run, even a damaged one: run.json, preset.json or an event log
    (or one closed to this user, which may: reading it then says why it cannot be read)."""
    return run_index.holds_a_run(path)


def unreadable_summary(path: Path, exc: rundir.RunUnreadable) -> RunSummary:
    """The list line of a run this user may not read: status unreadable, its path, and why."""
    try:
        created = path.lstat().st_mtime  # the folder's own entry: readable in a listable parent
    except OSError:
        created = 0.0
    return RunSummary(
        run_dir=path,
        run_id=path.name,
        status="unreadable",
        preset_name="?",
        step=0,
        max_steps=0,
        best_val_loss=None,
        last_loss=None,
        created=created,
        updated=created,
        problem=exc.reason,
    )


def damaged_summary(path: Path, problem: str) -> RunSummary:
    """The list line of a run whose run.json is missing or unreadable: status damaged, and why."""
    try:
        preset = rundir.load_run_preset(path)
        name, max_steps = preset.name, preset.train.max_steps
    except rundir.RunError:
        name, max_steps = "?", 0
    records, skipped = rundir.read_tail(path / rundir.EVENTS_JSONL)
    try:
        created = path.stat().st_mtime
    except OSError:
        created = 0.0
    return RunSummary(
        run_dir=path,
        run_id=path.name,
        status="damaged",
        preset_name=name,
        step=max((r["step"] for r in records), default=0),
        max_steps=max_steps,
        best_val_loss=None,
        last_loss=None,
        created=created,
        updated=created,
        skipped=skipped,
        problem=problem,
    )


def _run_folders(root: str | os.PathLike[str] | None, note: Callable[[str], None]) -> list[Path]:
    """The runs under the runs folder and, when that is the default one, every indexed run."""
    base = rundir.runs_root(root)
    try:
        found = [c for c in base.iterdir() if is_run_dir(c)] if base.is_dir() else []
    except PermissionError:
        note(f"cannot read the runs folder {base}: permission denied")
        found = []
    if base.resolve() == rundir.runs_root().resolve():  # an explicit other folder lists itself only
        seen = {c.resolve() for c in found}
        found += [p for p in run_index.known_runs(note) if p.resolve() not in seen]
    return found


def list_runs(
    root: str | os.PathLike[str] | None = None, *, note: Callable[[str], None] = info
) -> list[RunSummary]:
    """Every run under the runs folder (and in the run index), newest first; one whose run.json
    cannot be read is listed as damaged, with why, and one this user may not read (another
    user's private folder or run.json) as unreadable."""
    out = []
    for child in _run_folders(root, note):
        try:
            out.append(summarize_run(child))
        except rundir.RunUnreadable as exc:
            out.append(unreadable_summary(child, exc))
        except rundir.RunError as exc:
            out.append(damaged_summary(child, str(exc)))
    out.sort(key=lambda s: s.created, reverse=True)
    return out


def find_run(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """A run directory by path, by id, or by a unique id prefix/suffix; 'last' is the newest."""
    candidate = Path(name)
    if is_run_dir(candidate):
        return candidate
    base = rundir.runs_root(root)
    if is_run_dir(base / name):
        return base / name
    runs = list_runs(root)
    readable = [r for r in runs if r.status != "unreadable"]  # another user's is nobody's last
    if name in ("last", "latest") and readable:
        return readable[0].run_dir
    matches = [r.run_dir for r in runs if r.run_id.startswith(name) or r.run_id.endswith(name)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise rundir.RunError(
            f"{name!r} matches {len(matches)} runs: " + ", ".join(m.name for m in matches[:5])
        )
    where = f"under {base}" + (" or in the run index" if root is None else "")
    raise rundir.RunError(f"no run {name!r} {where} (`gpt-cockpit runs` lists them)")


def find_run_or_say(name: str, root: str | os.PathLike[str] | None = None) -> Path | None:
    """find_run for a command: the run, or None after printing why not (one line)."""
    try:
        return find_run(name, root)
    except rundir.RunError as exc:
        error(str(exc))
        return None
