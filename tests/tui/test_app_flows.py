"""Pilot tests of each flow: pick, edit, batch tip, save, launch, watch, stop, attach."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_trainer import use_fake_trainer
from helpers import (
    app_for_tests,
    copy_run,
    fake_gpu,
    fake_launcher,
    notices,
    tiny_preset,
    wait_for,
    write_crashed_run,
)
from textual.widgets import DataTable, Input, Static

from cockpit import rundir
from cockpit.common.format import health_count
from cockpit.plan.presets import load_preset, user_dir
from cockpit.tui.screens.confirm import ConfirmScreen, PromptScreen
from cockpit.tui.screens.editor import EditorScreen
from cockpit.tui.screens.presets import PresetsScreen
from cockpit.tui.screens.run import RunScreen
from cockpit.tui.screens.runs import RunsScreen


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def launch_and_confirm(pilot) -> None:
    """`l`, then `y` to the launch question."""
    await pilot.press("l")
    await pilot.pause()
    assert isinstance(pilot.app.screen, ConfirmScreen)
    await pilot.press("y")
    await pilot.pause()


async def launch_from_presets(pilot, name: str) -> RunScreen:
    """From the presets screen: `name`, `l`, `y`, and the run screen it opens."""
    select_preset(pilot.app.screen, name)
    await launch_and_confirm(pilot)
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunScreen))
    return pilot.app.screen


def value_cell(editor: EditorScreen, path: str) -> object:
    """What the editor's list shows beside a field: its text, and its message when invalid."""
    return editor.query_one(DataTable).get_cell(path, "value")


def select_preset(screen: PresetsScreen, name: str) -> None:
    table = screen.query_one(DataTable)
    table.move_cursor(row=[p.name for p in screen.presets].index(name))


async def test_presets_screen_lists_builtin_and_user_presets():
    tiny_preset("my_tiny")
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.local_gpus is not None)  # the GPU line says none
        screen = app.screen
        assert isinstance(screen, PresetsScreen)
        names = [p.name for p in screen.presets]
        assert "gpt2_124m" in names and "my_tiny" in names
        table = screen.query_one(DataTable)
        row = table.get_row("my_tiny")
        assert "user" in str(row[0]) and str(table.get_row("gpt2_124m")[0]) == "built-in"
        assert "no GPU" in text_of(screen, "#gpu-line")
        select_preset(screen, "gpt2_124m")
        await pilot.pause()
        assert "gpt2_124m" in text_of(screen, "#preset-detail")
        assert str(table.get_row("gpt2_124m")[7]) == "-"  # no GPU: no fit verdict
        before = {name: [str(cell) for cell in table.get_row(name)] for name in names}
        writes: list[str] = []  # the label of each column a cell was written in
        cleared: list[bool] = []
        update_cell, clear = table.update_cell, table.clear
        table.update_cell = lambda row, column, *a, **kw: (  # type: ignore[method-assign]
            writes.append(str(table.columns[column].label)),
            update_cell(row, column, *a, **kw),
        )
        table.clear = lambda *a, **kw: (cleared.append(True), clear(*a, **kw))[1]  # type: ignore
        screen.gpus_known()  # the same GPU (none) again: nothing to write
        assert writes == [] and cleared == []
        await pilot.press("g")  # what-if: the first catalog GPU
        await pilot.pause()
        assert "what-if GPU 1/23: B200" in text_of(screen, "#gpu-line")
        assert str(table.get_row("gpt2_124m")[7]) == "yes"
        assert set(writes) <= {"est. VRAM", "fits"}  # a GPU changes no other column
        await pilot.press("G")  # back to this machine: every cell as it was
        await pilot.pause()
        assert {name: [str(cell) for cell in table.get_row(name)] for name in names} == before


async def test_fit_column_follows_this_machines_gpu():
    app = app_for_tests(gpu_query=lambda: [fake_gpu("NVIDIA T4", 16)])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.local_gpus is not None)
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        assert "NVIDIA T4" in text_of(app.screen, "#gpu-line")
        assert "no" in str(table.get_row("gpt2_124m")[7])  # 97 GiB at batch 32 on a 16 GiB card
        assert str(table.get_row("shakespeare_char")[7]) == "yes"


async def test_editor_shows_a_bad_value_next_to_its_field_and_clears_it():
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        select_preset(app.screen, "shakespeare_char")
        await pilot.press("enter")
        await pilot.pause()
        editor = app.screen
        assert isinstance(editor, EditorScreen)
        box = editor.select_field("model.n_layer")
        assert box.has_focus
        await pilot.press("end", "backspace", "x")
        await pilot.pause()
        error = editor.query_one("#editor-error", Static)
        assert error.display and "whole number" in str(error.render())
        assert "whole number" in str(value_cell(editor, "model.n_layer"))  # beside it in the list
        assert "1 field(s) invalid" in text_of(editor, "#live-panel")
        await pilot.press("down")  # the next field: its own text in the input, no message
        await pilot.pause()
        assert editor.current == "model.n_head" and box.value == "4" and not error.display
        await pilot.press("up")
        await pilot.pause()
        assert editor.current == "model.n_layer" and box.value.endswith("x") and error.display
        # a cross-field rule lands next to the field it names
        box.value = "6"
        editor.set_field("model.n_head", "3")  # 384 / 3: fine alone
        editor.set_field("model.n_embd", "100")  # 100 / 4: fine alone
        await pilot.pause()
        assert "model.n_layer" not in editor.errors
        assert "←" not in str(value_cell(editor, "model.n_layer"))
        assert set(editor.errors) & {"model.n_embd", "model.n_head"}, editor.errors
        editor.set_field("model.n_head", "4")
        editor.set_field("model.n_embd", "384")
        await pilot.pause()
        assert editor.errors == {}
        assert editor.preset.model.n_layer == 6
        await pilot.press("ctrl+r")  # revert
        await pilot.pause()
        assert editor.preset == load_preset("shakespeare_char")
        editor.select_field("model.n_layer")
        assert box.value == str(load_preset("shakespeare_char").model.n_layer)


async def test_batch_suggestion_applies_with_one_key_and_keeps_tokens_per_step():
    app = app_for_tests(gpu_query=lambda: [fake_gpu("NVIDIA T4", 16)])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.local_gpus is not None)
        select_preset(app.screen, "gpt2_124m")
        await pilot.press("enter")
        await pilot.pause()
        editor = app.screen
        before = editor.preset
        assert "does not fit" in text_of(editor, "#live-panel")
        await pilot.press("ctrl+o")
        await pilot.pause()
        after = editor.preset
        assert after.train.batch_size < before.train.batch_size
        assert after.train.grad_accum > before.train.grad_accum
        assert after.tokens_per_step == before.tokens_per_step
        assert editor.field_texts["train.batch_size"] == str(after.train.batch_size)
        assert "fits on NVIDIA T4" in text_of(editor, "#live-panel")


async def test_save_writes_a_user_preset_that_lists_as_user():
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        select_preset(app.screen, "shakespeare_char")
        await pilot.press("enter")
        await pilot.pause()
        editor = app.screen
        editor.set_field("train.lr", "0.0005")
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, PromptScreen)
        prompt = app.screen.query_one(Input)
        assert prompt.value == "shakespeare_char_custom"
        prompt.value = "my_shakespeare"
        await pilot.press("enter")
        await pilot.pause()
        path = user_dir() / "my_shakespeare.json"
        body = json.loads(
            path.read_text()
        )  # its own full values: a change to the base leaves it be
        assert "extends" not in body and body["train"]["lr"] == 0.0005
        assert body["model"] == load_preset("shakespeare_char").to_dict()["model"]
        saved = load_preset("my_shakespeare")
        assert saved.train.lr == 0.0005 and not saved.builtin
        # its description says what changed, the title names the saved user preset, not edited
        assert saved.description.endswith("(edited: train.lr=0.0005)")
        title = text_of(editor, "#editor-title")
        assert "my_shakespeare · user preset" in title and "edited" not in title
        await pilot.press("escape")
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        assert "user" in str(table.get_row("my_shakespeare")[0])


async def test_saving_with_a_bad_field_refuses(tmp_path):
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        app.screen.set_field("train.lr", "fast")
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, EditorScreen)  # no name prompt
        assert not list(user_dir().glob("*.json")) if user_dir().exists() else True


async def test_duplicate_opens_an_unsaved_copy():
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        select_preset(app.screen, "shakespeare_char")
        await pilot.press("d")
        await pilot.pause()
        editor = app.screen
        assert isinstance(editor, EditorScreen)
        assert editor.preset.name == "shakespeare_char_copy" and not editor.preset.builtin
        assert not (user_dir() / "shakespeare_char_copy.json").exists()


async def test_launch_watch_and_stop_a_run(monkeypatch, tmp_path):
    use_fake_trainer(monkeypatch, step_s=0.01)
    tiny_preset("tiny_test", max_steps=5000)
    calls: list[Path] = []
    app = app_for_tests(
        launcher=fake_launcher(calls),
        runs_dir=tmp_path / "runs",
        status_poll_s=0.2,
        clock=time.time,
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = await launch_from_presets(pilot, "tiny_test")
        assert calls and screen.run_dir == calls[0]
        await wait_for(pilot, lambda: screen.history.step >= 20)
        first = screen.history.step
        await wait_for(pilot, lambda: screen.history.step >= first + 20)
        await wait_for(
            pilot,
            lambda: (
                "running" in text_of(screen, "#run-status")
                and "/5000" in text_of(screen, "#run-status")
            ),
        )
        assert screen.redraws >= 2
        await pilot.press("s")
        # run.json (polled for status) and the end event (tailed) arrive separately: wait for both
        await wait_for(
            pilot, lambda: screen.status == "stopped" and screen.history.end is not None, timeout=15
        )
        assert screen.history.end.reason == "stopped"
        await wait_for(pilot, lambda: "stopped" in text_of(screen, "#run-status"))
        assert "elapsed 0.0s" not in text_of(screen, "#run-status")
        await pilot.press("d")  # detach: back to the presets
        await pilot.pause()
        assert isinstance(app.screen, PresetsScreen)


async def test_kill_asks_first(monkeypatch, tmp_path):
    use_fake_trainer(monkeypatch, step_s=0.01, ignore_term=1)
    tiny_preset("tiny_test", max_steps=100000)
    calls: list[Path] = []
    app = app_for_tests(
        launcher=fake_launcher(calls), runs_dir=tmp_path / "runs", status_poll_s=0.2
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = await launch_from_presets(pilot, "tiny_test")
        await wait_for(pilot, lambda: screen.status == "running")
        await pilot.press("k")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is screen)
        polls = screen.status_polls  # two polls after the answer: a kill would show by then
        await wait_for(pilot, lambda: screen.status_polls >= polls + 2)
        assert screen.status == "running"
        await pilot.press("k")
        await pilot.pause()
        await pilot.press("y")
        # SIGKILL leaves no end record, yet a kill asked for is listed as killed, not crashed
        await wait_for(pilot, lambda: screen.status == "killed", timeout=10)
        await wait_for(pilot, lambda: "killed" in text_of(screen, "#run-status"))
        assert not any("crashed" in n for n in notices(app))


async def test_launch_that_does_not_fit_asks_first(monkeypatch, tmp_path):
    calls: list[Path] = []
    app = app_for_tests(
        launcher=fake_launcher(calls),
        runs_dir=tmp_path / "runs",
        gpu_query=lambda: [fake_gpu("NVIDIA T4", 16)],
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.local_gpus is not None)
        select_preset(app.screen, "gpt2_124m")
        await pilot.press("l")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "does not fit" in str(app.screen.query_one("#question", Static).render())
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, PresetsScreen) and calls == []


async def test_a_failed_launch_is_a_message_not_a_crash(tmp_path):
    def broken(preset, runs_dir):
        raise OSError("disk full")

    app = app_for_tests(launcher=broken)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        select_preset(app.screen, "shakespeare_char")
        await launch_and_confirm(pilot)
        await wait_for(pilot, lambda: any("disk full" in n for n in notices(app)))
        assert isinstance(app.screen, PresetsScreen)


async def test_attach_to_a_finished_run_rebuilds_its_history(tmp_path):
    run_dir = copy_run(tmp_path)
    app = app_for_tests(attach=run_dir, gpu_query=lambda: [fake_gpu()])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.settled)
        screen = app.screen
        h = screen.history
        assert h.step == 250 and h.end.reason == "finished"
        assert len(h.loss) == 250 and len(h.val_loss) == 5
        assert h.best_val_loss == pytest.approx(3.215954303741455)
        status = text_of(screen, "#run-status")
        assert "finished" in status and "250/250" in status and "ETA -" in status
        assert f"health {health_count(h.warnings)}" in text_of(screen, "#run-health")
        assert "warning" in health_count(h.warnings) and "tip:" in text_of(screen, "#run-health")
        assert "return self.value" in text_of(screen, "#run-sample")
        assert "87%" in text_of(screen, "#run-gpu") and "64°C" in text_of(screen, "#run-gpu")
        assert "end: finished at step 250" in text_of(screen, "#run-log")
        # a finished run offers neither stop nor kill, nor resume (it reached its end)
        keys = {b.binding.action for b in screen.active_bindings.values() if b.enabled}
        assert {"stop", "kill", "resume"}.isdisjoint(keys) and "detach" in keys
        await pilot.press("s")
        await pilot.pause()
        assert screen.status == "finished" and not notices(app)


async def test_recorded_spike_shows_its_warning_at_the_right_step(tmp_path):
    """The recorded run (a too-high lr) spikes at step 90: the app lists loss_spike there, with its tip."""
    run_dir = copy_run(tmp_path)
    app = app_for_tests(attach=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.settled)
        assert [
            (w.rule, w.step) for w in app.screen.history.warnings if w.rule == "loss_spike"
        ] == [("loss_spike", 90)]
        health = text_of(app.screen, "#run-health")
        assert "loss_spike @90" in health and "train.lr" in health


async def test_attach_to_a_crashed_run_shows_crashed_within_two_seconds(tmp_path):
    run_dir = write_crashed_run(tmp_path)
    app = app_for_tests(attach=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        screen = app.screen
        await wait_for(pilot, lambda: "crashed" in text_of(screen, "#run-status"), timeout=2.0)
        await wait_for(pilot, lambda: screen.settled)  # its history and the GPUs: read in threads
        assert screen.history.step > 100 and screen.history.end is None
        assert "no GPU" in text_of(screen, "#run-gpu")


async def test_a_live_run_whose_process_dies_turns_crashed(monkeypatch, tmp_path):
    use_fake_trainer(monkeypatch, step_s=0.01, die_at=30)
    tiny_preset("tiny_test", max_steps=1000)
    app = app_for_tests(launcher=fake_launcher([]), runs_dir=tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = await launch_from_presets(pilot, "tiny_test")
        await wait_for(pilot, lambda: screen.history.step >= 30)
        await wait_for(pilot, lambda: "crashed" in text_of(screen, "#run-status"), timeout=4.0)


async def test_bad_lines_are_skipped_and_counted(tmp_path):
    run_dir = copy_run(tmp_path)
    events = run_dir / "events.jsonl"
    lines = events.read_text().splitlines()
    lines.insert(10, '{"event": "step", "loss": ')
    lines.insert(20, "\x00\x01 not json")
    events.write_text("\n".join(lines) + "\n")
    app = app_for_tests(attach=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.settled)
        assert app.screen.history.step == 250
        assert "2 bad line(s) skipped" in text_of(app.screen, "#run-status")


async def test_runs_screen_lists_runs_and_attaches(tmp_path):
    copy_run(tmp_path)
    write_crashed_run(tmp_path / "other")
    app = app_for_tests(runs_dir=tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.summaries)
        table = app.screen.query_one(DataTable)
        row = table.get_row_at(0)
        assert "finished" in str(row[0]) and row[1] == "spike_run" and row[2] == "250/250"
        assert row[3] == "3.2160" and row[4] == "1m"  # fixed clock: 88 s after the last update
        assert text_of(app.screen, "#runs-where") == f"1 run from {tmp_path / 'runs'}"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.settled)
        assert app.screen.run_dir.name == "finished_run"
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)


def test_cmd_app_attach_reads_args(monkeypatch, tmp_path):
    """`gpt-cockpit attach RUN` hands cmd_app the run dir; the app opens on its run screen."""
    import argparse

    from cockpit.tui import app as app_module

    seen = {}

    def fake_run(self):
        seen["attach"] = self.attach_dir
        seen["runs_dir"] = self.services.runs_dir

    monkeypatch.setattr(app_module.CockpitApp, "run", fake_run)
    args = argparse.Namespace(attach=str(tmp_path / "r1"), runs_dir=str(tmp_path))
    assert app_module.cmd_app(args) == 0
    assert seen == {"attach": tmp_path / "r1", "runs_dir": tmp_path}


def test_the_app_process_never_imports_torch(tmp_path):
    run_dir = copy_run(tmp_path)
    code = f"""
import asyncio, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from helpers import app_for_tests, wait_for
from cockpit.tui.screens.run import RunScreen
async def main():
    app = app_for_tests(attach={str(run_dir)!r})
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.settled)
        await pilot.press("escape", "enter")
        await pilot.pause()
asyncio.run(main())
assert "torch" not in sys.modules, "torch was imported"
assert "textual" in sys.modules
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_default_launcher_refuses_a_missing_data_source_before_starting(tmp_path):
    from cockpit.plan.presets import apply_overrides, load_preset
    from cockpit.rundir import RunError
    from cockpit.tui.app import default_launcher

    preset = apply_overrides(
        load_preset("tiny_char"), {"data.source": str(tmp_path / "missing.txt")}
    )
    with pytest.raises(RunError, match="data.source: no such file or folder"):
        default_launcher(preset, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


async def test_resume_a_stopped_run_from_the_run_screen(monkeypatch, tmp_path):
    use_fake_trainer(monkeypatch, step_s=0.01)
    tiny_preset("tiny_test", max_steps=100_000)  # far past the stop, however late it lands
    calls: list[Path] = []
    app = app_for_tests(
        launcher=fake_launcher(calls),
        runs_dir=tmp_path / "runs",
        status_poll_s=0.2,
        clock=time.time,
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = await launch_from_presets(pilot, "tiny_test")
        await wait_for(pilot, lambda: screen.history.step >= 5)
        await pilot.press("s")
        # run.json (polled for status) and the end event (tailed) arrive separately: wait for both
        await wait_for(
            pilot, lambda: screen.status == "stopped" and screen.history.end is not None, timeout=30
        )
        stopped_at = screen.history.step
        # the launched length cut to an end the resumed run reaches in half a second
        end_at = stopped_at + 50
        launched = json.loads((screen.run_dir / rundir.PRESET_JSON).read_text())
        launched["train"].update(max_steps=end_at, warmup_steps=10)  # warmup ends before it
        (screen.run_dir / rundir.PRESET_JSON).write_text(json.dumps(launched))
        await pilot.press("u")
        await wait_for(pilot, lambda: screen.status == "finished", timeout=30)
        # run.json says finished a moment before the tail reads the end record: wait for both
        await wait_for(
            pilot,
            lambda: screen.history.end is not None and screen.history.end.reason == "finished",
        )
        assert screen.history.step == end_at


async def test_delete_a_run_from_the_runs_screen_asks_first(tmp_path):
    run_dir = copy_run(tmp_path)
    app = app_for_tests(runs_dir=tmp_path / "runs")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.summaries)
        runs_screen = app.screen
        await pilot.press("delete")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "cannot be undone" in str(app.screen.query_one("#question", Static).render())
        await pilot.press("n")
        await pilot.pause()
        assert run_dir.is_dir()
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: not runs_screen.summaries)
        assert not run_dir.exists() and app.screen is runs_screen
