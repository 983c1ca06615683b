"""The add-to-queue dialog: a preset (with its edits) as one entry, or a sweep as a group.

Opened with `a` on the presets screen and `ctrl+t` in the editor. The sweep line takes what
`queue add --sweep` takes (`train.lr=1e-3,3e-4`, several separated by `;`); the whole grid is
checked before anything is added, and a refusal is shown in the dialog, not added.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from cockpit.campaign import adding
from cockpit.campaign.store import Queue, QueueError
from cockpit.plan.presets import PresetError

DEVICES = ("any", "cpu", "1 GPU", "2 GPUs", "4 GPUs", "8 GPUs")
PRUNING = ("none", "median", "halving")


def device_request(choice: str) -> tuple[str, int]:
    """("any", 1), ("cpu", 0) or ("gpu", N) for a choice of DEVICES."""
    if choice == "cpu":
        return "cpu", 0
    if choice == "any":
        return "any", 1
    return "gpu", int(choice.split()[0])


class AddToQueueScreen(ModalScreen[list[int] | None]):
    """Queue `preset` (plus `sets`), once or as a sweep; dismissed with the IDs added."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+g", "next_device", "Device", priority=True),
        Binding("ctrl+r", "next_prune", "Pruning", priority=True),
    ]

    def __init__(
        self,
        preset_ref: str,
        sets: dict[str, Any] | None = None,
        *,
        queue_path: Path | None = None,
        runs_root: Path | None = None,
        gpus_here: int = 0,
    ) -> None:
        super().__init__()
        self.preset_ref = preset_ref
        self.sets = dict(sets or {})
        self.queue_path = queue_path
        self.runs_root = runs_root
        self.device = "any" if gpus_here else "cpu"
        self.prune = "none"

    def compose(self) -> ComposeResult:
        edits = ", ".join(f"{k}={v}" for k, v in self.sets.items())
        with Vertical(classes="dialog", id="queue-add"):
            yield Static(
                f"Queue [b]{escape(Path(self.preset_ref).stem)}[/]"
                + (f" with {escape(edits)}" if edits else "")
            )
            yield Static("sweep (optional): key=v1,v2,...; another=...")
            yield Input(placeholder="train.lr=1e-3,3e-4", id="queue-sweep")
            yield Static("name (optional) and priority (higher starts first)")
            yield Input(placeholder="name", id="queue-name")
            yield Input("0", id="queue-priority")
            yield Static(self._options(), id="queue-options")
            yield Static("", id="queue-problem")
            yield Static(
                "[b]Enter[/] add    [b]ctrl+g[/] device    [b]ctrl+r[/] pruning    [b]Esc[/] cancel",
                classes="dialog-keys",
            )

    def on_mount(self) -> None:
        self.query_one("#queue-sweep", Input).focus()

    def _options(self) -> str:
        prune = f"    pruning: [b]{self.prune}[/]" if self.prune != "none" else ""
        return f"device: [b]{self.device}[/]{prune}"

    def action_next_device(self) -> None:
        self.device = DEVICES[(DEVICES.index(self.device) + 1) % len(DEVICES)]
        self.query_one("#queue-options", Static).update(self._options())

    def action_next_prune(self) -> None:
        self.prune = PRUNING[(PRUNING.index(self.prune) + 1) % len(PRUNING)]
        self.query_one("#queue-options", Static).update(self._options())

    def request(self) -> adding.Request:
        """The dialog's fields as a queue request; PresetError or QueueError for a bad one."""
        sweep_text = self.query_one("#queue-sweep", Input).value
        sweeps = adding.parse_sweeps([s.strip() for s in sweep_text.split(";") if s.strip()])
        priority_text = self.query_one("#queue-priority", Input).value.strip() or "0"
        try:
            priority = int(priority_text)
        except ValueError:
            raise QueueError(f"priority: {priority_text!r} is not a whole number") from None
        device, gpus = device_request(self.device)
        from cockpit import rundir

        return adding.Request(
            preset=self.preset_ref,
            sets=self.sets,
            sweeps=sweeps,
            device=device,
            gpus=gpus,
            priority=priority,
            name=self.query_one("#queue-name", Input).value.strip(),
            workdir=str(Path.cwd()),
            runs_root=str(rundir.runs_root(self.runs_root).resolve()),
            prune=self.prune if self.prune != "none" and sweeps else "",
        )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            request = self.request()
            with Queue(self.queue_path) as queue:
                added = adding.add(queue, request)
        except (PresetError, QueueError) as exc:
            self.query_one("#queue-problem", Static).update(f"[red]{escape(str(exc))}[/]")
            return
        self.dismiss([e.id for e in added])

    def action_cancel(self) -> None:
        self.dismiss(None)


def edits_of(preset: Any, base: Any) -> dict[str, Any]:
    """The fields where `preset` differs from `base`, as dotted paths (the editor's edits)."""
    from cockpit.runs.compare import flatten

    mine, theirs = flatten(preset.to_dict()), flatten(base.to_dict())
    return {k: v for k, v in mine.items() if "." in k and theirs.get(k) != v}
