"""Nothing is lost or started by a stray key: launch, leaving the editor, saving over a name."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import app_for_tests, fake_gpu, notices, wait_for
from test_app_flows import select_preset
from textual.widgets import DataTable, Input, Static

from cockpit.plan.estimate import estimate
from cockpit.plan.gpu import CATALOG
from cockpit.plan.presets import list_presets, load_preset, user_dir
from cockpit.tui.screens.confirm import ConfirmScreen, PromptScreen
from cockpit.tui.screens.editor import EditorScreen
from cockpit.tui.screens.presets import PresetsScreen


def question(app) -> str:
    return str(app.screen.query_one("#question", Static).render())


async def test_the_cursor_starts_on_the_smallest_preset():
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        smallest = min(list_presets(), key=lambda p: estimate(p, None).params)
        assert screen.selected().name == smallest.name
        assert screen.query_one(DataTable).cursor_row == [p.name for p in screen.presets].index(
            smallest.name
        )


async def test_a_launch_asks_with_device_eta_and_verdict_and_no_starts_nothing():
    calls: list[Path] = []
    app = app_for_tests(
        launcher=lambda preset, runs_dir: calls.append(preset) or Path("/nonexistent"),
        gpu_query=lambda: [fake_gpu("NVIDIA T4", 16)],
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.local_gpus is not None)
        select_preset(app.screen, "shakespeare_char")
        await pilot.press("l")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        text = question(app)
        verdict = estimate(load_preset("shakespeare_char"), app.local_gpu_spec()).verdict
        assert "Launch shakespeare_char?" in text and "NVIDIA T4" in text and "ETA about" in text
        assert verdict.splitlines()[0] in text
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, PresetsScreen) and calls == []


async def test_a_launch_on_a_machine_without_a_gpu_says_cpu():
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.local_gpus is not None)
        await pilot.press("l")
        await pilot.pause()
        assert "CPU (no GPU found)" in question(app)
        await pilot.press("escape")


async def open_editor(pilot, name: str = "shakespeare_char") -> EditorScreen:
    select_preset(pilot.app.screen, name)
    await pilot.press("enter")
    await pilot.pause()
    assert isinstance(pilot.app.screen, EditorScreen)
    return pilot.app.screen


async def test_escape_with_unsaved_edits_asks_and_without_leaves():
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await open_editor(pilot)
        await pilot.press("escape")  # nothing edited: straight back
        await pilot.pause()
        assert isinstance(app.screen, PresetsScreen)
        editor = await open_editor(pilot)
        editor.set_field("train.lr", "0.0007")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and "Discard" in question(app)
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is editor
        assert editor.field_texts["train.lr"] == "0.0007"
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert isinstance(app.screen, PresetsScreen)


async def save_as(pilot, name: str) -> None:
    await pilot.press("ctrl+s")
    await pilot.pause()
    assert isinstance(pilot.app.screen, PromptScreen)
    pilot.app.screen.query_one(Input).value = name
    await pilot.press("enter")
    await pilot.pause()


async def test_saving_under_a_built_in_name_asks_first():
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        editor = await open_editor(pilot)
        editor.set_field("train.lr", "0.0007")
        await pilot.pause()
        await save_as(pilot, "tiny_char")
        assert isinstance(app.screen, ConfirmScreen) and "built-in" in question(app)
        await pilot.press("n")
        await pilot.pause()
        assert not (user_dir() / "tiny_char.json").exists()
        await save_as(pilot, "tiny_char")
        await pilot.press("y")
        await pilot.pause()
        assert json.loads((user_dir() / "tiny_char.json").read_text())["train"]["lr"] == 0.0007
        await pilot.press("escape")  # saved: nothing to ask
        await pilot.pause()
        assert isinstance(app.screen, PresetsScreen)


async def test_saving_over_another_user_preset_asks_first():
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await open_editor(pilot)
        await save_as(pilot, "mine")  # a new name: no question
        assert (user_dir() / "mine.json").exists() and isinstance(app.screen, EditorScreen)
        await pilot.press("escape")
        await pilot.pause()
        editor = await open_editor(pilot, "tiny_char")
        editor.set_field("train.lr", "0.0009")
        await pilot.pause()
        await save_as(pilot, "mine")
        assert isinstance(app.screen, ConfirmScreen) and "Replace" in question(app)
        await pilot.press("n")
        await pilot.pause()
        assert load_preset("mine").train.lr != 0.0009


async def test_a_saved_duplicate_keeps_its_own_full_values():
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        select_preset(app.screen, "tiny_char")
        await pilot.press("d")
        await pilot.pause()
        await save_as(pilot, "tiny_char_copy")
        body = json.loads((user_dir() / "tiny_char_copy.json").read_text())
        assert "extends" not in body
        base = load_preset("tiny_char").to_dict()
        assert body["train"] == base["train"] and body["model"] == base["model"]


async def test_arrow_keys_move_between_fields():
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        editor = await open_editor(pilot)
        first, box = editor.current, app.focused
        await pilot.press("down")
        assert editor.current == editor.paths[editor.paths.index(first) + 1]
        assert app.focused is box and box.value == editor.field_texts[editor.current]
        await pilot.press("pagedown")
        assert editor.current == editor.paths[editor.paths.index(first) + 11]
        await pilot.press("pageup", "up")
        assert editor.current == first and app.focused is box
        await pilot.press("enter")  # Enter takes the value and goes to the next field
        assert editor.current == editor.paths[editor.paths.index(first) + 1]
        assert editor is app.screen


async def test_a_broken_user_preset_file_is_a_notification():
    user_dir().mkdir(parents=True, exist_ok=True)
    (user_dir() / "wrong.json").write_text("{not json")
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: any("skipped wrong.json" in n for n in notices(app)))
        detail = str(app.screen.query_one("#preset-detail", Static).render())
        assert "1 preset file(s) do not load" in detail


async def test_moving_the_cursor_or_the_gpu_reads_no_preset_file_and_coming_back_does(
    monkeypatch,
):
    from cockpit.plan import presets as store

    reads: list[Path] = []
    original = store.load_preset_file

    def counted(path, **kwargs):
        reads.append(Path(path))
        return original(path, **kwargs)

    from cockpit.tui.screens import presets as presets_screen

    estimated: list[tuple[str, str | None]] = []  # (preset, GPU) of each estimate made
    estimate_once = presets_screen.estimate

    def counted_estimate(preset, gpu):
        estimated.append((preset.name, gpu and gpu.name))
        return estimate_once(preset, gpu)

    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.local_gpus is not None)
        screen = app.screen
        monkeypatch.setattr(store, "load_preset_file", counted)
        monkeypatch.setattr(presets_screen, "estimate", counted_estimate)
        first = screen.selected().name
        await pilot.press("down", "down", "up")
        detail = str(screen.query_one("#preset-detail", Static).render())
        assert screen.selected().name != first and screen.selected().name in detail
        assert reads == []  # the files were read with the list, not again per highlighted row
        assert estimated == []  # nor estimated again: the list's estimates are kept
        await pilot.press("g")  # a what-if GPU: every preset estimated on it, once
        await wait_for(pilot, lambda: screen.gpu_choice == 0)
        assert sorted(estimated) == sorted((p.name, CATALOG[0].name) for p in screen.presets)
        await pilot.press("G", "g", "G")  # this machine and the what-if again: both seen
        await wait_for(pilot, lambda: screen.gpu_choice == -1)
        assert len(estimated) == len(screen.presets) and reads == []
        await pilot.press("enter")  # the editor, and back: a save there may have added one
        await wait_for(pilot, lambda: isinstance(app.screen, EditorScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen and reads)
        assert {p.stem for p in reads} >= {p.name for p in screen.presets}
        again = [name for name, gpu in estimated[len(screen.presets) :] if gpu is None]
        assert sorted(again) == sorted(p.name for p in screen.presets)  # read again: estimated


async def test_the_launch_dialog_sets_a_short_try_and_a_time_limit():
    launched = []

    def launcher(preset, runs_dir):
        launched.append(preset)
        raise OSError("not in this test")

    app = app_for_tests(launcher=launcher)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        select_preset(app.screen, "shakespeare_char")  # 2000 steps, warmup 100
        await pilot.press("l")
        await pilot.pause()
        limits = app.screen.query_one("#limits", Static)
        assert "steps: 2,000" in str(limits.render()) and "time limit: none" in str(limits.render())
        await pilot.press("s", "s", "s", "t")  # 2000 -> 1000 -> 200 -> 50; none -> 5m
        await pilot.pause()
        assert "steps: 50 (a try)" in str(limits.render()) and "5m" in str(limits.render())
        await pilot.press("y")
        await pilot.pause()
    (preset,) = launched
    assert preset.train.max_steps == 50 and preset.train.max_time_s == 300.0
    assert preset.train.warmup_steps < 50  # the schedule shrank to fit, as --max-steps does


async def test_G_goes_back_through_the_catalog():
    from cockpit.plan.gpu import CATALOG

    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        await pilot.press("G")
        assert screen.gpu_choice == len(CATALOG) - 1 and "T4" in screen.gpu.name
        await pilot.press("g")
        assert screen.gpu_choice == -1  # past the end: this machine again
        await pilot.press("g", "G")
        assert screen.gpu_choice == -1
