"""The scheduler: one per machine (a lock), the only code that starts queued runs on its own.

Each tick it (1) polls every live entry through the backend and settles the ended ones (done,
failed, retried from their checkpoint, stopped), (2) charges GPU time and checks the budget,
the deadline, stalls, pruning and the faces' requests, and (3) launches the next queued entries
that fit beside what runs (cockpit.campaign.packing) and can finish inside the limits. It
records a claim in the queue before it starts anything and links the run directory before
the child starts, so a scheduler killed at any moment and started again finds every entry:
live runs are adopted (their process is checked, never started twice), a claim that never
launched goes back to the queue.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cockpit import rundir
from cockpit.campaign import planning
from cockpit.campaign.backend import Backend, Placement, RunState
from cockpit.campaign.forecast import remaining_seconds
from cockpit.campaign.hooks import (
    GroupRun,
    NoPruning,
    Notice,
    Notifier,
    NullNotifier,
    PruningPolicy,
)
from cockpit.campaign.locations import scheduler_lock_path
from cockpit.campaign.lock import SchedulerLock
from cockpit.campaign.money import Limits, fmt_dollars
from cockpit.campaign.packing import Ledger, Machine, Need, Refusal, place
from cockpit.campaign.progress import has_checkpoint, read_progress
from cockpit.campaign.store import LIVE_STATES, Entry, Queue, QueueError
from cockpit.common.format import counted, human_duration
from cockpit.plan.gpu import GpuSpec
from cockpit.plan.presets import PresetError
from cockpit.runs.prelaunch import model_file_problem

MAX_RETRIES = 2  # a run killed by a signal, the OOM killer or a lost GPU is retried this often
TICK_S = 2.0  # seconds between ticks
STOP_GRACE_S = 180.0  # a run asked to stop that still lives after this is killed (SIGKILL)
RETRYABLE = ("oom-or-kill", "signal", "crashed", "killed", "lost-gpu")


@dataclass
class _Watch:
    """What the scheduler keeps per live entry between ticks (rebuilt after a restart)."""

    placement: Placement
    ram_bytes: int = 0
    share: float = 1.0  # the compute it keeps busy on its GPUs (adopted: all of it)
    stop_sent: float | None = None  # when we asked it to stop
    killed: bool = False
    watcher: rundir.RunWatcher | None = None
    polled: str = ""  # the last poll's state
    was_running: bool = False  # the poll before it said running: a cluster's job is charged then


@dataclass
class Scheduler:
    """Runs the queue until it is empty, stopped, or out of budget or time."""

    queue: Queue
    backend: Backend
    limits: Limits = field(default_factory=Limits)
    notifiers: list[Notifier] = field(default_factory=lambda: [NullNotifier()])
    pruning: PruningPolicy = field(default_factory=NoPruning)
    machine: Callable[[dict[int, int], int], tuple[Machine, dict[int, GpuSpec]]] = (
        planning.local_machine
    )
    check_launch: bool = True  # ask runs.prelaunch.launch_problem before each start
    tick_s: float = TICK_S
    clock: Callable[[], float] = time.time
    say: Callable[[str], None] = print

    def __post_init__(self) -> None:
        self._watch: dict[int, _Watch] = {}
        self._needs: dict[tuple[int, str], Need] = {}
        self._last_charge = self.clock()
        self._spent_at_start = self._gpu_seconds_total()
        self._outside: set[int] = set()  # queued entries the last launch left for the limits
        self._halt: str = ""  # "budget" | "deadline" | "stop" | "now": no more launches
        self._lock: SchedulerLock | None = None

    # ------------------------------------------------------------------ the loop

    def acquire(self) -> None:
        """Take the machine's scheduler lock (SchedulerBusy when another holds it)."""
        self._lock = SchedulerLock(scheduler_lock_path(self.queue.path))
        gone = self.queue.get_meta("scheduler") or {}  # a killed scheduler's record, if any
        if gone.get("heartbeat") and self.queue.entries(states=LIVE_STATES):
            # its runs trained on meanwhile: charge them from its last tick, not from now
            self._last_charge = min(self._last_charge, float(gone["heartbeat"]))
        self.queue.set_meta(
            "scheduler",
            {
                "pid": os.getpid(),
                "host": platform.node(),
                "started": self.clock(),
                "heartbeat": self.clock(),
                "budget": self.limits.budget,
                "until": self.limits.until,
                "price_per_gpu_hour": self.limits.price_per_gpu_hour,
            },
        )
        stop = self.queue.get_meta("stop")
        if stop:  # a stop asked of a scheduler that is gone: this new one starts afresh
            self.queue.set_meta("stop", None)

    def release(self) -> None:
        """Forget the scheduler record and let the lock go."""
        try:
            self.queue.set_meta("scheduler", None)
            self.queue.set_meta("stop", None)
        finally:
            if self._lock:
                self._lock.release()

    def run(self, *, sleep: Callable[[float], None] = time.sleep) -> int:
        """Tick until nothing is left to do; 0 when the queue emptied or was stopped."""
        self.acquire()
        try:
            while self.tick():
                sleep(self.tick_s)
        finally:
            self.release()
        return 0

    def tick(self) -> bool:
        """One round; False when the scheduler has nothing left to do."""
        record = self.queue.get_meta("scheduler") or {}
        if record:
            self.queue.set_meta("scheduler", {**record, "heartbeat": self.clock()})
        self._settle()
        self._charge()
        self._check_limits()
        self._check_requests()
        self._check_stalls()
        self._prune()
        paused = self.queue.paused()
        launched = 0 if self._halt or paused else self._launch()
        live = self.queue.entries(states=LIVE_STATES)
        if live or launched or (paused and not self._halt):
            return True  # a paused queue waits to be resumed
        if not self._halt:
            queued = [
                e for e in self.queue.entries(states=["queued"]) if not self._blocked_forever(e)
            ]
            if any(e.id not in self._outside for e in queued):
                return True  # waits for memory other processes hold, or a launch to come
            if queued:
                kind = "deadline" if any("--until" in e.reason for e in queued) else "budget"
                self._notify(
                    kind, f"nothing more can finish inside the limits; {len(queued)} left queued"
                )
            else:
                self._notify("queue-empty", "the queue is empty: every entry has ended")
        return False

    # ------------------------------------------------------------------ settling live entries

    def _settle(self) -> None:
        """Poll every live entry; adopt what a previous scheduler started; settle what ended."""
        live = self.queue.entries(states=LIVE_STATES)
        self.backend.look(live)
        for entry in live:
            watch = self._watch.get(entry.id)
            if watch is None:
                watch = self._adopt(entry)
                if watch is None:
                    continue
            state = self.backend.poll(entry)
            watch.was_running, watch.polled = watch.polled == "running", state.state
            if state.state in ("starting", "running", "unknown"):
                if entry.state == "starting" and entry.backend_job and state.state == "running":
                    self.queue.mark_running(entry.id)
                continue
            self._ended(entry, state)

    def _adopt(self, entry: Entry) -> _Watch | None:
        """A live entry this scheduler did not start: keep it if its run lives, else settle it."""
        if not entry.run_dir or not entry.backend_job:
            # Claimed, but the launch was never recorded: did a child start at all?
            if entry.run_dir and _launched(Path(entry.run_dir)):
                self.queue.mark_running(entry.id, backend_job="?")
            else:
                self.queue.requeue(
                    entry.id, "the scheduler stopped before it launched", retry=False
                )
                self.queue.log("requeued", f"#{entry.id} was claimed but never launched", entry.id)
                return None
        watch = _Watch(Placement.parse(entry.planned_device), ram_bytes=0)
        watch.placement = Placement(
            gpus=watch.placement.gpus, threads=entry.threads, planned_bytes=entry.planned_bytes
        )
        if not watch.placement.gpus:
            watch.ram_bytes = entry.planned_bytes or 0
        self._watch[entry.id] = watch
        state = self.backend.poll(entry)
        if state.state in ("starting", "running"):
            self._notify("adopted", f"#{entry.id} {entry.label} is still training: adopted", entry)
        return watch

    def _ended(self, entry: Entry, state: RunState) -> None:
        """Settle one ended run: done, failed, stopped, cancelled, or back in the queue."""
        self._watch.pop(entry.id, None)
        reason, message = state.end_reason, state.message
        label = f"#{entry.id} {entry.label}"
        if entry.request == "cancel":
            self.queue.finish(entry.id, "cancelled", "removed while it ran (checkpoint kept)")
            self._notify("cancelled", f"{label} cancelled", entry)
            return
        if reason == "finished":
            self.queue.finish(entry.id, "done", "finished")
            best = read_progress(entry.run_dir).best_val_loss if entry.run_dir else None
            val = f" val {best:.4f}" if best is not None else ""
            self._notify(
                "done", f"{label} done:{val} after {human_duration(entry.elapsed_s())}", entry
            )
            return
        if entry.request in ("stop", "prune"):
            why = entry.reason or "stopped"
            self.queue.finish(entry.id, "stopped", why)
            kind = "pruned" if entry.request == "prune" else "stopped"
            self._notify(kind, f"{label} {kind}: {why}", entry)
            return
        if reason == "stopped":
            self.queue.finish(entry.id, "stopped", "stopped outside the queue (a checkpoint kept)")
            self._notify("stopped", f"{label} stopped outside the queue", entry)
            return
        if reason == "halted":
            why = f"halted by a health rule: {message}" if message else "halted by a health rule"
            self.queue.finish(entry.id, "failed", why)
            self._notify("halted", f"{label} {why}", entry)
            return
        resumable = bool(entry.run_dir) and has_checkpoint(entry.run_dir or "")
        step = max(state.step, read_progress(entry.run_dir).step if entry.run_dir else 0)
        if reason in RETRYABLE and (step > 0 or resumable):
            retries = len(entry.retries)
            why = message or reason
            if retries < MAX_RETRIES:
                self.queue.requeue(entry.id, why)
                self._notify(
                    "retried",
                    f"{label} {why}; retry {retries + 1} of {MAX_RETRIES}"
                    + (" from its last checkpoint" if resumable else " from the start"),
                    entry,
                )
                return
            why = f"{why} (after {MAX_RETRIES} retries)"
        elif reason in RETRYABLE:
            why = f"crashed at step 0: {message or reason} (not retried: it would again)"
        else:
            why = message or reason or "failed"
        self.queue.finish(entry.id, "failed", why)
        self._notify("failed", f"{label} failed: {why}", entry)

    def _blocked_forever(self, entry: Entry) -> bool:
        """A queued entry that waits for one that ended without being done."""
        if entry.after is None:
            return False
        try:
            other = self.queue.get(entry.after)
        except QueueError:
            return True
        return other.state in ("failed", "stopped", "cancelled")

    # ------------------------------------------------------------------ money, time, requests

    def _gpu_seconds_total(self) -> float:
        return sum(e.gpu_seconds for e in self.queue.entries())

    def spent_gpu_seconds(self) -> float:
        """GPU-seconds charged since this scheduler started."""
        return self._gpu_seconds_total() - self._spent_at_start

    def _charge(self) -> None:
        """Charge each live GPU entry its share of the GPU time since the last tick."""
        now = self.clock()
        elapsed = max(0.0, now - self._last_charge)
        self._last_charge = now
        per_gpu: dict[int, list[int]] = {}
        if self.backend.packs_itself:  # each job has GPUs of its own, charged once it runs
            own = {
                entry_id: elapsed * len(w.placement.gpus)
                for entry_id, w in self._watch.items()
                if w.was_running and w.placement.gpus
            }
            if own and elapsed:
                self.queue.charge(own)
            return
        for entry_id, watch in self._watch.items():
            for g in watch.placement.gpus:
                per_gpu.setdefault(g, []).append(entry_id)
        charges: dict[int, float] = {}
        for ids in per_gpu.values():
            for entry_id in ids:
                charges[entry_id] = charges.get(entry_id, 0.0) + elapsed / len(ids)
        if charges and elapsed:
            self.queue.charge(charges)

    def _check_limits(self) -> None:
        """The budget or the deadline reached: stop launching, stop live runs with a checkpoint."""
        if self._halt in ("budget", "deadline"):
            return
        now = self.clock()
        spent = self.limits.dollars(self.spent_gpu_seconds())
        if self.limits.budget is not None and spent is not None and spent >= self.limits.budget:
            self._halt = "budget"
            why = f"budget reached: {fmt_dollars(spent)} of {fmt_dollars(self.limits.budget)}"
            self._stop_all(why)
            self._notify("budget", why)
        elif self.limits.until is not None and now >= self.limits.until:
            self._halt = "deadline"
            why = f"deadline reached ({time.strftime('%H:%M', time.localtime(self.limits.until))})"
            self._stop_all(why)
            self._notify("deadline", why)

    def _stop_all(self, why: str) -> None:
        for entry in self.queue.entries(states=LIVE_STATES):
            self._stop(entry, why)

    def _stop(self, entry: Entry, why: str, request: str = "stop") -> None:
        """Ask a live entry to stop with a checkpoint, recording why (once)."""
        watch = self._watch.get(entry.id)
        if watch is not None and watch.stop_sent is not None:
            return
        if entry.request != "cancel":
            self.queue.request(entry.id, request, reason=why)
        self.backend.stop(entry, checkpoint=True)
        if watch is not None:
            watch.stop_sent = self.clock()

    def _check_requests(self) -> None:
        """`queue stop`, `queue rm` of live entries, and overdue stops (killed after a grace)."""
        stop = self.queue.get_meta("stop")
        if stop and self._halt not in ("budget", "deadline"):
            self._halt = "now" if stop == "now" else "stop"
            if stop == "now":
                self._stop_all("queue stop --now")
        for entry in self.queue.entries(states=LIVE_STATES):
            watch = self._watch.get(entry.id)
            if watch is None:
                continue
            if entry.request and watch.stop_sent is None:
                self.backend.stop(entry, checkpoint=True)
                watch.stop_sent = self.clock()
            elif watch.stop_sent and not watch.killed:
                if self.clock() - watch.stop_sent > STOP_GRACE_S:
                    self.backend.stop(entry, checkpoint=False)
                    watch.killed = True

    def _check_stalls(self) -> None:
        """A run with no event for its stall limit is stopped (and killed if it stays silent)."""
        for entry in self.queue.entries(states=["running"]):
            watch = self._watch.get(entry.id)
            if watch is None or not entry.run_dir or watch.stop_sent is not None:
                continue
            if watch.watcher is None:
                from cockpit.health import HealthMonitor

                try:
                    preset = rundir.load_run_preset(entry.run_dir)
                    health = HealthMonitor(preset)
                except (rundir.RunError, PresetError, OSError):
                    health = HealthMonitor()
                watch.watcher = rundir.RunWatcher(entry.run_dir, clock=self.clock, health=health)
            watch.watcher.poll()
            warning = watch.watcher.check_stalled()
            if warning is not None:
                self._stop(entry, f"stalled: {warning.message}")
                self._notify(
                    "stopped", f"#{entry.id} {entry.label} stalled: {warning.message}", entry
                )

    def _prune(self) -> None:
        """Ask the pruning policy about each sweep group with a running entry."""
        running = self.queue.entries(states=["running"])
        for group in sorted({e.group for e in running if e.group}):
            members = [e for e in self.queue.entries(group=group) if e.run_dir]
            runs = []
            for e in members:
                p = read_progress(e.run_dir or "")
                runs.append(GroupRun(e, p.step, p.max_steps, p.tokens_per_step, p.evals))
            try:
                verdicts = self.pruning.prune(group, runs)
            except Exception as exc:  # a policy's bug must not stop the night
                self.queue.log("error", f"pruning policy failed on {group}: {exc}")
                continue
            for entry_id, why in verdicts.items():
                entry = next((e for e in running if e.id == entry_id), None)
                if entry is not None:
                    self._stop(entry, why, request="prune")

    # ------------------------------------------------------------------ launching

    def _ledger(self) -> tuple[Ledger, dict[int, int], int]:
        ledger, ram = Ledger(), 0
        ours: dict[int, int] = {}  # planned bytes per GPU of this queue's live runs
        for entry_id, watch in self._watch.items():
            ledger.take(entry_id, watch.placement, watch.ram_bytes, share=watch.share)
            for g in watch.placement.gpus:
                ours[g] = ours.get(g, 0) + (watch.placement.planned_bytes or 0)
            ram += watch.ram_bytes
        return ledger, ours, ram

    def _need(self, entry: Entry, machine: Machine, specs: dict[int, GpuSpec]) -> Need:
        key = (entry.id, ",".join(f"{g.index}:{g.name}" for g in machine.gpus))
        if key not in self._needs:
            self._needs[key] = planning.need_for(
                entry, machine, specs, check_launch=self.check_launch
            )
        return self._needs[key]

    def _launch(self) -> int:
        """Start every queued entry that fits now and can finish inside the limits."""
        queued = self.queue.entries(states=["queued"])
        if not queued:
            return 0
        ledger, ours, ram = self._ledger()
        machine, specs = self.machine(ours, ram)
        launched = 0
        self._outside = set()
        needs = {e.id: self._need(e, machine, specs) for e in queued}
        frees_in = self._frees_in()
        cpu_waiting = sum(1 for n in needs.values() if not n.on_gpu(machine))
        for entry in queued:
            need = needs[entry.id]
            wait = self._waits_for(entry)
            if wait:
                self._say_why(entry, need.likely(machine), wait)
                continue
            if self.backend.packs_itself:
                got = self.backend.place(need, machine)
            else:
                got = place(need, machine, ledger, waiting_cpu=cpu_waiting, frees_in=frees_in)
            if isinstance(got, Refusal):
                if got.never:
                    self.queue.finish_unstarted(entry.id, f"never starts here: {got.reason}")
                    self._notify(
                        "failed", f"#{entry.id} {entry.label} never starts: {got.reason}", entry
                    )
                else:  # GPUs of several kinds: the plan on the card it can run fastest on
                    self._say_why(entry, need.likely(machine), got.reason)
                continue
            need = need.placed_on(got.gpus)  # GPUs of several kinds: its plan on the ones it got
            late = self._outside_limits(need, got)
            if late:
                self._outside.add(entry.id)
                self._say_why(entry, need, late)
                continue
            if not need.on_gpu(machine):
                cpu_waiting -= 1
            if self._start(entry, need, got):
                ledger.take(entry.id, got, need.ram_bytes, share=need.share)
                launched += 1
        return launched

    def _frees_in(self) -> dict[int, float]:
        """Seconds until each GPU's live runs have all ended, at their measured or planned pace
        (a GPU with a run of unknown pace is left out: nothing waits for it)."""
        out: dict[int, float] = {}
        unknown: set[int] = set()
        for entry in self.queue.entries(states=LIVE_STATES):
            watch = self._watch.get(entry.id)
            if watch is None:
                continue
            left = remaining_seconds(entry, self.clock())
            for g in watch.placement.gpus:
                if left is None:
                    unknown.add(g)
                else:
                    out[g] = max(out.get(g, 0.0), left)
        return {g: s for g, s in out.items() if g not in unknown}

    def _waits_for(self, entry: Entry) -> str:
        if entry.after is None:
            return ""
        try:
            other = self.queue.get(entry.after)
        except QueueError:
            return f"waits for #{entry.after}, which was removed"
        if other.state == "done":
            return ""
        return f"waits for #{other.id} ({other.state})"

    def _outside_limits(self, need: Need, placement: Placement) -> str:
        """Why starting now would not finish inside the budget or before the deadline ("": it would)."""
        seconds = need.seconds
        if seconds is None:
            return ""
        now = self.clock()
        if self.limits.until is not None and now + seconds > self.limits.until:
            left = human_duration(max(0.0, self.limits.until - now))
            return f"would not finish before --until: needs ~{human_duration(seconds)}, {left} left"
        if self.limits.budget is not None and placement.gpus:
            spent = self.limits.dollars(self.spent_gpu_seconds()) or 0.0
            committed = self._committed_dollars()
            cost = self.limits.dollars(seconds * len(placement.gpus)) or 0.0
            if spent + committed + cost > self.limits.budget:
                return (
                    f"would not finish inside the budget: ~{fmt_dollars(cost)} more, "
                    f"{fmt_dollars(spent)} spent and {fmt_dollars(committed)} committed of "
                    f"{fmt_dollars(self.limits.budget)}"
                )
        return ""

    def _committed_dollars(self) -> float:
        """What the live runs will still cost to finish, at their planned or measured pace."""
        total = 0.0
        for entry in self.queue.entries(states=LIVE_STATES):
            left = remaining_seconds(entry, self.clock())
            if left:
                total += self.limits.dollars(left * entry.device_count) or 0.0
        return total

    def _say_why(self, entry: Entry, need: Need, why: str) -> None:
        if entry.reason != why or entry.planned_bytes != (need.gpu_bytes or need.ram_bytes):
            self.queue.set_plan(
                entry.id,
                planned_bytes=need.gpu_bytes or need.ram_bytes or None,
                planned_device=entry.planned_device,
                planned_seconds=need.seconds,
                reason=why,
            )

    def _start(self, entry: Entry, need: Need, placement: Placement) -> bool:
        """Claim, make (or reuse) the run directory, launch; False when it could not start."""
        claimed = self.queue.claim(
            entry.id,
            backend=self.backend.name,
            planned_device=placement.device,
            planned_bytes=placement.planned_bytes,
            threads=placement.threads,
            planned_seconds=need.seconds,
        )
        if claimed is None:
            return False  # cancelled meanwhile
        try:
            run_dir, resume = self._run_dir(claimed)
            self.queue.set_run_dir(claimed.id, str(run_dir))
            job = self.backend.start(claimed, run_dir, placement, resume=resume)
        except (OSError, RuntimeError, PresetError, ValueError) as exc:
            why = f"could not start: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            self.queue.finish(claimed.id, "failed", why)
            self._notify("failed", f"#{claimed.id} {claimed.label} {why}", claimed)
            return False
        if self.backend.packs_itself:  # it waits in the cluster's queue until its job runs
            self.queue.record_job(claimed.id, run_dir=str(run_dir), backend_job=job)
        else:
            self.queue.mark_running(claimed.id, run_dir=str(run_dir), backend_job=job)
        self._watch[claimed.id] = _Watch(placement, ram_bytes=need.ram_bytes, share=need.share)
        where = placement.device + (f", {placement.threads} threads" if placement.threads else "")
        if self.backend.packs_itself:  # where it runs is the cluster's to say (the list shows it)
            asked = counted(len(placement.gpus), "GPU") if placement.gpus else "CPU"
            where = f"{self.backend.name} job {job} ({asked})"
        again = f" (attempt {claimed.attempts}, resuming)" if resume else ""
        self._notify("started", f"#{claimed.id} {claimed.label} started on {where}{again}", claimed)
        return True

    def _run_dir(self, entry: Entry) -> tuple[Path, bool]:
        """The entry's run directory and whether to resume: its own one when it has one."""
        if entry.run_dir and Path(entry.run_dir).is_dir():
            path = Path(entry.run_dir)
            resume = has_checkpoint(path)
            changed = model_file_problem(path) if resume else None
            if changed:  # your own model's file was edited: its checkpoint is of another model
                raise RuntimeError(changed.line)
            return path, resume
        preset = planning.entry_preset(entry)
        root = entry.runs_root or None
        return rundir.create_run_dir(preset, root=root), False

    # ------------------------------------------------------------------ telling

    def _notify(self, kind: str, message: str, entry: Entry | None = None) -> None:
        """Log the notice (the app's line), say it, pass it to every notifier (whose failure is
        logged, never raised)."""
        self.queue.log(kind, message, entry.id if entry else None)
        self.say(f"{time.strftime('%H:%M:%S', time.localtime(self.clock()))} {message}")
        notice = Notice(kind, message, entry, self.clock())
        for notifier in self.notifiers:
            try:
                notifier.notify(notice)
            except Exception as exc:  # a notification that cannot be sent never stops the queue
                self.queue.log("error", f"notification failed: {exc}")


def _launched(run_dir: Path) -> bool:
    """A child was started in `run_dir`: run.json has a pid, or the run has written events."""
    try:
        info = rundir.read_run_info(run_dir)
    except rundir.RunError:
        return False
    return info.pid is not None or (run_dir / rundir.EVENTS_JSONL).exists()
