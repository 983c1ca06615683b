"""The queue: every entry with its state, GPU, planned memory, ETA and cost; each GPU's share.

The screen reads the queue database (through cockpit.campaign.view, in a worker thread) and
changes it only through the store's requests: cancel, priority, order, pause. It never
starts a run: the scheduler does, and `S` starts the scheduler when none runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from cockpit.campaign.store import ENDED_STATES, LIVE_STATES, Queue, QueueError
from cockpit.campaign.view import QueueView, clock, row_texts
from cockpit.common.format import human_bytes
from cockpit.tui.widgets.footer import KeyFooter
from cockpit.tui.widgets.panel import Panel
from cockpit.tui.widgets.table import show_rows

REFRESH_S = 1.0
BAR_WIDTH = 24
STATE_STYLES = {
    "queued": "cyan",
    "starting": "yellow",
    "running": "bold green",
    "done": "green",
    "failed": "bold red",
    "stopped": "yellow",
    "cancelled": "dim",
}


class QueueRead(Message):
    """A fresh view of the queue (or why it could not be read)."""

    def __init__(self, view: QueueView | None, problem: str = "") -> None:
        self.view = view
        self.problem = problem
        super().__init__()

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, QueueRead)


def share_bar(used: int, total: int, width: int = BAR_WIDTH) -> str:
    """A memory bar in Rich markup: planned bytes against the GPU's, red past it."""
    if total <= 0:
        return "[dim]" + "·" * width + "[/]"
    filled = min(width, round(width * used / total))
    colour = "red" if used > total else "green" if used <= 0.85 * total else "yellow"
    return f"[{colour}]{'█' * filled}[/][dim]{'·' * (width - filled)}[/]"


def gpu_lines(view: QueueView) -> list[str]:
    """One line per GPU: its bar, planned of total, the entries on it; a CPU line without GPUs."""
    if not view.gpus:
        live = [r for r in view.rows if r["state"] in LIVE_STATES]
        ram = sum(r["planned_bytes"] or 0 for r in live if (r["device"] or "cpu") == "cpu")
        threads = sum(r["threads"] or 0 for r in live)
        return [
            f"CPU: {len(live)} running, {threads} threads, planned RAM {human_bytes(ram)}"
            if live
            else "CPU: nothing running"
        ]
    lines = []
    for g in view.gpus:
        who = " ".join(f"#{i}" for i in g.entries) or "idle"
        lines.append(
            f"GPU{g.index} {escape(g.name)}  {share_bar(g.planned_bytes, g.total_bytes)}  "
            f"{human_bytes(g.planned_bytes)}/{human_bytes(g.total_bytes)}  {who}"
        )
    return lines


def row_cells(row: dict[str, Any], now: float) -> tuple[str | Text, ...]:
    """The table's cells for one entry row: the list's words, the state in its colour."""
    texts = row_texts(row, now)
    style = STATE_STYLES.get(row["state"], "white")
    return (texts[0], Text(texts[1], style=style), *(escape(t) for t in texts[2:]))


def detail_text(row: dict[str, Any]) -> str:
    """One or two lines on an entry: what it is, its run folder, why, its retries."""
    sets = " ".join(f"{k}={v}" for k, v in row["overrides"].items())
    head = f"#{row['id']} {escape(row['preset'])}" + (f" {escape(sets)}" if sets else "")
    if row["group"]:
        head += f"  (sweep {escape(row['group'])})"
    if row["after"]:
        head += f"  after #{row['after']}"
    lines = [head]
    if row["run_dir"]:
        lines.append(f"run: {escape(row['run_dir'])}")
    if row["reason"]:
        lines.append(f"why: {escape(row['reason'])}")
    for retry in row["retries"][-2:]:
        lines.append(f"retry {retry.get('attempt', '?')}: {escape(str(retry.get('reason', '')))}")
    return "\n".join(lines)


class QueueScreen(Screen):
    """The queue, refreshed every second; cancel, reorder, pause; enter watches a run."""

    BINDINGS = [
        Binding("enter", "watch", "Watch run", priority=True),
        Binding("delete,x", "cancel_entry", "Cancel"),
        Binding("plus,equals_sign", "priority(1)", "Priority", key_display="+/-"),
        Binding("minus", "priority(-1)", "Priority -", show=False),
        Binding("K,shift+up", "move(-1)", "Move", key_display="K/J"),
        Binding("J,shift+down", "move(1)", "Move down", show=False),
        Binding("p", "pause", "Pause"),
        Binding("escape", "back", "Back"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, queue_path: Path | None = None) -> None:
        super().__init__()
        self.queue_path = queue_path  # None: the user's queue (locations.queue_db_path)
        self.view: QueueView | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Panel("reading the queue...", id="queue-summary")
        yield Panel(id="queue-gpus")
        yield DataTable(id="queue-table", cursor_type="row", zebra_stripes=True)
        yield Panel(id="queue-detail")
        yield Panel(id="queue-log")
        yield KeyFooter()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(
            "id", "state", "name", "device", "memory", "step", "ETA", "cost", "run / why"
        )
        table.focus()
        self.refresh_view()
        self.set_interval(REFRESH_S, self.refresh_view)

    def refresh_view(self) -> None:
        self.run_worker(self._read, thread=True, exclusive=True, group="queue")

    def _gpus(self) -> list[tuple[int, str, int]]:
        gpus = getattr(self.app, "local_gpus", None) or []
        return [(g.index, g.name, g.memory_total) for g in gpus]

    def _read(self) -> None:
        try:
            view = self.app.services.read_queue(self.queue_path, self._gpus())  # type: ignore[attr-defined]
        except QueueError as exc:
            self.post_message(QueueRead(None, str(exc)))
            return
        self.post_message(QueueRead(view))

    @on(QueueRead)
    def _shown(self, message: QueueRead) -> None:
        if message.view is None:
            self.query_one("#queue-summary", Static).update(f"[red]{escape(message.problem)}[/]")
            return
        view = self.view = message.view
        summary = escape(view.totals_line())
        if view.forecast_problem:
            summary += f"  [dim]({escape(view.forecast_problem)})[/]"
        self.query_one("#queue-summary", Static).update(summary)
        self.query_one("#queue-gpus", Static).update("\n".join(gpu_lines(view)))
        table = self.query_one(DataTable)
        keep = table.cursor_row
        show_rows(table, [(str(row["id"]), row_cells(row, view.now)) for row in view.rows])
        if view.rows:
            table.move_cursor(row=min(keep, len(view.rows) - 1))
        self.show_detail()
        log = [
            f"[dim]{clock(line['at'], view.now)}[/] {escape(line['message'])}"
            for line in view.log[-6:]
        ]
        if view.rows:
            empty = "no notices yet: p starts the scheduler" if not view.record else ""
        else:
            empty = (
                f"the queue ({escape(str(view.path))}) is empty: a on the presets screen "
                "(ctrl+t in the editor) adds a run"
            )
        self.query_one("#queue-log", Static).update("\n".join(log) or empty)

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    def show_detail(self) -> None:
        """The highlighted entry in full: its run folder, why it is where it is, its retries."""
        row = self.selected()
        self.query_one("#queue-detail", Static).update(detail_text(row) if row else "")

    def selected(self) -> dict[str, Any] | None:
        """The entry row under the cursor."""
        if self.view is None or not self.view.rows:
            return None
        row = self.query_one(DataTable).cursor_row
        return self.view.rows[row] if 0 <= row < len(self.view.rows) else None

    def _change(self, what: str, change: Any) -> None:
        """Apply one change to the queue (one transaction); a refusal is a notification."""
        try:
            with Queue(self.queue_path) as queue:
                change(queue)
        except (QueueError, ValueError) as exc:
            self.notify(f"{what}: {exc}", severity="error", timeout=8)
            return
        self.refresh_view()

    def action_watch(self) -> None:
        row = self.selected()
        if row is None:
            return
        if not row["run_dir"]:
            self.notify(f"#{row['id']} has no run yet ({row['state']})")
            return
        self.app.open_run(Path(row["run_dir"]))  # type: ignore[attr-defined]

    def action_cancel_entry(self) -> None:
        from cockpit.tui.screens.confirm import ConfirmScreen

        row = self.selected()
        if row is None or row["state"] in ENDED_STATES:
            return
        live = row["state"] in LIVE_STATES
        question = (
            f"Stop [b]#{row['id']} {escape(row['name'])}[/] with a checkpoint and cancel it?"
            if live
            else f"Cancel [b]#{row['id']} {escape(row['name'])}[/]?"
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self._change("cancel", lambda q: q.cancel(str(row["id"])))

        self.app.push_screen(ConfirmScreen(question), answered)

    def action_priority(self, delta: int) -> None:
        row = self.selected()
        if row is not None and row["state"] == "queued":
            self._change("priority", lambda q: q.set_priority(row["id"], row["priority"] + delta))

    def action_move(self, delta: int) -> None:
        row = self.selected()
        if row is None or row["state"] != "queued" or self.view is None:
            return
        waiting = [r["id"] for r in self.view.rows if r["state"] == "queued"]
        i = waiting.index(row["id"])
        j = i + delta
        if not 0 <= j < len(waiting):
            return
        # move before the entry now at j (down: before the one after it; the end: None)
        before = waiting[j] if delta < 0 else (waiting[j + 1] if j + 1 < len(waiting) else None)
        self._change("move", lambda q: q.move(row["id"], before))

    def action_pause(self) -> None:
        """Stop launching (the scheduler ends when its runs end), or start a scheduler."""
        if self.view is None:
            return
        if self.view.record and not self.view.paused:
            self._change("pause", lambda q: q.set_meta("stop", "launching"))
            self.notify("the scheduler starts nothing more; running entries train on")
            return
        if self.view.record:
            self.notify("the scheduler is finishing its runs; press p again once it has exited")
            return
        self.run_worker(self._start_scheduler, thread=True, group="scheduler")

    def _start_scheduler(self) -> None:
        start = getattr(self.app.services, "start_scheduler", None)  # type: ignore[attr-defined]
        if start is None:
            return
        line = start(self.queue_path)
        self.app.call_from_thread(self.notify, line, timeout=8)
        self.app.call_from_thread(self.refresh_view)

    def action_back(self) -> None:
        self.app.pop_screen()
