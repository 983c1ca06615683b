"""The editor with your own model (model.arch = PATH.py:ClassName): its parameters and FLOPs show
as measured once the tracer child (faked here: no torch, and the file is never imported) has
measured them beside its trace, and say so."""

from __future__ import annotations

import json

from helpers import app_for_tests, fake_gpu, wait_for
from textual.widgets import DataTable, Static

from cockpit.common.format import human_count
from cockpit.plan import presets
from cockpit.plan.trace_child import TraceOutcome
from cockpit.tui.screens.editor import EditorScreen

FIGURES = {
    "params": 123_456,
    "matrix_params": 100_000,
    "embedding_params": 20_000,
    "matmul_params": 110_000,
    "flops_per_token": 987_654.0,
    "seconds": 0.1,
}


def fake_trace(calls: list[str]):
    def runner(preset, batches, dtype, cancelled) -> TraceOutcome:
        calls.append(preset.model.arch)
        points = [
            {
                "batch": b,
                "peak_bytes": 1_000_000 * b,
                "reserved_bytes": 0,
                "reserved_plain_bytes": 1_100_000 * b,  # the allocator model's, in each mode
                "reserved_expandable_bytes": 1_050_000 * b,
                "peak_op": "fake",
                "by_category": {"activations": 1_000_000 * b},
            }
            for b in batches
        ]
        return TraceOutcome(points=points, figures=dict(FIGURES))

    return runner


async def test_the_editor_says_the_figures_of_your_own_model_are_measured(tmp_path):
    model = tmp_path / "mine.py"
    model.write_text("this file is never imported here\n")
    folder = presets.user_dir()
    folder.mkdir(parents=True, exist_ok=True)
    body = {"name": "mine", "model": {"arch": f"{model}:Mine", "n_layer": 2, "gate": 0.5}}
    (folder / "mine.json").write_text(json.dumps(body))
    calls: list[str] = []
    app = app_for_tests(
        gpu_query=lambda: [fake_gpu("NVIDIA T4", 16)],
        trace_runner=fake_trace(calls),
        trace_debounce_s=0.01,
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: pilot.app.local_gpus is not None)
        table = pilot.app.screen.query_one(DataTable)
        table.move_cursor(row=[p.name for p in pilot.app.screen.presets].index("mine"))
        await pilot.press("enter")
        await pilot.pause()
        editor = pilot.app.screen
        assert isinstance(editor, EditorScreen)

        def panel() -> str:
            return str(editor.query_one("#live-panel", Static).render())

        await wait_for(pilot, lambda: "params and FLOPs measured" in panel())
        text = panel()
        assert f"params {human_count(FIGURES['params'], 2)}" in text
        assert "counted on the meta device" in text and "(traced)" in text
        assert calls == [f"{model}:Mine"]
