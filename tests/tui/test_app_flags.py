"""`gpt-cockpit --preset X --set K=V --max-steps N` without --no-ui: the app opens on that preset
with the flags applied, a bad value is exit 2 before it opens, and unused flags are named."""

from __future__ import annotations

import pytest
from helpers import app_for_tests, notices, wait_for

from cockpit.__main__ import main
from cockpit.tui import app as app_module
from cockpit.tui.flags import flags_for_app
from cockpit.tui.screens.editor import EditorScreen


@pytest.fixture
def opened(monkeypatch) -> list:
    """Stand in for App.run: record each app that would have opened."""
    apps: list = []
    monkeypatch.setattr(app_module.CockpitApp, "run", lambda self: apps.append(self))
    return apps


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "train.lr=abc"], "train.lr: must be a number, not the string 'abc'"),
        (["--set", "train.nope=1"], "train.nope"),
        (["--max-steps", "0"], "train.max_steps: must be at least 1"),
        (["--gpu", "Z99"], "--gpu: unknown GPU 'Z99'"),
        (["--data", "/no/such/file.txt"], "--data: no such file or folder"),
    ],
)
def test_a_bad_flag_is_exit_2_before_the_app_opens(opened, capsys, argv, message):
    assert main(["--preset", "tiny_char", "--max-steps", "5", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("error:") == 1
    assert opened == []


def test_good_flags_reach_the_app_and_unused_ones_are_named(opened, capsys, tmp_path):
    argv = ["--preset", "tiny_char", "--max-steps", "5", "--set", "train.lr=3e-4"]
    assert main([*argv, "--gpu", "T4", "--run-dir", str(tmp_path / "r"), "--device", "cpu"]) == 0
    (app,) = opened
    start = app.start
    assert start.preset.name == "tiny_char" and start.preset.train.max_steps == 5
    assert start.preset.train.lr == 3e-4 and start.base.train.lr != 3e-4
    assert start.gpu_choice >= 0 and start.unused == [
        "--device cpu",
        f"--run-dir {tmp_path / 'r'}",
    ]
    err = capsys.readouterr().err
    assert "not used by the app: --device cpu --run-dir" in err and "--no-ui" in err


def test_no_flags_open_the_presets_screen_as_before(opened):
    assert main([]) == 0
    assert opened[0].start.preset is None and opened[0].start.unused == []


async def test_the_app_opens_the_editor_with_the_flags_applied(monkeypatch):
    import argparse

    args = argparse.Namespace(
        preset="tiny_char", overrides=["train.lr=3e-4"], max_steps=5, data=None, gpu="T4"
    )
    start = flags_for_app(args)
    app = app_for_tests(start=start)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, EditorScreen))
        editor = app.screen
        assert editor.field_texts["train.max_steps"] == "5"
        assert editor.field_texts["train.lr"] == "0.0003"
        assert editor.gpu_choice == start.gpu_choice
        title = str(editor.query_one("#editor-title").render())
        assert "tiny_char · built-in (edited)" in title  # still the built-in, with edits
        await wait_for(
            pilot,
            lambda: any("--max-steps 5" in m and "ctrl+l launches it" in m for m in notices(app)),
        )
        await pilot.press("ctrl+r")  # revert: the preset as named, before the flags
        await pilot.pause()
        assert editor.select_field("train.max_steps").value != "5"
