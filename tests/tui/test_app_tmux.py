"""Drive the real program in tmux as a person would: launch, detach, close the terminal, attach again."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cockpit import rundir, runs

pytestmark = [pytest.mark.tmux, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
STEP_RE = re.compile(r"step (\d+)/(\d+)")


# A private server: a tmux the person (or another test) runs cannot change our window size.
SOCKET = f"gpt-cockpit-test-{os.getpid()}"


def tmux(*args: str) -> str:
    return subprocess.run(
        ["tmux", "-L", SOCKET, "-f", os.devnull, *args], capture_output=True, text=True, timeout=10
    ).stdout


def screen_text(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session)


def wait_screen(session: str, predicate, timeout: float = 30.0) -> str:
    """Capture the pane until `predicate(text)` holds; fail with the last screen."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = screen_text(session)
        if predicate(text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"screen never matched; last screen:\n{text}")


def run_step(text: str) -> int:
    match = STEP_RE.search(text)
    return int(match.group(1)) if match else -1


def start_app(session: str, env: dict[str, str]) -> None:
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    # COLUMNS/LINES from the environment would override the pane's real size (120x40)
    command = f"cd {REPO} && env -u COLUMNS -u LINES {exports} {sys.executable} -m cockpit"
    # Pin the size before the app starts: a detached window can fall back to tmux's default 80x24
    # while the options are still being set, and the app would lay out for that size.
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", "sleep 600")
    tmux("set-option", "-t", session, "window-size", "manual")
    tmux("resize-window", "-t", session, "-x", "120", "-y", "40")
    tmux("respawn-pane", "-k", "-t", session, command)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_launch_detach_close_and_attach_again(tmp_path):
    config, runs_root = tmp_path / "config", tmp_path / "runs"
    (config / "presets").mkdir(parents=True)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 4000)
    preset = {
        "name": "tiny_tmux",
        "description": "1 layer, width 32, block 32, bytes",
        "extends": "tiny_char",
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "vocab_size": 256},
        "train": {
            "batch_size": 4,
            "max_steps": 200000,
            "eval_interval": 1000,
            "eval_steps": 2,
            "log_interval": 5,
            "warmup_steps": 10,
            "sample_tokens": 0,
        },
        "data": {"source": str(corpus), "tokenizer": "byte"},
    }
    (config / "presets" / "tiny_tmux.json").write_text(json.dumps(preset))
    env = {
        "GPT_COCKPIT_CONFIG": str(config),
        "GPT_COCKPIT_RUNS": str(runs_root),
        "GPT_COCKPIT_STATE": str(tmp_path / "state"),
        "TERM": "xterm-256color",
        "CUDA_VISIBLE_DEVICES": "",
    }
    session = f"cockpit-test-{os.getpid()}"
    run_dir: Path | None = None
    try:
        start_app(session, env)
        text = wait_screen(session, lambda t: "est. VRAM" in t)
        assert max(len(line) for line in text.splitlines()) > 100, (
            f"the app laid out for a narrow pane:\n{text}"
        )
        # the cursor starts on the smallest preset: this one
        wait_screen(session, lambda t: "tiny_tmux (user preset" in t)
        tmux("send-keys", "-t", session, "l")
        wait_screen(session, lambda t: "Start training now?" in t)
        tmux("send-keys", "-t", session, "y")
        text = wait_screen(session, lambda t: "running" in t and run_step(t) > 0, timeout=40)
        first = run_step(text)
        run_dir = runs.list_runs(runs_root)[0].run_dir
        tmux("send-keys", "-t", session, "d")  # detach: back to the presets
        wait_screen(session, lambda t: "tiny_tmux (user preset" in t)
        tmux("kill-session", "-t", session)  # the terminal goes away (SIGHUP to the app)
        events = run_dir / "events.jsonl"
        written = events.stat().st_size
        deadline = time.monotonic() + 30  # the run keeps writing once the terminal is gone
        while events.stat().st_size == written and time.monotonic() < deadline:
            time.sleep(0.2)
        assert events.stat().st_size > written, "training stopped with the terminal"
        assert rundir.run_status(run_dir) == "running", "training stopped with the terminal"

        start_app(session, env)
        wait_screen(session, lambda t: "est. VRAM" in t)
        tmux("send-keys", "-t", session, "r")
        wait_screen(session, lambda t: "running" in t and run_dir.name in t)
        tmux("send-keys", "-t", session, "Enter")
        text = wait_screen(session, lambda t: run_step(t) > first, timeout=20)
        again = run_step(text)
        later = run_step(wait_screen(session, lambda t: run_step(t) > again, timeout=20))
        assert first < again < later
    finally:
        tmux("kill-server")
        if run_dir is not None and rundir.stop_run(run_dir):
            deadline = time.monotonic() + 15
            while (
                rundir.run_status(run_dir) in rundir.LIVE_STATUSES and time.monotonic() < deadline
            ):
                time.sleep(0.2)
            rundir.stop_run(run_dir, kill=True)
