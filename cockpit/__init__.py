"""gpt-cockpit: plan, launch and watch small GPT training runs from a terminal."""

from __future__ import annotations

__version__ = "0.1.0"
