"""Shared fixtures: every test gets its own config and runs folders."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Point user presets, runs and caches at fresh temp folders for each test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("GPT_COCKPIT_CONFIG", str(home / "config"))
    monkeypatch.setenv("GPT_COCKPIT_RUNS", str(home / "runs"))
    monkeypatch.setenv("GPT_COCKPIT_CACHE", str(home / "cache"))
    return home
