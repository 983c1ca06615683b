"""The launch question offers the number of training processes (torchrun ranks): `p` cycles it."""

from __future__ import annotations

from pathlib import Path

from helpers import app_for_tests, tiny_preset

from cockpit.tui.screens.confirm import LaunchScreen, nproc_choices
from cockpit.tui.screens.presets import PresetsScreen


def _launcher(calls: list[tuple[str, int]]):
    def launch(preset, runs_dir: Path | None, nproc: int = 1) -> Path:
        calls.append((preset.name, nproc))
        return Path("/nonexistent")

    return launch


async def _launch(app, keys: str) -> None:
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, PresetsScreen)
        table = screen.query_one("DataTable")
        table.move_cursor(row=[p.name for p in screen.presets].index("tiny_nproc"))
        await pilot.press("l")
        await pilot.pause()
        assert isinstance(app.screen, LaunchScreen)
        assert "processes: " in str(app.screen.query_one("#nproc").render())
        for key in keys:
            await pilot.press(key)
        await pilot.pause()


async def test_p_then_yes_launches_two_ranks():
    tiny_preset("tiny_nproc")
    calls: list[tuple[str, int]] = []
    await _launch(app_for_tests(launcher=_launcher(calls)), "py")
    assert calls == [("tiny_nproc", 2)]


async def test_yes_alone_launches_one_process_and_no_launches_nothing():
    tiny_preset("tiny_nproc")
    calls: list[tuple[str, int]] = []
    await _launch(app_for_tests(launcher=_launcher(calls)), "y")
    assert calls == [("tiny_nproc", 1)]
    calls.clear()
    await _launch(app_for_tests(launcher=_launcher(calls)), "ppn")
    assert calls == []


def test_the_choices_go_up_to_every_gpu():
    assert nproc_choices(0) == [1, 2] and nproc_choices(1) == [1]
    assert nproc_choices(4) == [1, 2, 3, 4]


def test_the_question_gives_the_plans_memory_on_each_gpu():
    from cockpit.plan.estimate import estimate
    from cockpit.plan.gpu import lookup_gpu
    from cockpit.plan.presets import apply_overrides, load_preset
    from cockpit.tui.screens.confirm import per_gpu_memory

    gpu = lookup_gpu("A100-40GB")
    ddp = load_preset("gpt2_124m")
    fsdp = apply_overrides(ddp, {"train.parallel": "fsdp"})
    assert per_gpu_memory(ddp, estimate(ddp, None)) is None  # a CPU plan has no GPU memory
    words = per_gpu_memory(ddp, estimate(ddp, gpu))
    one, two = words(1), words(2)
    assert one.startswith("peak ") and "on each GPU of" in one and one != two  # DDP's buckets
    assert words(2) != per_gpu_memory(fsdp, estimate(fsdp, gpu))(2)  # FSDP shards instead


async def test_a_plan_over_this_machines_memory_is_shown_and_yes_forces_the_launch(monkeypatch):
    """The dialog names the memory problem (prelaunch.plan_problem) and asks to launch anyway;
    yes hands the launcher force=True, no launches nothing."""
    from cockpit.runs import prelaunch

    tiny_preset("tiny_nproc")
    problem = "host RAM: a CPU run of tiny_nproc needs 99.0 GiB, 8.0 GiB available"
    monkeypatch.setattr(prelaunch, "plan_problem", lambda *a: problem)
    calls: list[tuple[str, int, bool]] = []

    def launch(preset, runs_dir, nproc: int = 1, force: bool = False) -> Path:
        calls.append((preset.name, nproc, force))
        return Path("/nonexistent")

    app = app_for_tests(launcher=launch)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        table = screen.query_one("DataTable")
        table.move_cursor(row=[p.name for p in screen.presets].index("tiny_nproc"))
        await pilot.press("l")
        await pilot.pause()
        question = str(app.screen.query_one("#question").render())
        assert "does not fit" in question and "needs 99.0 GiB" in question
        assert "Launch anyway" in question
        await pilot.press("y")
        await pilot.pause()
    assert calls == [("tiny_nproc", 1, True)]


def test_each_number_of_ranks_is_planned_on_the_smallest_gpu_it_uses():
    """A T4 beside an H100 (the H100 is cuda:0): one process plans on the H100, two on the T4."""
    from helpers import fake_gpu

    from cockpit.common.format import human_bytes
    from cockpit.plan.estimate import estimate
    from cockpit.plan.presets import load_preset
    from cockpit.tui.screens.confirm import per_gpu_memory

    app = app_for_tests()
    app.local_gpus = [fake_gpu("NVIDIA H100 80GB HBM3", 80), fake_gpu("Tesla T4", 16)]
    assert app.local_gpu_spec().name == "NVIDIA H100 80GB HBM3"
    assert app.local_gpu_spec(2).name == "Tesla T4" and app.local_gpu_spec(4).name == "Tesla T4"
    preset = load_preset("gpt2_124m")
    words = per_gpu_memory(preset, estimate(preset, app.local_gpu_spec()), app.local_gpu_spec)
    assert words(1).endswith(f"of {human_bytes(80 * 2**30)}")
    assert words(2).endswith(f"of {human_bytes(16 * 2**30)}")
    app.local_gpus = []
    assert app.local_gpu_spec() is None
