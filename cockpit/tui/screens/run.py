"""The run screen: one run's history from events.jsonl, then followed live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Header, Static

from cockpit import rundir, runs
from cockpit.common.format import (
    elapsed,
    fmt_eta,
    fmt_float,
    fmt_norm,
    health_count,
    human_bytes,
    human_count,
    human_duration,
    status_markup,
    step_progress,
)
from cockpit.plan.estimate import estimate
from cockpit.plan.gpu import GpuStatus, gpu_by_uuid, spec_for_status
from cockpit.plan.presets import Preset, PresetError
from cockpit.runs.history import QUIET_PHASES, RunHistory
from cockpit.tui.access import app_of, services_of
from cockpit.tui.messages import GpusPolled, RunRecords, RunStatusPolled, RunTailed
from cockpit.tui.widgets.footer import KeyFooter
from cockpit.tui.widgets.metric_plot import MetricPlot
from cockpit.tui.widgets.panel import Panel

LIVE_POLL_BYTES = 1 << 20  # at most 1 MiB of events per tick keeps a tick well under a frame
CLOCK_S = 1.0  # the status lines (elapsed, ETA, last update) tick this often while a run is live
PLOTS = ("plot-loss", "plot-lr", "plot-grad")  # drawn in this order, one per redraw tick
PHASE_STYLE = {
    "starting": "yellow",
    "first step": "yellow",
    "evaluating": "cyan",
    "checkpointing": "cyan",
    "training": "green",
}


class RunScreen(Screen):
    """Plots, numbers, GPU, health, sample and log of one run; keys to stop, kill, detach."""

    BINDINGS = [
        Binding("s", "stop", "Stop"),
        Binding("k", "kill", "Kill"),
        Binding("u", "resume", "Resume"),
        Binding("n", "restart", "Start again"),
        Binding("g", "sample", "Sample"),
        Binding("d,escape", "detach", "Detach"),
        Binding("r", "runs", "Runs"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.sampled: tuple[bool, str] | None = None  # the last sample asked for: (ok, text)
        self.status = "?"
        self.history = RunHistory()
        # The app's clock (a fixed one in tests), asked only once the screen is mounted.
        self.watcher = rundir.RunWatcher(
            self.run_dir,
            clock=lambda: services_of(self).clock(),
        )
        self.dirty = False
        self.loaded = False
        self.redraws = 0  # for the benchmark and tests
        self.status_polls = 0  # status polls answered (each checks for a stall): for the tests
        self.ingested = 0
        self.gpus: list[GpuStatus] | None = None
        self.estimated_peak: int | None = None
        self.stall_note = ""
        self.preset: Preset | None = None  # read from preset.json on mount
        self.resume_block: str | None = None  # why `u` is greyed: no checkpoint to resume from
        self._tailing = False  # a read of events.jsonl is under way in a thread
        self._stale_plots: set[str] = set()  # plots whose data changed since they were drawn
        self._next_plot = 0  # index into PLOTS of the plot whose turn it is

    def compose(self) -> ComposeResult:
        yield Header()
        yield Panel(id="run-status")
        with Horizontal(id="run-body"):
            with Vertical(id="run-plots"):
                yield MetricPlot("loss (train, val)", id="plot-loss")
                with Horizontal(id="run-small-plots"):
                    yield MetricPlot("lr", id="plot-lr")
                    yield MetricPlot("grad norm", log_y=True, id="plot-grad")
            with Vertical(id="run-side"):
                yield Panel(id="run-gpu", classes="panel")
                yield Panel(id="run-health", classes="panel")
                yield Panel(id="run-sample", classes="panel")
        yield Panel(id="run-log")
        yield KeyFooter()

    # ---------------------------------------------------------------- start

    def on_mount(self) -> None:
        services = services_of(self)
        self.title = f"run {self.run_dir.name}"
        self.preset = None  # None when preset.json cannot be read
        try:
            preset = rundir.load_run_preset(self.run_dir)
            self.history.max_steps = preset.train.max_steps
            self.history.eval_interval = preset.train.eval_interval
            self.preset = preset
        except rundir.RunError:
            pass
        self.created: float | None = None
        self.world_size = 1  # ranks of the run (torchrun), for the per-GPU estimate
        self.local_ranks = 1  # of which on this node: GPU0..GPU(n-1) carry the estimate
        self.gpu_uuid: str | None = None  # the start event's: the run's GPU whatever its mask
        try:
            info = rundir.read_run_info(self.run_dir)
            self.created = info.created
            self.world_size = max(1, info.world_size or 1)
            self.local_ranks = max(1, self.world_size // max(1, info.nnodes or 1))
        except rundir.RunError:
            pass
        self.status = self._read_status()
        self._check_resumable()
        self.run_worker(self._rebuild, thread=True, name="rebuild")
        self.set_interval(services.redraw_s, self.redraw)
        self.set_interval(CLOCK_S, self.tick_clock)
        self.set_interval(services.status_poll_s, self._poll_status)
        self.set_interval(services.gpu_poll_s, self._poll_gpus)
        self._poll_gpus()
        self.redraw(force=True)

    @property
    def settled(self) -> bool:
        """True when the history is read and drawn, no read of events.jsonl is under way and the
        GPUs were polled: the screen shows all it knows and stays so until the run writes."""
        return (
            self.loaded
            and self.gpus is not None
            and not self._tailing
            and not self.dirty
            and not self._stale_plots
        )

    @property
    def tailer(self) -> rundir.EventTailer:
        """The watcher's tail of events.jsonl (its bad-line count is shown)."""
        return self.watcher.tailer

    def _read_status(self) -> str:
        try:
            return self.watcher.refresh_status(update=False)
        except rundir.RunError as exc:
            return f"unreadable ({exc})"

    def _rebuild(self) -> None:
        """Read the whole history (a thread: a long run's log is megabytes)."""
        records = self.watcher.read_all()
        self.post_message(RunRecords(records, self.tailer.bad_lines))

    @on(RunRecords)
    def _take_history(self, message: RunRecords) -> None:
        self.watcher.note(message.records)
        self.take(message.records)
        if not self.loaded:
            self.loaded = True
            self.tailer.max_bytes_per_poll = LIVE_POLL_BYTES
            self.set_interval(services_of(self).tail_poll_s, self.poll_events)
            self.redraw(force=True)

    # ---------------------------------------------------------------- live

    def poll_events(self) -> None:
        """Read what the trainer appended since the last tick, in a thread: decoding 1000 records
        a second took ~15% of the app's thread, and a key waited behind each batch."""
        if self._tailing:
            return  # one read at a time: the tail's offset is not shared between threads
        if not self.tailer.has_news():
            return  # nothing appended (an ended or a quiet run): no thread for an empty read
        self._tailing = True
        self.run_worker(self._tail_worker, thread=True, group="tail")

    def _tail_worker(self) -> None:
        records: list[dict[str, Any]] = []
        try:
            records = self.tailer.poll()
        finally:
            self.post_message(RunTailed(records))

    @on(RunTailed)
    def _tailed(self, message: RunTailed) -> None:
        self._tailing = False
        if message.records:
            self.watcher.note(message.records)
            self.take(message.records)

    def take(self, records: list[dict[str, Any]]) -> None:
        """Add records to the history; the next redraw tick shows them."""
        if not records:
            return
        self.stall_note = ""
        for record in records:  # the GPU rank 0 trains on, by UUID: CUDA's numbers are the run's
            if record.get("event") == "start" and record.get("gpu_uuid"):
                if self.gpu_uuid != record["gpu_uuid"]:
                    self.estimated_peak = None  # the next poll estimates for that GPU
                self.gpu_uuid = str(record["gpu_uuid"])
        self.history.ingest(records)
        self.ingested += len(records)
        self._stale_plots.update(PLOTS)
        self.dirty = True

    def _poll_status(self) -> None:
        self.run_worker(self._status_worker, thread=True, exclusive=True, group="status")

    def _status_worker(self) -> None:
        self.post_message(RunStatusPolled(self._read_status()))

    @on(RunStatusPolled)
    def _status_polled(self, message: RunStatusPolled) -> None:
        self.status_polls += 1
        if message.status != self.status:
            if message.status == "crashed":
                self.notify(
                    f"{self.run_dir.name} crashed (its process is gone); see console.log",
                    severity="error",
                    timeout=10,
                )
            self.status = message.status
            self._check_resumable()
            self.dirty = True
            self.refresh_bindings()  # stop/kill only while it runs, resume only once it stopped
        self._check_stalled()

    def _check_stalled(self) -> None:
        """Note a live run that has written nothing for far longer than usual (the headless rule)."""
        warning = self.watcher.check_stalled()
        if warning is not None and self.history.phase() in QUIET_PHASES:
            return  # setting up, a first step, an eval or a checkpoint: silence is expected
        if warning is not None:
            silent = warning.evidence.get("silent_s", 0.0)
            self.stall_note = f"no events for {silent:.0f} s: {warning.tip}"
            self.dirty = True

    def _poll_gpus(self) -> None:
        self.run_worker(self._gpu_worker, thread=True, exclusive=True, group="gpu")

    def _gpu_worker(self) -> None:
        self.post_message(GpusPolled(services_of(self).gpu_query()))

    @on(GpusPolled)
    def _gpus_polled(self, message: GpusPolled) -> None:
        self.gpus = list(message.gpus)
        if self.gpus and self.estimated_peak is None and self.preset is not None:
            spec = spec_for_status(self._run_gpu() or self.gpus[0])
            self.estimated_peak = estimate(self.preset, spec, world_size=self.world_size).peak_bytes
        self.query_one("#run-gpu", Static).update(self.gpu_text())

    # ---------------------------------------------------------------- drawing

    def redraw(self, force: bool = False) -> None:
        """Repaint from the history, at most once per tick and only when something changed."""
        if not (self.dirty or force):
            return
        if not force and self.app.screen is not self:
            # under a dialog: a repaint here re-tints the whole screen behind it (tens of ms) and
            # delays the dialog's keys; the history keeps growing and shows when it closes
            return
        self.dirty = False
        self.redraws += 1
        # One plot per tick, in turn (all three on a forced redraw): a plotext build takes
        # tens of ms, and a key that arrives during a tick waits for one build, not three.
        if force:
            self._stale_plots.update(PLOTS)
        turn = PLOTS[self._next_plot :] + PLOTS[: self._next_plot]  # in turn: none starves
        for plot_id in [p for p in turn if p in self._stale_plots][: len(PLOTS) if force else 1]:
            self._stale_plots.discard(plot_id)
            self._next_plot = (PLOTS.index(plot_id) + 1) % len(PLOTS)
            self._show_plot(plot_id)
        self.dirty = bool(self._stale_plots)  # the others on the next ticks
        self.query_one("#run-status", Static).update(self.status_text())
        self.query_one("#run-health", Static).update(self.health_text())
        self.query_one("#run-sample", Static).update(self.sample_text())
        self.query_one("#run-log", Static).update(self.log_text())

    def _show_plot(self, plot_id: str) -> None:
        h = self.history
        plot = self.query_one(f"#{plot_id}", MetricPlot)
        if plot_id == "plot-loss":
            plot.show([("train", h.loss), ("val", h.val_loss)], h.warning_steps())
        elif plot_id == "plot-lr":
            plot.show([("lr", h.lr)])
        else:
            plot.show([("norm", h.grad_norm)])

    def tick_clock(self) -> None:
        """Keep a live run's clock moving between records (only the two status lines repaint)."""
        if self.status in rundir.LIVE_STATUSES and not self.dirty and self.app.screen is self:
            self.query_one("#run-status", Static).update(self.status_text())

    def status_text(self) -> str:
        """Two lines: status, what it is doing, step, loss; throughput, MFU, elapsed, ETA, last update."""
        h = self.history
        last = h.last_step or rundir.StepEvent(time=None)
        loss = fmt_float(last.loss)
        val = fmt_float(h.best_val_loss)
        live = self.status in rundir.LIVE_STATUSES
        phase = h.phase() if live else ""
        if phase == self.status:
            phase = ""  # "starting" once, not "starting starting"
        doing = f"[{PHASE_STYLE.get(phase, 'dim')}]{phase}[/]  " if phase else ""
        line1 = f"{status_markup(self.status)}  {doing}step {step_progress(h.step, h.max_steps)}  loss {loss}  best val {val}"
        if not self.loaded:
            line1 += "  [dim](reading history...)[/]"
        if self.resume_block:
            line1 += "  [yellow]no checkpoint to resume (n: start again)[/]"
        now = services_of(self).clock() if live else None
        mfu = f"{fmt_float(h.mfu * 100, '.1f')}%" if h.mfu is not None else "-"
        took = h.elapsed_s(now)
        if took is None and now is not None and self.created:  # still setting up: since launch
            took = max(0.0, now - self.created)
        line2 = (
            f"{human_count(h.tokens_per_s)} tok/s  MFU {mfu}  norm {fmt_norm(last.grad_norm)}  "
            f"elapsed {elapsed(took)}  ETA {fmt_eta(h.eta_s(now))}"
        )
        ago = h.since_update_s(now) if now is not None else None
        if ago is not None:
            line2 += f"  [dim]last update {human_duration(ago)} ago[/]"
        if self.tailer.bad_lines:
            line2 += f"  [dim]{self.tailer.bad_lines} bad line(s) skipped[/]"
        return f"{line1}\n{line2}"

    def gpu_text(self) -> str:
        """One block per GPU: utilization, memory used vs the estimate, temperature, power."""
        if self.gpus is None:
            return "[b]GPU[/] reading..."
        if not self.gpus:
            vram = self.history.vram_bytes
            return "[b]GPU[/] no GPU (CPU run)" + (
                f"\nrun reserved {human_bytes(vram)}" if vram else ""
            )
        lines = []
        for gpu in self.gpus:
            util = f"{gpu.utilization:.0f}%" if gpu.utilization is not None else "-"
            temp = f"{gpu.temperature_c:.0f}°C" if gpu.temperature_c is not None else "-"
            power = f"{gpu.power_w:.0f}" if gpu.power_w is not None else "-"
            limit = f"/{gpu.power_limit_w:.0f}" if gpu.power_limit_w else ""
            est = (
                f" (est {human_bytes(self.estimated_peak)})"
                if self.estimated_peak and self._trains_on(gpu)
                else ""
            )
            lines.append(
                f"[b]GPU{gpu.index}[/] {gpu.name}\n util {util}  {temp}  {power}{limit} W\n"
                f" mem {human_bytes(gpu.memory_used)}/{human_bytes(gpu.memory_total)}{est}"
            )
        return "\n".join(lines)

    def _run_gpu(self) -> GpuStatus | None:
        """The polled GPU the run's start event names by UUID (None before it, or not here)."""
        return gpu_by_uuid(self.gpu_uuid, self.gpus or []) if self.gpu_uuid else None

    def _trains_on(self, gpu: GpuStatus) -> bool:
        """True for a GPU one of the run's ranks on this machine trains on.

        One rank: the GPU its start event names by UUID, which holds wherever the run was
        pinned (a queue's CUDA_VISIBLE_DEVICES need not be the app's). Several, or before
        the start event: cuda:0 .. cuda:(local ranks - 1) as this process's mask numbers them.
        """
        if self.local_ranks == 1 and self.gpu_uuid and self._run_gpu() is not None:
            return gpu.uuid == self._run_gpu().uuid  # type: ignore[union-attr]
        return _cuda_index(gpu) < self.local_ranks

    def health_text(self) -> str:
        """The latest warnings with their tips."""
        warnings = self.history.warnings[-3:]
        if not warnings and not self.stall_note:
            return "[b]health[/] [green]no warnings[/]"
        lines = [f"[b]health[/] {health_count(self.history.warnings)}"]
        if self.stall_note:
            lines.append(f"[yellow]stalled[/] {self.stall_note}")
        for w in reversed(warnings):
            color = {"critical": "bold red", "warning": "yellow"}.get(w.severity, "cyan")
            lines.append(f"[{color}]{w.rule}[/] @{w.step}: {w.message}")
            if w.tip:
                lines.append(f"  [dim]tip:[/] {w.tip}")
        return "\n".join(lines)

    def sample_text(self) -> str:
        h = self.history
        if not h.sample:
            return "[b]sample[/] none yet"
        text = h.sample.strip("\n")[:400]
        from rich.markup import escape

        return f"[b]sample[/] @{h.sample_step}\n{escape(text)}"

    def log_text(self) -> str:
        from rich.markup import escape

        box = self.query_one("#run-log", Static)
        fits = (
            max(1, box.size.height - 1) if box.size.height else 4
        )  # newest lines at the bottom, as many as fit
        lines = [escape(line) for line in list(self.history.log)[-fits:]]
        return "\n".join(lines) or "[dim]no events yet[/]"

    # ---------------------------------------------------------------- keys

    def _check_resumable(self) -> None:
        """Note why an ended run cannot be resumed (no checkpoint yet), so `u` is greyed at once."""
        from cockpit.runs.prelaunch import resume_problem

        ended = self.status not in rundir.LIVE_STATUSES and self.status != "finished"
        self.resume_block = resume_problem(self.run_dir) if ended else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Offer stop and kill only for a live run, resume only for a stopped or crashed one
        (greyed without a checkpoint, when `n` starts it again from step 0 instead)."""
        live = self.status in rundir.LIVE_STATUSES
        if action in ("stop", "kill"):
            return live
        if action == "resume":  # a queued run (Slurm) resumes when its job starts
            if live or self.status in ("finished", *rundir.WAITING_STATUSES):
                return False
            return None if self.resume_block else True
        if action == "restart":
            return bool(self.resume_block) and self.preset is not None
        if action == "sample":
            return not live
        return True

    def on_key(self, event: events.Key) -> None:
        """A greyed or hidden `u` says why instead of doing nothing."""
        if event.key == "u" and self.status == "finished":
            event.stop()
            self.ask_to_train_on()
        elif event.key == "u" and self.resume_block:
            event.stop()
            self.notify(
                f"cannot resume: {self.resume_block}. Press n to start it again from step 0 "
                "with the same preset.",
                severity="warning",
                timeout=8,
            )

    def ask_to_train_on(self) -> None:
        """A finished run reached its max_steps: ask for more, then resume it to there."""
        from cockpit.runs.prelaunch import resume_problem
        from cockpit.tui.screens.confirm import PromptScreen

        try:
            reached = rundir.load_run_preset(self.run_dir).train.max_steps
        except rundir.RunError as exc:
            self.notify(f"cannot resume: {exc}", severity="error", timeout=8)
            return

        def answered(text: str | None) -> None:
            if not text:
                return
            try:
                steps = int(text.replace(",", "").replace("_", ""))
            except ValueError:
                self.notify(f"not a whole number of steps: {text!r}", severity="warning")
                return
            if steps <= reached:
                self.notify(f"more than {reached:,} steps, to train on", severity="warning")
                return
            problem = resume_problem(self.run_dir)  # before anything is written
            if problem:
                self.notify(f"cannot resume: {problem}", severity="warning", timeout=8)
                return
            try:
                runs.raise_max_steps(self.run_dir, steps)
            except (PresetError, rundir.RunError) as exc:
                self.notify(f"cannot resume: {exc}", severity="error", timeout=8)
                return
            self.history.max_steps = steps
            self.action_resume()

        self.app.push_screen(
            PromptScreen(
                f"{self.run_dir.name} finished its {reached:,} steps.\n"
                "Train on from its last checkpoint to how many steps?",
                str(reached * 2),
            ),
            answered,
        )

    def action_restart(self) -> None:
        """Launch the run's own preset again as a new run from step 0 (after the launch question)."""
        from cockpit.plan.estimate import estimate
        from cockpit.tui.screens.confirm import confirm_launch

        if self.preset is None:
            return
        gpu = app_of(self).local_gpu_spec()
        confirm_launch(app_of(self), self.preset, estimate(self.preset, gpu))

    def action_sample(self) -> None:
        """A prompt box: text from this run's checkpoint (not while it trains)."""
        from cockpit.tui.screens.sample_prompt import ask_and_sample

        ask_and_sample(self, self.run_dir)

    def action_resume(self) -> None:
        """Continue a stopped or crashed run from its last checkpoint, detached like a launch."""
        self._check_resumable()
        if self.resume_block:  # the checkpoint went since the footer was drawn
            self.refresh_bindings()
            self.notify(f"cannot resume: {self.resume_block}", severity="warning", timeout=8)
            return
        from cockpit.runs.prelaunch import model_file_problem

        changed = model_file_problem(self.run_dir)  # your own model's file edited since the start
        if changed:
            self.notify(f"cannot resume: {changed.line}", severity="warning", timeout=15)
            return
        try:
            # the same world size as the run's (a multi-rank checkpoint refuses another)
            runs.launch(
                self.run_dir, resume=True, detach=True, ranks=runs.ranks_of_run(self.run_dir)
            )
        except (OSError, rundir.RunError) as exc:
            self.notify(f"cannot resume: {exc}", severity="error", timeout=8)
            return
        self.status = "starting"
        self.dirty = True
        self.refresh_bindings()
        self.notify(f"resuming {self.run_dir.name} from its last checkpoint")

    def action_stop(self) -> None:
        try:
            sent = rundir.stop_run(self.run_dir)
        except rundir.RunError as exc:
            self.notify(str(exc), severity="error")
            return
        if sent:
            self.notify("stopping: the trainer finishes this step, writes a checkpoint and exits")
        else:
            self.notify(f"not running (status {self.status}); nothing to stop", severity="warning")

    def action_kill(self) -> None:
        from cockpit.tui.screens.confirm import ConfirmScreen

        if self.status not in rundir.LIVE_STATUSES:
            self.notify(f"not running (status {self.status}); nothing to kill", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                try:
                    killed = rundir.stop_run(self.run_dir, kill=True)
                except rundir.RunError as exc:
                    self.notify(str(exc), severity="error")
                    return
                self.notify(
                    "killed; steps since the last checkpoint are lost"
                    if killed
                    else "it had already stopped"
                )

        self.app.push_screen(
            ConfirmScreen(
                "Kill the trainer now (SIGKILL)?\nSteps since the last checkpoint are lost."
            ),
            answered,
        )

    def action_detach(self) -> None:
        """Leave the run screen; training goes on. Opened by `attach` (or `resume`), the app
        closes: back to the shell it was typed in, not to a presets screen never asked for."""
        app = app_of(self)
        if app.attach_dir == self.run_dir and len(app.screen_stack) <= 2:  # presets, run
            app.exit(message=f"detached from {self.run_dir.name}; it keeps training")
            return
        self.app.pop_screen()
        self.app.notify(f"detached from {self.run_dir.name}; it keeps training", timeout=3)

    def action_runs(self) -> None:
        self.app.pop_screen()
        app_of(self).open_runs()


def _cuda_index(gpu: GpuStatus) -> int:
    """The cuda:N a run started here calls this GPU (local rank N trains on it)."""
    return gpu.cuda_index if gpu.cuda_index is not None else gpu.index
