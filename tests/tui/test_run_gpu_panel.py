"""The run screen's GPU panel: every GPU of the node, and the per-GPU estimate on each GPU a
run's ranks use (GPU0 alone for a one-process run)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from helpers import app_for_tests, copy_run, fake_gpu, wait_for
from textual.widgets import Static

from cockpit.tui.screens.run import RunScreen


def two_gpus():
    gpu = fake_gpu("NVIDIA A100-SXM4-40GB", 40)
    return [gpu, dataclasses.replace(gpu, index=1)]


@pytest.mark.parametrize("world_size, with_estimate", [(None, 1), (2, 2)])
async def test_each_gpu_of_the_run_shows_the_estimate(tmp_path, world_size, with_estimate):
    run_dir = copy_run(tmp_path)
    info = json.loads((run_dir / "run.json").read_text())
    info["world_size"] = world_size
    (run_dir / "run.json").write_text(json.dumps(info))
    app = app_for_tests(attach=run_dir, gpu_query=two_gpus)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.settled)
        panel = app.screen.query_one("#run-gpu", Static)
        await wait_for(pilot, lambda: "GPU1" in str(panel.render()))
        blocks = str(panel.render()).split("GPU")[1:]
        assert [b.startswith(("0", "1")) for b in blocks] == [True, True]
        assert sum("(est " in b for b in blocks) == with_estimate


async def test_a_one_process_run_shows_the_estimate_on_the_gpu_its_start_event_names(tmp_path):
    """A run pinned elsewhere (CUDA_VISIBLE_DEVICES of a queue, not the app's): its start event's
    GPU UUID, not the app's cuda:0, carries the estimate."""
    run_dir = copy_run(tmp_path)
    events = run_dir / "events.jsonl"
    lines = []
    for line in events.read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == "start":
            record["gpu_uuid"] = "GPU-bbbb"
        lines.append(json.dumps(record))
    events.write_text("\n".join(lines) + "\n")
    gpu = fake_gpu("NVIDIA A100-SXM4-40GB", 40)
    gpus = [
        dataclasses.replace(gpu, uuid="GPU-aaaa"),
        dataclasses.replace(gpu, index=1, uuid="GPU-bbbb"),
    ]
    app = app_for_tests(attach=run_dir, gpu_query=lambda: gpus)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.settled)
        panel = app.screen.query_one("#run-gpu", Static)

        def marked() -> list[bool]:
            return ["(est " in b for b in str(panel.render()).split("GPU")[1:]]

        await wait_for(pilot, lambda: marked() == [False, True])  # within a GPU poll (1 s)
        assert app.screen.gpu_uuid == "GPU-bbbb"
