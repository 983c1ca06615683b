"""Exit codes and error lines, in one place: stdout is data, stderr is diagnostics."""

from __future__ import annotations

import sys

EXIT_OK = 0  # finished, or stopped on request with a checkpoint
EXIT_FAILED = 1  # the run crashed, halted on a health rule, or hit an error while training
EXIT_USAGE = 2  # bad arguments, preset, override or data path: nothing was started
EXIT_INTERRUPTED = 130  # killed at once by a second Ctrl-C (no checkpoint written)

# `end` event reasons that count as success; every other reason (halted, error, crashed) fails.
_OK_END_REASONS = ("finished", "max-time", "stopped")


def exit_code_for_end(reason: str) -> int:
    """The exit code that goes with a run's `end` reason."""
    return EXIT_OK if reason in _OK_END_REASONS else EXIT_FAILED


def error(message: str) -> None:
    """One diagnostic line on stderr."""
    print(f"gpt-cockpit: error: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """One warning line on stderr."""
    print(f"gpt-cockpit: warning: {message}", file=sys.stderr, flush=True)


def info(message: str) -> None:
    """One informational line on stderr (not data, so not on stdout)."""
    print(f"gpt-cockpit: {message}", file=sys.stderr, flush=True)


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception's message in one line: its first line cut at `limit`, or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
