"""Following a run in headless mode: its events as lines (step and eval lines on stdout,
everything else on stderr), its liveness, and the signals that stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from cockpit import rundir
from cockpit.common import diagnostics
from cockpit.common.diagnostics import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    error,
)
from cockpit.common.format import (
    format_eval_line,
    format_step_line,
    progress_line,
)
from cockpit.health import HealthMonitor
from cockpit.rundir import (
    EndEvent,
    EvalEvent,
    Event,
    RunWatcher,
    SampleEvent,
    StartEvent,
    StepEvent,
    WarningEvent,
    parse_event,
)
from cockpit.rundir.lines import event_line
from cockpit.runs.history import QUIET_PHASES, RunHistory

POLL_S = 0.1  # ~10 Hz: fast enough to feel live, cheap on the file system
EXIT_WAIT_S = 10.0  # after `end`, how long the child may take to exit before we stop waiting
CONSOLE_TAIL_LINES = 15
PROGRESS_EVERY_S = 30.0  # a progress line (elapsed, ETA, tokens/s) on stderr this often


def console_tail(run_dir: Path, lines: int = CONSOLE_TAIL_LINES) -> list[str]:
    """The last lines of the child's console.log (empty when there is none)."""
    try:
        with open(run_dir / rundir.CONSOLE_LOG, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16384))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


class Follower:
    """Follows a run's events.jsonl and prints them until the run is over; returns an exit code.

    With `process` (our own child) the run is over when it exits; without one (attach)
    when run.json, checked against the pid each second, says it is no longer live.
    The RunWatcher does the tailing, the status checks and the stall detection.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        process: subprocess.Popen[bytes] | None = None,
        offset: int = 0,
        out: IO[str] | None = None,
        err: IO[str] | None = None,
        poll_s: float = POLL_S,
        health: HealthMonitor | None = None,
        clock: Callable[[], float] = time.time,
        progress_every_s: float = PROGRESS_EVERY_S,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.process = process
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.poll_s = poll_s
        self.clock = clock
        self.watcher = RunWatcher(self.run_dir, offset=offset, health=health, clock=clock)
        self.tailer = self.watcher.tailer
        self.max_steps, self.log_interval = self._preset_numbers()
        # What the run is doing (no stall note during an eval) and its ETA, as the app reckons them.
        self.history = RunHistory(max_points=64, max_steps=self.max_steps)
        self.history.eval_interval = self._eval_interval
        self.progress_every_s = progress_every_s
        self.next_progress: float | None = None  # clock time of the next progress line
        self.last_end: EndEvent | None = None  # the latest `end`, cleared by a new `start`
        self.first_step_pending = True  # print the first step after each start, whatever its number
        self.started_at: float | None = None
        self.stop_requests = 0
        self.killed = False
        self.kill_requested = False  # a second Ctrl-C: kill, unless the log holds the run's end
        self.stdout_closed = False
        self.seen_start = False  # this launch's `start` has arrived (the child handles signals)
        self.forward_pending = False  # a stop asked for before that, to pass on once it has
        self.unprinted_step: dict[str, Any] | None = None  # the latest step record not printed yet
        self.ranks = False  # `process` is torchrun: stop through rank 0, kill its whole group

    def _preset_numbers(self) -> tuple[int | None, int]:
        self._eval_interval = 0
        try:
            preset = rundir.load_run_preset(self.run_dir)
        except rundir.RunError:
            return None, 1
        self._eval_interval = preset.train.eval_interval
        return preset.train.max_steps, preset.train.log_interval

    # ------------------------------------------------------------------ printing

    def _data(self, line: str, flush: bool = False) -> None:
        """One line on stdout; a closed pipe (`| head`) stops the run we own, or ends an attach."""
        if self.stdout_closed:
            return
        try:
            if line:
                print(line, file=self.out)
            if flush:
                self.out.flush()
        except OSError:  # a closed pipe, or a hung-up terminal (EIO)
            self.stdout_closed = True
            if self.out is sys.stdout:  # so the interpreter's final flush does not fail again
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            if self.process is not None:
                self._diag("stdout was closed: stopping the run with a checkpoint")
                self.signal_child(signal.SIGTERM)

    def _diag(self, text: str) -> None:
        try:
            print(f"gpt-cockpit: {text}", file=self.err, flush=True)
        except OSError:
            pass  # a hung-up terminal (EIO): the run's own files still say everything

    def handle(self, record: dict[str, Any]) -> None:
        """Print one record: step/eval lines on stdout, the rest on stderr."""
        self.history.add(record)
        event = parse_event(record)
        if isinstance(event, StepEvent):
            self._on_step(event, record)
        elif isinstance(event, EvalEvent):
            self._data(format_eval_line(record, self.max_steps))
        elif event is not None:
            self.show(event)

    def show(self, event: Event) -> None:
        """A start, sample, checkpoint, warning, error or end on stderr (the app's log says the same)."""
        if isinstance(event, StartEvent):
            self._on_start(event)
        elif isinstance(event, EndEvent):
            self.print_last_step()
            self.last_end = event
        line = event_line(event, self.max_steps, self.started_at)
        if isinstance(event, SampleEvent):
            body = "\n".join(
                "gpt-cockpit:   " + text for text in event.text.rstrip().splitlines()[:20]
            )
            line += f":\n{body}"
        self._diag(line)
        if isinstance(event, StartEvent) and event.data:
            self._diag(f"data: {event.data}")
        if isinstance(event, WarningEvent) and event.tip:
            self._diag(f"  tip: {event.tip}")

    def _on_start(self, event: StartEvent) -> None:
        self.seen_start = True
        if self.forward_pending:
            self.forward_pending = False
            self.signal_child(signal.SIGTERM)
        self.last_end = None
        self.first_step_pending = True
        self.started_at = event.time
        if event.max_steps:
            self.max_steps = event.max_steps

    def _on_step(self, event: StepEvent, record: dict[str, Any]) -> None:
        if self.next_progress is None:  # the first line comes one interval after the first step
            self.next_progress = self.clock() + self.progress_every_s
        if self._prints_step(event.step):
            self._data(format_step_line(record, self.max_steps))
            self.unprinted_step = None
        else:
            self.unprinted_step = record

    def print_last_step(self) -> None:
        """Print the run's latest step if its line was skipped (a stop between log intervals)."""
        if self.unprinted_step is not None:
            self._data(format_step_line(self.unprinted_step, self.max_steps))
            self.unprinted_step = None

    def _prints_step(self, step: int) -> bool:
        if self.first_step_pending:
            self.first_step_pending = False
            return True
        return step % max(1, self.log_interval) == 0 or bool(
            self.max_steps and step >= self.max_steps
        )

    def drain(self) -> None:
        """Print everything the log holds now."""
        records = self.watcher.read_all()
        for record in records:
            self.handle(record)
        if records:
            self._data("", flush=True)

    # ------------------------------------------------------------------ signals

    def request_stop(self, signum: int) -> None:
        """First Ctrl-C or SIGTERM: let the child checkpoint and stop; a second Ctrl-C kills it."""
        self.stop_requests += 1
        if signum == signal.SIGINT and self.stop_requests > 1:
            # The loop kills, after reading the log: an `end` already written means nothing to kill.
            self.kill_requested = True
            return
        if signum == signal.SIGINT:
            print(
                "gpt-cockpit: stopping after this step (Ctrl-C again to kill)",
                file=self.err,
                flush=True,
            )
        # A terminal's Ctrl-C already reached the child (same process group); SIGTERM also
        # covers a SIGINT sent to us alone. The child counts only a *second SIGINT* as
        # "exit now", and handles the group's SIGINT first (lower number), so this is safe.
        if self.seen_start:
            self.signal_child(signal.SIGTERM)
        else:  # before its `start` the child may not have its handlers yet: SIGTERM would kill it
            self.forward_pending = True

    def signal_child(self, signum: int) -> None:
        if self.process is not None and self.ranks:  # torchrun: rank 0 stops them all
            if signum == signal.SIGKILL:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                return
            try:
                rundir.stop_run(self.run_dir)
            except rundir.RunError:
                pass
        elif self.process is not None:
            if self.process.poll() is None:
                try:
                    self.process.send_signal(signum)
                except ProcessLookupError:
                    pass
        else:
            try:
                rundir.stop_run(self.run_dir, kill=signum == signal.SIGKILL)
            except rundir.RunError:
                pass

    def kill_child(self) -> None:
        self.killed = True
        self.signal_child(signal.SIGKILL)

    # ------------------------------------------------------------------ the loop

    def follow(self) -> int:
        """Print records until the run is over; the exit code says how it ended."""
        while True:
            if self.kill_requested and not self.killed:
                self._take(self.watcher.poll())
                if self.last_end is None:  # once the run has ended there is nothing to kill
                    self.kill_child()
            if self.killed:
                self._reap(timeout=5.0)
                self.drain()
                if self.last_end is not None:  # it had stopped with its checkpoint before the kill
                    self._record_end()  # the end record's status, should run.json not have it yet
                    return self._finish(self.process.poll() if self.process else None)
                self._record_end(killed="killed by a second Ctrl-C")
                self._diag("killed: the steps since the last checkpoint are lost")
                return EXIT_INTERRUPTED
            self._take(self.watcher.poll())
            if self.stdout_closed and self.process is None:
                return EXIT_OK  # an attach piped into `head`: nothing more to say
            if self.process is not None:
                if self.process.poll() is not None:
                    return self._finish(self.process.returncode)
                if self.last_end is not None:
                    # The child writes `end` and exits; give it a moment, then go by the record.
                    self._reap(timeout=EXIT_WAIT_S)
                    return self._finish(self.process.poll())
            if self.watcher.due():
                done = self._check_run()
                if done is not None:
                    return done
            time.sleep(self.poll_s)

    def _check_run(self) -> int | None:
        """Once a second: an attach checks the run's status (an exit code once it is over); then stalls."""
        if self.process is None:
            try:
                status = self.watcher.refresh_status()
            except rundir.RunError as exc:
                error(str(exc))
                return EXIT_FAILED
            if status not in (*rundir.LIVE_STATUSES, *rundir.WAITING_STATUSES):
                return self._finish(None, status=status)  # a queued run (Slurm) is waited for
        stalled = self.watcher.check_stalled()
        if stalled is not None and self.history.phase() not in QUIET_PHASES:
            self.show(stalled)  # silence while setting up, evaluating or checkpointing is expected
        self.show_progress()
        return None

    def show_progress(self) -> None:
        """Every `progress_every_s` while steps arrive: elapsed, step/total, ETA and tokens/s on stderr."""
        now = self.clock()
        if self.next_progress is None or now < self.next_progress or self.history.end is not None:
            return
        self.next_progress = now + self.progress_every_s
        h = self.history
        self._diag(
            progress_line(h.step, h.max_steps, h.elapsed_s(now), h.eta_s(now), h.tokens_per_s)
        )

    def _take(self, records: list[dict[str, Any]]) -> None:
        """Print a batch of new records (the watcher has noted their arrival)."""
        if not records:
            return
        for record in records:
            self.handle(record)
        self._data("", flush=True)

    def _record_end(self, killed: str = "") -> None:
        """Our own child died without its end in run.json: record it (best effort; an attach never writes).

        `killed` says why we killed it: the run is then `killed`, not `crashed`.
        """
        if self.process is None:
            return
        try:
            if killed:
                rundir.record_killed(self.run_dir, killed)
            else:
                rundir.run_status(self.run_dir, update=True)
        except (rundir.RunError, OSError):
            pass

    def _reap(self, timeout: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass

    def _refused_as_busy(self, returncode: int | None) -> str | None:
        """The line our child refused with when another trainer holds the run (it exits 2,
        writing nothing), naming the holder; None for any other exit."""
        if returncode != EXIT_USAGE or self.process is None:
            return None
        holder = rundir.lock_holder(self.run_dir)
        if holder is not None and holder != self.process.pid:
            return rundir.busy_message(self.run_dir, holder)
        # the holder has exited since: the child's own line, in the shared console.log, says who
        marker = "is already being trained by"
        lines = [line for line in console_tail(self.run_dir) if marker in line]
        return lines[-1].split("error: ", 1)[-1] if lines else None

    def _killed_elsewhere(self) -> str:
        """How the run was killed, when another command recorded a kill (else "")."""
        try:
            info = rundir.read_run_info(self.run_dir)
        except rundir.RunError:
            return ""
        if info.status in rundir.LIVE_STATUSES and info.end_message == rundir.KILLED_HOW:
            # The kill is written before its signal and recorded after it: the child's exit
            # can reach us between the two. Asked for is enough; record it as the killer would.
            recorded = rundir.record_killed(self.run_dir, rundir.KILLED_HOW)
            return rundir.KILLED_HOW if recorded == "killed" else ""
        return (info.end_message or "killed") if info.status == "killed" else ""

    def _finish(self, returncode: int | None, status: str | None = None) -> int:
        """Drain the log and choose the exit code from the `end` record, else the exit status."""
        self.drain()
        self.print_last_step()
        if self.tailer.bad_lines:
            diagnostics.warn(
                f"skipped {self.tailer.bad_lines} unreadable line(s) in {self.tailer.path}"
            )
        if self.last_end is not None:
            return diagnostics.exit_code_for_end(self.last_end.reason or "crashed")
        if status is not None and status not in ("crashed", "error"):
            self._diag(f"run is {status}")
            return EXIT_OK if status in ("finished", "stopped") else EXIT_FAILED
        refused = self._refused_as_busy(returncode)
        if refused:  # two launches of one run: ours lost the lock, nothing of the run is ours
            error(refused)
            return EXIT_USAGE
        killed = self._killed_elsewhere()
        if killed:  # `stop --kill` or `k` in the app: asked for, not a crash
            self._diag(f"{killed}: the steps since the last checkpoint are lost")
            return EXIT_INTERRUPTED
        how = f"exited with code {returncode}" if returncode is not None else "is gone"
        if returncode is not None and returncode < 0:
            how = f"was killed by {signal.Signals(-returncode).name}"
        error(f"the training process {how} without an `end` event (crashed)")
        self._record_end()
        tail = console_tail(self.run_dir)
        if tail:
            print(f"--- last lines of {self.run_dir / rundir.CONSOLE_LOG} ---", file=self.err)
            for line in tail:
                print(line, file=self.err)
            self.err.flush()
        else:
            self._diag(f"{self.run_dir / rundir.CONSOLE_LOG} is empty")
        return EXIT_INTERRUPTED if returncode == EXIT_INTERRUPTED else EXIT_FAILED


class SignalScope:
    """Route SIGINT, SIGTERM and SIGHUP to a follower while it runs; restore the old handlers after.

    SIGHUP (the terminal or SSH session gone) stops the run like SIGTERM: with a checkpoint.
    With `last=True` the process ends with the follow: a signal that lands after the run's end
    (a second Ctrl-C a moment late) is ignored instead of killing us with exit -2 mid-goodbye.
    It is SIG_IGN, not a Python handler: Python puts SIG_DFL back for its own handlers as the
    interpreter shuts down, which is when a late Ctrl-C lands. An in-process caller (a test)
    must leave `last` off: a process it starts afterwards would inherit SIG_IGN.
    """

    def __init__(self, follower: Follower, *, last: bool = False) -> None:
        self.follower = follower
        self.last = last
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> SignalScope:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self.previous[sig] = signal.signal(
                sig, lambda signum, _frame: self.follower.request_stop(signum)
            )
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, signal.SIG_IGN if self.last else handler)


def follow_run(
    run_dir: Path,
    *,
    process: subprocess.Popen[bytes] | None = None,
    offset: int = 0,
    stop_on_signal: bool = True,
) -> int:
    """Follow a run from byte `offset` of its log to its end; signals stop the run when `stop_on_signal`."""
    follower = Follower(run_dir, process=process, offset=offset)
    if not stop_on_signal:
        return follower.follow()
    with SignalScope(follower):
        return follower.follow()
