"""The app's queue: the queue screen, adding from the presets screen and the editor, pausing.

The queue database is the real one (in the test's own state folder, see conftest); the
scheduler is never started: `start_scheduler` is replaced where a test presses `p`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import GIB, app_for_tests, copy_run, steady_cursors, wait_for
from textual.widgets import DataTable, Input

from cockpit.campaign import adding
from cockpit.campaign.money import Limits
from cockpit.campaign.store import Queue
from cockpit.campaign.view import GpuShare, QueueView
from cockpit.tui.screens.queue import QueueScreen, gpu_lines, share_bar
from cockpit.tui.screens.queue_add import AddToQueueScreen
from cockpit.tui.screens.run import RunScreen

SIZES = [(80, 24), (120, 40)]


def queued(*presets: str) -> list[int]:
    with Queue() as queue:
        added = []
        for name in presets:
            added += adding.add(queue, adding.Request(preset=name, device="cpu", gpus=0))
    return [e.id for e in added]


def states() -> dict[int, str]:
    with Queue() as queue:
        return {e.id: e.state for e in queue.entries()}


async def open_queue(pilot) -> QueueScreen:
    await pilot.press("Q")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, QueueScreen))
    screen = pilot.app.screen
    await wait_for(pilot, lambda: screen.view is not None)
    return screen


async def test_the_queue_screen_lists_entries_and_changes_them():
    first, second = queued("tiny_char", "shakespeare_char")
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_queue(pilot)
        await wait_for(pilot, lambda: screen.query_one(DataTable).row_count == 2)
        assert [r["id"] for r in screen.view.rows] == [first, second]
        assert "2 queued" in str(screen.query_one("#queue-summary").render())
        table = screen.query_one(DataTable)
        table.move_cursor(row=1)
        await pilot.press("plus")  # priority up: #2 now starts first
        await wait_for(pilot, lambda: screen.view.rows[0]["id"] == second)
        table.move_cursor(row=1)
        await pilot.press("x")
        await pilot.press("y")
        await wait_for(pilot, lambda: states()[first] == "cancelled")
        assert states()[second] == "queued"


async def test_moving_an_entry_down_and_up():
    a, b, c = queued("tiny_char", "tiny_char", "tiny_char")
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_queue(pilot)
        await wait_for(pilot, lambda: len(screen.view.rows) == 3)
        screen.query_one(DataTable).move_cursor(row=0)
        await pilot.press("J")
        await wait_for(pilot, lambda: [r["id"] for r in screen.view.rows] == [b, a, c])
        screen.query_one(DataTable).move_cursor(row=2)
        await pilot.press("K")
        await wait_for(pilot, lambda: [r["id"] for r in screen.view.rows] == [b, c, a])


async def test_a_sweep_is_added_from_the_presets_screen():
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: pilot.app.screen.query_one(DataTable).row_count > 0)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, AddToQueueScreen))
        dialog = pilot.app.screen
        dialog.query_one("#queue-sweep", Input).value = "train.lr=abc,3e-4"
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: "train.lr" in str(dialog.query_one("#queue-problem").render())
        )
        assert states() == {}  # a bad value adds nothing
        dialog.query_one("#queue-sweep", Input).value = "train.lr=1e-3,3e-4"
        await pilot.press("ctrl+r")  # median pruning for the group
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(pilot.app.screen, AddToQueueScreen))
    with Queue() as queue:
        entries = queue.entries()
        assert [e.overrides["train.lr"] for e in entries] == [1e-3, 3e-4]
        group = entries[0].group
        assert group and all(e.group == group for e in entries)
        assert adding.prune_policies(queue) == {group: "median"}


async def test_the_editor_queues_its_edits_as_overrides():
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: pilot.app.screen.query_one(DataTable).row_count > 0)
        await pilot.press("enter")
        await pilot.pause()
        box = pilot.app.screen.select_field("train.max_steps")
        box.value = "123"
        await wait_for(pilot, lambda: pilot.app.screen.preset.train.max_steps == 123)
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, AddToQueueScreen))
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(pilot.app.screen, AddToQueueScreen))
    with Queue() as queue:
        (entry,) = queue.entries()
        assert entry.overrides == {"train.max_steps": 123}


async def test_enter_watches_an_entry_with_a_run(tmp_path):
    (entry_id,) = queued("tiny_char")
    run_dir = copy_run(tmp_path)
    with Queue() as queue:
        queue.set_run_dir(entry_id, str(run_dir))
    app = app_for_tests()
    async with app.run_test(size=(80, 24)) as pilot:
        await open_queue(pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunScreen))
        assert pilot.app.screen.run_dir == run_dir


async def test_p_starts_a_scheduler_when_none_runs():
    queued("tiny_char")
    started: list[Path | None] = []

    def start(path: Path | None) -> str:
        started.append(path)
        return "scheduler started (pid 1)"

    app = app_for_tests(start_scheduler=start)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_queue(pilot)
        await pilot.press("p")
        await wait_for(pilot, lambda: started == [None])


def test_bars_and_gpu_lines():
    assert share_bar(0, 10, width=4) == "[green][/][dim]····[/]"
    assert "red" in share_bar(12, 10, width=4)
    view = fixed_view()
    lines = gpu_lines(view)
    assert lines[0].startswith("GPU0 NVIDIA H100 80GB HBM3") and "#1 #2" in lines[0]
    assert "idle" in lines[1]


def fixed_view() -> QueueView:
    """A night on a what-if two-GPU machine, every figure fixed (for the snapshots)."""
    now = 1795283600.0

    def row(i, state, name, device, gib, step, eta, spent, finish, reason="", run=None):
        return {
            "id": i, "state": state, "name": name, "group": None, "preset": name,
            "overrides": {}, "priority": 0, "after": None, "device_request": "1 GPU",
            "device": device, "planned_bytes": int(gib * GIB) if gib else None, "threads": None,
            "step": step[0] if step else None, "max_steps": step[1] if step else None,
            "eta": now + eta if eta is not None else None, "gpu_hours": spent / 2.5,
            "spent": spent, "to_finish": finish, "attempts": 1, "retries": [],
            "run_dir": run, "reason": reason, "request": None,
        }  # fmt: skip

    rows = [
        row(1, "running", "small[lr=0.001]", "cuda:0", 21.4, (1200, 5000), 5400, 1.10, 3.40,
            run="/runs/20261206-230110-small"),
        row(2, "running", "small[lr=0.0003]", "cuda:0", 21.4, (1180, 5000), 5500, 1.08, 3.45,
            run="/runs/20261206-230111-small"),
        row(3, "queued", "gpt2_124m", "cuda:1", 52.0, None, 14400, 0.0, 9.80),
        row(4, "queued", "500M_1024", None, 96.3, None, None, 0.0, None,
            reason="never fits: needs 96.3 GiB, the largest GPU has 79.1 GiB"),
        row(5, "done", "tiny_char", "cuda:1", 1.2, (2000, 2000), None, 0.21, None,
            run="/runs/20261206-221502-tiny_char"),
    ]  # fmt: skip
    return QueueView(
        path=Path("~/.local/state/gpt-cockpit/queue.sqlite3"),
        rows=rows,
        record={"pid": 4242, "budget": 25.0, "until": None},
        limits=Limits(price_per_gpu_hour=2.5),
        gpus=[
            GpuShare(0, "NVIDIA H100 80GB HBM3", 80 * GIB, int(42.8 * GIB), [1, 2]),
            GpuShare(1, "NVIDIA H100 80GB HBM3", 80 * GIB, 0, []),
        ],
        log=[
            {
                "id": 1,
                "at": now - 3600,
                "entry_id": 5,
                "kind": "done",
                "message": "#5 tiny_char done: val 1.4731 after 12m, $0.21",
            },
            {
                "id": 2,
                "at": now - 600,
                "entry_id": 1,
                "kind": "started",
                "message": "#1 small[lr=0.001] started on cuda:0",
            },
        ],  # fmt: skip
        now=now,
    )


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_queue_screen_snapshot(snap_compare, size, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    import time

    time.tzset()
    view = fixed_view()

    async def run_before(pilot):
        await pilot.press("Q")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, QueueScreen))
        await wait_for(pilot, lambda: pilot.app.screen.view is not None)
        steady_cursors(pilot.app)
        await pilot.pause()

    app = app_for_tests(read_queue=lambda path, gpus: view)
    assert snap_compare(app, terminal_size=size, run_before=run_before)
