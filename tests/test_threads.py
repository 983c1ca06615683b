"""The child's CPU thread policy: one core fewer than usable where there are cores to spare,
idle workers that sleep; torch's thread count on a small machine, its workers spinning briefly.

A real child's line saying which policy it chose, and OpenMP showing it took it, are checked in
tests/test_child_start.py's eager child (one torch process for both start-up checks)."""

from __future__ import annotations

import os

import pytest

from cockpit.train import threads


@pytest.fixture
def clean_env(monkeypatch):
    for name in (threads.THREADS_ENV, "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(("cores", "expected"), [(1, None), (2, None), (3, None), (4, 3), (16, 15)])
def test_one_core_is_left_to_the_neighbours_where_there_is_one_to_spare(clean_env, cores, expected):
    clean_env.setattr(threads, "usable_cores", lambda: cores)
    assert threads.chosen_threads() == expected
    threads.wait_politely()  # sleep where a core is spared, else a short spin before sleeping
    assert os.environ.get("OMP_WAIT_POLICY") == (None if expected is None else "PASSIVE")
    assert os.environ.get("GOMP_SPINCOUNT") == (threads.SHORT_SPIN if expected is None else None)


def test_the_environment_overrides_the_count(clean_env):
    clean_env.setenv(threads.THREADS_ENV, "3")
    assert threads.chosen_threads() == 3
    clean_env.setenv(threads.THREADS_ENV, "torch")
    assert threads.chosen_threads() is None
    threads.wait_politely()
    assert "OMP_WAIT_POLICY" not in os.environ  # torch's defaults, untouched
    assert "GOMP_SPINCOUNT" not in os.environ
    clean_env.delenv(threads.THREADS_ENV)
    clean_env.setenv("OMP_NUM_THREADS", "2")
    assert threads.chosen_threads() is None  # the user's own setting stands
    threads.wait_politely()
    assert "GOMP_SPINCOUNT" not in os.environ  # and so does their OpenMP


def test_idle_workers_sleep_unless_told_otherwise(clean_env):
    clean_env.setattr(threads, "usable_cores", lambda: 8)
    threads.wait_politely()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    clean_env.setenv("OMP_WAIT_POLICY", "ACTIVE")
    threads.wait_politely()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
