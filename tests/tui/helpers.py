"""Shared pieces of the app tests: fixed GPU facts, a fixed clock, run directories, waiting."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path

from cockpit import rundir, runs
from cockpit.plan.gpu import GpuStatus
from cockpit.plan.presets import Preset, save_user_preset
from cockpit.plan.trace_child import TraceOutcome
from cockpit.tui.app import CockpitApp, make_app

DATA = Path(__file__).parent / "data"
GIB = 1024**3
FIXED_NOW = 1795283600.0  # a little after the fixed run ended, so ages read the same every time


def fake_gpu(name: str = "NVIDIA T4", memory_gib: int = 16) -> GpuStatus:
    """A GPU that NVML would report, with fixed sensor readings."""
    return GpuStatus(
        0, name, memory_gib * GIB, 3 * GIB, (memory_gib - 3) * GIB, 87.0, 64.0, 61.5, 70.0, (7, 5)
    )


def no_gpu() -> list[GpuStatus]:
    return []


def fixed_clock() -> float:
    return FIXED_NOW


def copy_run(tmp_path: Path, name: str = "finished_run") -> Path:
    """A copy of a run directory from tests/tui/data."""
    dest = tmp_path / "runs" / name
    shutil.copytree(DATA / name, dest)
    return dest


def tiny_preset(name: str = "tiny_test", max_steps: int = 400) -> Preset:
    """A small user preset (1 layer, width 32, block 32, bytes)."""
    from cockpit.plan.presets import apply_overrides, load_preset

    base = load_preset("tiny_char")
    preset = apply_overrides(
        base,
        {
            "name": name,
            "model.n_layer": 1,
            "model.n_head": 2,
            "model.n_embd": 32,
            "model.block_size": 32,
            "data.tokenizer": "byte",
            "model.vocab_size": 256,
            "train.max_steps": max_steps,
            "train.log_interval": 5,
            "train.eval_interval": 50,
            "train.batch_size": 4,
        },
    )
    save_user_preset(preset)
    return preset


def fake_launcher(calls: list[Path]) -> Callable[[Preset, Path | None], Path]:
    """A launcher that starts tests/fake_trainer.py (runs.child_command patched by the test)."""

    def launch(preset: Preset, runs_dir: Path | None) -> Path:
        run_dir = rundir.create_run_dir(preset, root=runs_dir)
        runs.launch(run_dir, detach=True)
        calls.append(run_dir)
        return run_dir

    return launch


def no_tracer(_preset, _batches, _dtype, _cancelled) -> TraceOutcome:
    """The tracer as on a machine without a compiler: the app tests never start the real child."""
    return TraceOutcome(reason="no tracer in the app tests", unavailable=True)


def app_for_tests(**kwargs) -> CockpitApp:
    """The app with no GPU, a fixed clock, no tracer and fast polls unless a test says otherwise;
    it keeps every notification it is asked to show (`notices`)."""
    kwargs.setdefault("gpu_query", no_gpu)
    kwargs.setdefault("clock", fixed_clock)
    kwargs.setdefault("trace_runner", no_tracer)
    app = make_app(**kwargs)
    said: list[str] = []
    notify = app.notify

    def recording(message, *args, **kwargs):  # every screen's notify reaches the app's
        said.append(str(message))
        return notify(message, *args, **kwargs)

    app.notify = recording  # type: ignore[method-assign]
    app.said = said  # type: ignore[attr-defined]
    return app


def steady_cursors(app: CockpitApp) -> None:
    """Stop every text cursor in the app under test from blinking.

    A blinking cursor is drawn for half a second, then hidden for half a second, so a snapshot
    would show it or not depending on when it is taken. With blinking off, a focused input shows
    its cursor all the time. Only the test's app changes: the app blinks as usual for its users.
    """
    for screen in app.screen_stack:
        for widget in screen.query("*"):
            if hasattr(type(widget), "cursor_blink"):  # Input, TextArea
                widget.cursor_blink = False


async def wait_for(pilot, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the app run until `condition()` holds; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {condition}")
        await pilot.pause(0.05)


def notices(app: CockpitApp) -> list[str]:
    """Every notification the app was asked to show so far, as it was asked: the app's own list
    drops each once its timeout passes, which a loaded machine can let pass before a check."""
    return list(app.said)  # type: ignore[attr-defined]


def write_crashed_run(tmp_path: Path) -> Path:
    """A run whose run.json says running but whose process is long gone."""
    run_dir = copy_run(tmp_path)
    info = json.loads((run_dir / "run.json").read_text())
    info.update(status="running", pid=2**22 + 12345, pid_start_time=1.0)
    info.pop("end_reason", None)
    (run_dir / "run.json").write_text(json.dumps(info))
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    (run_dir / "events.jsonl").write_text(
        "\n".join(lines[:150]) + "\n"
    )  # no end record: it died mid-run
    return run_dir
