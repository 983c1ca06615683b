"""The editor's exact figure: the estimate at once, the traced one when a background trace has it.

The tracer child is replaced by fake runners (Services.trace_runner): no torch, no compiler.
"""

from __future__ import annotations

import threading

from helpers import app_for_tests, fake_gpu, wait_for
from textual.widgets import DataTable, Static

from cockpit.common.format import human_bytes
from cockpit.plan.estimate import estimate, load_traces
from cockpit.plan.presets import load_preset
from cockpit.plan.trace_child import TraceOutcome
from cockpit.tui.screens.editor import EditorScreen


def t4() -> list:
    return [fake_gpu("NVIDIA T4", 16)]


def panel(screen) -> str:
    return str(screen.query_one("#live-panel", Static).render())


def points_at_half(preset, batches) -> list[dict]:
    """Trace points half the analytic live bytes: a figure no estimate would show."""
    half = {b: estimate(preset, batch_size=b).memory.live_bytes // 2 for b in batches}
    return [
        {
            "batch": b,
            "peak_bytes": half[b],
            "reserved_bytes": half[b],
            "reserved_plain_bytes": half[b],
            "reserved_expandable_bytes": half[b],
            "peak_op": "fake",
            "by_category": {},
        }
        for b in batches
    ]


class Recorder:
    """A fake tracer that records each request; `hold` makes it wait until cancelled or released."""

    def __init__(self, hold: bool = False) -> None:
        self.calls: list[tuple[int, list[int], str]] = []
        self.cancelled: list[int] = []
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, preset, batches, dtype, cancelled) -> TraceOutcome:
        self.calls.append((preset.model.n_layer, list(batches), dtype))
        while not self.release.wait(0.01):
            if cancelled():
                self.cancelled.append(preset.model.n_layer)
                return TraceOutcome(cancelled=True)
        return TraceOutcome(points=points_at_half(preset, batches))


async def open_editor(pilot, name: str) -> EditorScreen:
    await wait_for(pilot, lambda: pilot.app.local_gpus is not None)
    table = pilot.app.screen.query_one(DataTable)
    table.move_cursor(row=[p.name for p in pilot.app.screen.presets].index(name))
    await pilot.press("enter")
    await pilot.pause()
    assert isinstance(pilot.app.screen, EditorScreen)
    return pilot.app.screen


async def test_the_estimate_shows_first_and_the_traced_figure_replaces_it_and_is_cached():
    runner = Recorder(hold=True)
    app = app_for_tests(gpu_query=t4, trace_runner=runner, trace_debounce_s=0.05)
    preset = load_preset("gpt2_124m")
    async with app.run_test(size=(80, 24)) as pilot:
        editor = await open_editor(pilot, "gpt2_124m")
        analytic = estimate(preset, editor.gpu)
        assert not analytic.traced  # the trace is held: the estimate is what shows
        assert f"peak {human_bytes(analytic.peak_bytes)} (estimate)" in panel(editor)
        runner.release.set()
        await wait_for(pilot, lambda: "(traced)" in panel(editor))
        traced = estimate(preset, editor.gpu)
        assert traced.traced and traced.peak_bytes < analytic.peak_bytes
        assert f"peak {human_bytes(traced.peak_bytes)} (traced)" in panel(editor)
        assert "tracing" not in panel(editor)
        # a T4 has no bf16: the trace is of the fp16 step, at the micro-batch and half of it
        b = preset.train.batch_size
        assert runner.calls == [(preset.model.n_layer, [b // 2, b], "fp16")]
        assert sorted(load_traces(preset, "fp16")) == [b // 2, b]
        # a repeat of the shape is instant: traced on opening, no second trace
        await pilot.press("escape")
        await pilot.pause()
        editor = await open_editor(pilot, "gpt2_124m")
        assert "(traced)" in panel(editor)
        await wait_for(pilot, lambda: editor.exact.idle)  # nothing waits to trace it again
        assert len(runner.calls) == 1


async def test_typing_waits_for_the_form_to_settle_and_a_new_shape_cancels_a_running_trace():
    runner = Recorder(hold=True)
    app = app_for_tests(gpu_query=t4, trace_runner=runner, trace_debounce_s=0.05)
    async with app.run_test(size=(80, 24)) as pilot:
        editor = await open_editor(pilot, "shakespeare_char")
        assert "tracing the real step" in panel(editor)
        await wait_for(pilot, lambda: len(runner.calls) == 1)  # the opened shape is being traced
        # While these changes come, the form is never still for the debounce (an hour here, so
        # no stall of a loaded machine between two of them can pass for a settled form).
        app.services.trace_debounce_s = 3600.0
        box = editor.select_field("model.n_layer")
        for text in ("1", "10", "1"):
            box.value = text
            await pilot.pause()
        opened = load_preset("shakespeare_char").model.n_layer
        await wait_for(pilot, lambda: runner.cancelled == [opened])  # the stale trace was stopped
        await wait_for(pilot, lambda: editor.preset.model.n_layer == 1)
        assert len(runner.calls) == 1 and not editor.exact.idle  # one waits for the form to settle
        app.services.trace_debounce_s = 0.05  # the last change, then the form stays still
        box.value = "3"
        runner.release.set()
        await wait_for(pilot, lambda: "(traced)" in panel(editor))
        assert [call[0] for call in runner.calls] == [opened, 3]  # of the settled form alone
        assert editor.preset.model.n_layer == 3


async def test_without_a_tracer_the_panel_says_why_in_one_line_and_keeps_the_estimate():
    calls = []

    def no_compiler(preset, batches, dtype, cancelled) -> TraceOutcome:
        calls.append(preset.name)
        return TraceOutcome(
            reason="no C++ compiler to build the fake-CUDA extension", unavailable=True
        )

    app = app_for_tests(gpu_query=t4, trace_runner=no_compiler, trace_debounce_s=0.01)
    async with app.run_test(size=(80, 24)) as pilot:
        editor = await open_editor(pilot, "shakespeare_char")
        await wait_for(pilot, lambda: "unavailable" in panel(editor))
        text = panel(editor)
        assert "exact figure unavailable (no C++ compiler" in text
        assert "the estimate stands" in text
        assert f"{human_bytes(estimate(editor.preset, editor.gpu).peak_bytes)} (estimate)" in text
        # the machine cannot trace: another shape does not try again
        editor.set_field("model.n_layer", "2")
        await wait_for(pilot, lambda: editor.preset.model.n_layer == 2 and editor.exact.idle)
        assert calls == ["shakespeare_char"]
        assert "exact figure unavailable" in panel(editor)
