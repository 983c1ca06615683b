"""A prompt box on a run that is not training: text sampled from its checkpoint.

The app never imports torch, so the sampling runs `gpt-cockpit sample` as a child
process in a worker thread; its text (or its one-line error) comes back to the run
screen's sample panel.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from textual.widgets import Static

if TYPE_CHECKING:
    from cockpit.tui.screens.run import RunScreen

SAMPLE_TOKENS = 200
SAMPLE_TIMEOUT_S = 300


def sample_command(run_dir: Path, prompt: str) -> list[str]:
    """The child that samples (tests swap it for one without torch)."""
    return [sys.executable, "-m", "cockpit", "sample", str(run_dir), "--prompt", prompt,
            "--tokens", str(SAMPLE_TOKENS)]  # fmt: skip


def run_sample(run_dir: Path, prompt: str) -> tuple[bool, str]:
    """(ok, the sampled text or why not) from a `gpt-cockpit sample` child."""
    try:
        proc = subprocess.run(
            sample_command(run_dir, prompt),
            capture_output=True,
            text=True,
            timeout=SAMPLE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"sampling failed: {exc}"
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        return False, (lines[-1] if lines else f"sampling exited with {proc.returncode}")
    return True, proc.stdout


def ask_and_sample(screen: RunScreen, run_dir: Path, panel: str = "#run-sample") -> None:
    """Ask for a prompt, then show the sample in `panel` when the child is done."""
    from cockpit.tui.screens.confirm import PromptScreen

    def answered(prompt: str | None) -> None:
        if prompt is None:
            return
        box = screen.query_one(panel, Static)
        box.update(f"[b]sample[/] from the checkpoint: sampling after {escape(prompt)!r}...")

        def work() -> None:
            ok, text = run_sample(run_dir, prompt)
            screen.app.call_from_thread(show, ok, text)

        def show(ok: bool, text: str) -> None:
            screen.sampled = (ok, text)
            if ok:
                box.update(f"[b]sample[/] from the checkpoint\n{escape(text.strip()[:600])}")
            else:
                box.update(f"[b]sample[/] [red]{escape(text)}[/]")
                screen.notify(text, severity="error", timeout=8)

        screen.run_worker(work, thread=True, group="sample")

    screen.app.push_screen(
        PromptScreen("Prompt for a sample from this run's checkpoint:"), answered
    )
