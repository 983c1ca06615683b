"""The exact (traced) memory figure behind a plan screen: the analytic figure shows at once, the
tracer child runs in a worker thread, and its result replaces the estimate when it comes.

One trace at a time per screen: a request waits until the form has been still for
`Services.trace_debounce_s`, a newer shape cancels the running trace (its child is killed),
and a shape already in the trace cache is shown as traced with no child at all
(`estimate()` reads the cache). Where this machine cannot trace (no compiler, no torch) the
app remembers the one-line reason and stops asking; the estimate stands.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, get_current_worker

from cockpit.plan.estimate import Estimate, trace_key
from cockpit.plan.presets import Preset
from cockpit.plan.trace_child import TraceOutcome, ensure_traced
from cockpit.tui.access import app_of, services_of

GROUP = "exact-trace"


def source_label(est: Estimate) -> str:
    """Where the peak figure comes from, in one word."""
    if est.measured:
        return "measured"
    return "traced" if est.traced else "estimate"


def verdict_words(est: Estimate, gpu_key: str = "") -> str:
    """The estimate's verdict as every app screen says it (one function for the presets, the
    editor and the launch question): the key that picks a what-if GPU instead of the CLI's
    --gpu, or no such hint where no key picks one."""
    words = est.verdict
    hint = "; pick one with --gpu"
    if hint in words:
        words = words.replace(hint, f"; {gpu_key} picks a what-if GPU" if gpu_key else "")
    return words


class ExactFigure:
    """Keeps one screen's exact figure coming: `want()` after each change, `note` for the panel."""

    def __init__(self, screen: Screen, on_done: Callable[[], None]) -> None:
        self.screen = screen
        self.on_done = on_done  # redraw the panel (on the app's thread)
        self.key: tuple[str, int] | None = None  # the shape and micro-batch wanted now
        self.tracing = False
        self.active = False  # the form is valid: its figure is the one being planned
        self.problem = ""  # why the wanted shape could not be traced
        self.traces_started = 0
        self._timer: Timer | None = None
        self._worker: Worker | None = None

    @property
    def idle(self) -> bool:
        """No trace is waiting for the form to settle or running."""
        return self._timer is None and self._worker is None

    @property
    def app_problem(self) -> str:
        return getattr(self.screen.app, "trace_problem", "")

    def note(self, est: Estimate) -> str:
        """One line under the peak while the estimate stands (empty once traced or measured)."""
        if est.measured or est.traced or not self.active:
            return ""
        problem = self.app_problem or self.problem
        if problem:
            return f"exact figure unavailable ({problem}); the estimate stands"
        if self.tracing:
            return "tracing the real step for the exact figure..."
        return ""

    def want(self, preset: Preset | None, est: Estimate) -> None:
        """The form now shows `preset` (None: invalid fields): trace it unless that is known or moot."""
        self.active = preset is not None
        # your own model's parameters and FLOPs come with its trace (the tracer child measures them)
        known = (est.measured or est.traced) and est.figures != "not measured yet"
        if preset is None or known or self.app_problem:
            self.cancel()
            self.key = None
            return
        key = (trace_key(preset, est.dtype), est.batch_size)
        if key == self.key:
            return  # already waiting, tracing, or failed for this very shape
        self.cancel()
        self.key, self.problem, self.tracing = key, "", True
        delay = services_of(self.screen).trace_debounce_s
        self._timer = self.screen.set_timer(
            delay, lambda: self._start(preset, est.dtype, est.batch_size, key)
        )

    def cancel(self) -> None:
        """Forget the pending trace and stop the running one (its child is killed)."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        self.tracing = False

    def _start(self, preset: Preset, dtype: str, batch: int, key: tuple[str, int]) -> None:
        self._timer = None
        if key != self.key:
            return
        self.traces_started += 1
        runner = services_of(self.screen).trace_runner

        def work() -> None:
            worker = get_current_worker()
            outcome = ensure_traced(preset, dtype, batch, runner, lambda: worker.is_cancelled)
            if not worker.is_cancelled:
                self.screen.app.call_from_thread(self._done, key, outcome)

        self._worker = self.screen.run_worker(
            work, thread=True, group=GROUP, exclusive=True, exit_on_error=False
        )

    def _done(self, key: tuple[str, int], outcome: TraceOutcome) -> None:
        if key != self.key or outcome.cancelled:
            return  # a newer shape replaced this one
        self._worker = None
        self.tracing = False
        if outcome.reason:
            self.problem = outcome.reason
            if outcome.unavailable:
                app_of(self.screen).trace_problem = outcome.reason
        self.on_done()
