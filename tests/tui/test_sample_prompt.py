"""The prompt box on a finished run: g asks for a prompt, a `gpt-cockpit sample` child answers."""

from __future__ import annotations

import sys

import pytest
from helpers import app_for_tests, copy_run, wait_for

from cockpit.tui.screens import sample_prompt
from cockpit.tui.screens.run import RunScreen

CHILDREN = {
    "ok": "import sys; print('prompt was ' + sys.argv[-3])",
    "fails": "import sys; print('gpt-cockpit: error: run has no checkpoint yet', file=sys.stderr); sys.exit(2)",
}


@pytest.mark.parametrize("child", ["ok", "fails"])
async def test_g_samples_from_the_checkpoint_in_a_child(tmp_path, monkeypatch, child):
    asked = []

    def command(run_dir, prompt):
        asked.append((run_dir, prompt))
        return [sys.executable, "-c", CHILDREN[child], prompt, "--tokens", "200"]

    monkeypatch.setattr(sample_prompt, "sample_command", command)
    run_dir = copy_run(tmp_path)
    app = app_for_tests(attach=run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.settled)
        screen = app.screen
        await pilot.press("g")
        await pilot.pause()
        await pilot.press(*"ROMEO:", "enter")
        await wait_for(pilot, lambda: getattr(screen, "sampled", None) is not None)
        await pilot.pause()
        panel = str(screen.query_one("#run-sample").render())
        assert asked == [(run_dir, "ROMEO:")]
        if child == "ok":
            assert screen.sampled == (True, "prompt was ROMEO:\n") and "prompt was ROMEO:" in panel
        else:
            assert screen.sampled[0] is False and "no checkpoint yet" in panel


def test_the_child_is_gpt_cockpit_sample(tmp_path):
    cmd = sample_prompt.sample_command(tmp_path, "hi")
    assert cmd[:4] == [sys.executable, "-m", "cockpit", "sample"] and cmd[5:7] == ["--prompt", "hi"]
