"""The cockpit app: one factory (`make_app`) used by the CLI, the tests and the benchmark."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from cockpit import rundir, runs
from cockpit.campaign.view import QueueView
from cockpit.plan.gpu import GpuSpec, GpuStatus
from cockpit.plan.presets import Preset
from cockpit.plan.trace_child import TraceRunner, run_trace_child
from cockpit.tui.flags import StartFlags, flags_for_app, unused_line


def default_launcher(
    preset: Preset, runs_dir: Path | None, nproc: int = 1, force: bool = False
) -> Path:
    """Create a run directory for `preset` and start the trainer detached from the app
    (under torchrun, `nproc` ranks, when more than one).

    The same pre-launch checks as headless mode: a missing data source, an architecture
    the engine cannot train or a plan over this machine's memory (unless `force`: the launch
    dialog said so and the user said yes) is a RunError (shown as a message), and nothing is
    started.
    """
    from cockpit.runs.prelaunch import launch_problem, plan_problem

    problem = launch_problem(preset) or (None if force else plan_problem(preset, "auto", nproc))
    if problem:
        raise rundir.RunError(problem)
    run_dir = rundir.create_run_dir(preset, root=runs_dir)
    runs.launch(run_dir, detach=True, ranks=runs.Ranks(nproc=nproc))
    return run_dir


def default_start_scheduler(queue_path: Path | None) -> str:
    """Start the queue's scheduler detached (`gpt-cockpit queue run`); its one line of news."""
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    if queue_path is not None:
        env["GPT_COCKPIT_QUEUE_DB"] = str(queue_path)
    done = subprocess.run(
        [sys.executable, "-m", "cockpit", "queue", "run"],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1].removeprefix("gpt-cockpit: ") if lines else "scheduler started"


def default_read_queue(queue_path: Path | None, gpus: list[tuple[int, str, int]]) -> QueueView:
    """The queue as the queue screen shows it (read in a worker thread)."""
    from cockpit.campaign.store import Queue
    from cockpit.campaign.view import build_view

    with Queue(queue_path) as queue:
        return build_view(queue, gpus=gpus)


def default_gpu_query() -> list[GpuStatus]:
    """This machine's GPUs from NVML (empty without a GPU)."""
    from cockpit.plan.gpu import query_gpus

    return query_gpus()


@dataclass
class Services:
    """What the app reaches outside itself; tests replace each part."""

    launcher: Callable[[Preset, Path | None], Path] = default_launcher
    gpu_query: Callable[[], list[GpuStatus]] = default_gpu_query
    clock: Callable[[], float] = time.time
    runs_dir: Path | None = None
    status_poll_s: float = 1.0  # run.json + pid check
    gpu_poll_s: float = 1.0  # NVML
    tail_poll_s: float = 0.1  # events.jsonl
    redraw_s: float = 0.25  # coalesced redraws of the run screen
    trace_runner: TraceRunner = run_trace_child  # the editor's exact figure (the tracer child)
    trace_debounce_s: float = 0.6  # typing settles this long before a trace starts
    queue_path: Path | None = None  # the queue database (None: the user's, in the state folder)
    start_scheduler: Callable[[Path | None], str] = default_start_scheduler  # `queue run`
    read_queue: Callable[[Path | None, list[tuple[int, str, int]]], QueueView] = default_read_queue
    extra: dict[str, Any] = field(default_factory=dict)


# Services' poll and redraw periods, in seconds: what make_app's keyword arguments may set
TIMINGS = ("status_poll_s", "gpu_poll_s", "tail_poll_s", "redraw_s", "trace_debounce_s")


class CockpitApp(App):
    """Plan presets, launch runs, watch them."""

    CSS_PATH = "app.tcss"
    TITLE = "gpt-cockpit"
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        Binding("f1,question_mark", "help", "Help"),
    ]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]

    def __init__(
        self,
        services: Services | None = None,
        attach: str | Path | None = None,
        start: StartFlags | None = None,
    ) -> None:
        super().__init__()
        self.services = services or Services()
        self.attach_dir = Path(attach) if attach else None
        self.start = start or StartFlags()  # what the command line's flags asked for
        self.local_gpus: list[GpuStatus] | None = None  # None until the first NVML query returns
        self.trace_problem = ""  # why this machine cannot trace (then every plan stays analytic)

    def get_default_screen(self) -> Screen:
        """The presets screen is the first on the stack: Textual's own empty default screen
        under it was laid out again on every resize of the screens above."""
        from cockpit.tui.screens.presets import PresetsScreen

        presets = PresetsScreen()
        presets.gpu_choice = self.start.gpu_choice
        return presets

    def on_mount(self) -> None:
        if self.start.preset is not None:
            self._open_flags_preset()
        if self.attach_dir is not None:
            self.open_run(self.attach_dir)
        self.run_worker(self._query_gpus, thread=True, name="gpu-facts")

    def _open_flags_preset(self) -> None:
        """The editor on the preset the flags named, their overrides applied (ctrl+l launches it)."""
        from cockpit.tui.screens.editor import EditorScreen

        start = self.start
        assert start.preset is not None
        self.push_screen(
            EditorScreen(start.preset, gpu_choice=start.gpu_choice, original=start.base)
        )
        said = f"opened {start.preset.name}"
        if start.applied:
            said += " with " + ", ".join(start.applied)
        self.notify(said + "; ctrl+l launches it", timeout=8)
        if start.unused:
            self.notify(unused_line(start.unused), severity="warning", timeout=12)

    def action_help(self) -> None:
        from cockpit.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette (ctrl+p): this screen's own actions first, then Textual's."""
        for binding in screen.BINDINGS:
            if isinstance(binding, Binding) and binding.description:
                action = binding.action

                def run(action: str = action) -> None:
                    self.call_later(screen.run_action, action)

                keys = binding.key.split(",")[0]
                yield SystemCommand(binding.description, f"{keys} on this screen", run)
        yield SystemCommand("Help", "every screen's keys (? or F1)", self.action_help)
        yield SystemCommand("Runs", "every run, to attach to one", self.open_runs)
        yield SystemCommand("Queue", "the queue of runs and sweeps", self.open_queue)
        yield from super().get_system_commands(screen)

    def _query_gpus(self) -> None:
        """Ask NVML once for this machine's GPUs (a thread: loading NVML can take a moment)."""
        gpus = self.services.gpu_query()
        self.call_from_thread(self._gpus_known, gpus)

    def _gpus_known(self, gpus: list[GpuStatus]) -> None:
        self.local_gpus = list(gpus)
        for screen in self.screen_stack:
            refresh = getattr(screen, "gpus_known", None)
            if refresh is not None:
                refresh()

    def local_gpu_spec(self, nproc: int = 1) -> GpuSpec | None:
        """Planning facts of the GPU a run of `nproc` processes here is planned against: cuda:0,
        or the smallest of cuda:0..nproc-1 (None without a GPU, or before NVML answered)."""
        from cockpit.plan.gpu import run_gpus, smallest_spec

        return smallest_spec(run_gpus(self.local_gpus or [], "auto", nproc))

    def open_run(self, run_dir: Path) -> None:
        """Show the run screen for `run_dir` (a new launch or an attach: the same way in)."""
        from cockpit.tui.screens.run import RunScreen

        self.push_screen(RunScreen(Path(run_dir)))

    def open_runs(self) -> None:
        """Show the runs list."""
        from cockpit.tui.screens.runs import RunsScreen

        self.push_screen(RunsScreen())

    def open_queue(self) -> None:
        """Show the queue."""
        from cockpit.tui.screens.queue import QueueScreen

        if not isinstance(self.screen, QueueScreen):
            self.push_screen(QueueScreen(self.services.queue_path))

    def add_to_queue(self, preset_ref: str, sets: dict[str, Any] | None = None) -> None:
        """Ask how to queue a preset (once, or a sweep); then say what was added."""
        from cockpit.tui.screens.queue_add import AddToQueueScreen

        def added(ids: list[int] | None) -> None:
            if ids:
                shown = ", ".join(f"#{i}" for i in ids)
                self.notify(f"queued {shown}; Q shows the queue", timeout=8)

        self.push_screen(
            AddToQueueScreen(
                preset_ref,
                sets,
                queue_path=self.services.queue_path,
                runs_root=self.services.runs_dir,
                gpus_here=len(self.local_gpus or []),
            ),
            added,
        )

    def launch_preset(self, preset: Preset, nproc: int = 1, force: bool = False) -> None:
        """Start a run of `preset` (on `nproc` ranks; `force`: past the memory check, as the
        launch dialog was answered) and watch it; a failure is a notification, not a crash."""
        try:
            launch: Callable[..., Path] = self.services.launcher  # the default takes all three
            if force:
                run_dir = launch(preset, self.services.runs_dir, nproc=nproc, force=True)
            elif nproc > 1:  # a launcher that takes one process only keeps its two arguments
                run_dir = launch(preset, self.services.runs_dir, nproc=nproc)
            else:
                run_dir = self.services.launcher(preset, self.services.runs_dir)
        except (OSError, rundir.RunError) as exc:
            self.notify(f"cannot start the run: {exc}", severity="error", timeout=8)
            return
        self.open_run(run_dir)


def make_app(
    *,
    runs_dir: str | Path | None = None,
    attach: str | Path | None = None,
    start: StartFlags | None = None,
    launcher: Callable[[Preset, Path | None], Path] | None = None,
    gpu_query: Callable[[], list[GpuStatus]] | None = None,
    clock: Callable[[], float] | None = None,
    trace_runner: TraceRunner | None = None,
    queue_path: str | Path | None = None,
    start_scheduler: Callable[[Path | None], str] | None = None,
    read_queue: Callable[[Path | None, list[tuple[int, str, int]]], QueueView] | None = None,
    **timing: float,
) -> CockpitApp:
    """The app with its services; tests pass a fake launcher, fixed GPU facts and a fixed clock."""
    services = Services(runs_dir=Path(runs_dir) if runs_dir else None)
    for name, seconds in timing.items():  # status_poll_s, tail_poll_s, ...: the pollers' periods
        if name not in TIMINGS:
            raise TypeError(f"make_app() got an unexpected keyword argument {name!r}")
        setattr(services, name, float(seconds))
    if launcher is not None:
        services.launcher = launcher
    if gpu_query is not None:
        services.gpu_query = gpu_query
    if clock is not None:
        services.clock = clock
    if trace_runner is not None:
        services.trace_runner = trace_runner
    if queue_path is not None:
        services.queue_path = Path(queue_path)
    if start_scheduler is not None:
        services.start_scheduler = start_scheduler
    if read_queue is not None:
        services.read_queue = read_queue
    return CockpitApp(services, attach=attach, start=start)


def cmd_app(args: argparse.Namespace) -> int:
    """Run the app (`gpt-cockpit`, or `attach RUN` with args.attach set to the run dir).

    Plain `gpt-cockpit` with --preset, --set, --max-steps, --data or --gpu opens the editor on
    that preset with them applied; a bad value is exit 2 before the app opens.
    """
    from cockpit.common.diagnostics import EXIT_USAGE, error, warn
    from cockpit.headless import UsageError
    from cockpit.plan.presets import PresetError

    start = None
    if getattr(args, "command", None) is None:
        try:
            start = flags_for_app(args)
        except (PresetError, UsageError, ValueError) as exc:
            error(str(exc))
            return EXIT_USAGE
    app = make_app(
        runs_dir=getattr(args, "runs_dir", None), attach=getattr(args, "attach", None), start=start
    )
    app.run()
    if start is not None and start.unused:
        warn(unused_line(start.unused))  # said in the app too; this stays in the terminal
    return 0
