"""Shared fixtures: every test gets its own config and runs folders; tiny trained runs are shared."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from cockpit.train.threads import THREADS_ENV, wait_politely

# One torch thread for the tests that train, in this process and in every child they start
# (children inherit both variables; tests/test_threads.py clears them to check the child's own
# choice): $GPT_COCKPIT_CPU_THREADS for the training child's policy (also when its main() runs
# here), OMP_NUM_THREADS for torch used directly by a test, read when torch loads. The models are
# tiny, so a second thread only adds synchronisation, and the README's command runs two xdist
# workers on two cores: at torch's count (a thread a core) each worker's threads fight the
# other's. On the training files (train_loop, resume, faults, muon, signals) in one process on
# the loaded 2-core machine: 61 s of CPU at torch's count, 35 s at one thread.
os.environ.setdefault(THREADS_ENV, "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The training child's OpenMP wait policy (cockpit/train/threads.py) for this process too, set
# before any test module imports torch: the tests that train here would otherwise run torch's
# workers spinning, and beside a neighbour (a second xdist worker, a child, another job) a
# spinning worker stalls every step. Children inherit the same values they would choose.
wait_politely()

# Bytecode is cached, whatever PYTHONDONTWRITEBYTECODE says (some sandboxes set it): without
# the cache every xdist worker rewrites the asserts of all 120 test modules again (collection:
# 9.6 s of CPU, 5.4 s cached) and every child a test starts compiles cockpit from source again.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# The files that take longest, first. `--dist loadfile` hands each xdist worker whole files and by
# default the files with most tests first, which left the long few-test files (a Slurm requeue, a
# torchrun launch, a queue end to end) for last while the other worker sat idle. Longest first
# packs the workers best; waiting files (Slurm) start beside working ones (torchrun). Order by
# wall seconds of a whole run; tests/test_suite_order.py checks every name is a file.
LONGEST_FIRST = (
    "tests/test_slurm_jobs.py",
    "tests/test_ddp.py",
    "tests/tui/test_app_flows.py",
    "tests/test_queue_slurm.py",
    "tests/test_ddp_faults.py",
    "tests/tui/test_confirmations.py",
    "tests/test_trace.py",
    "tests/test_own_model.py",
    "tests/test_headless.py",
    "tests/test_queue_e2e.py",
    "tests/test_resume_race.py",
    "tests/test_presets_fuzz.py",
    "tests/test_queue_scheduler.py",
    "tests/test_runs.py",
    "tests/test_signals.py",
    "tests/test_train_loop.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """Hand out files in collection order (below), not pytest-xdist's most-tests-first."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """LONGEST_FIRST's files first, the rest as collected (a stable sort keeps each file whole)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


HOME_VARS = ("GPT_COCKPIT_CONFIG", "GPT_COCKPIT_RUNS", "GPT_COCKPIT_CACHE", "GPT_COCKPIT_STATE")


@pytest.fixture(scope="session", autouse=True)
def isolated_session(tmp_path_factory):
    """The whole session away from the user's own folders, before any fixture runs: module and
    session fixtures (which start before each test's own home) never write the real run index,
    presets or caches."""
    home = tmp_path_factory.mktemp("session-home")
    with pytest.MonkeyPatch.context() as env:
        for var, sub in zip(HOME_VARS, ("config", "runs", "cache", "state"), strict=True):
            env.setenv(var, str(home / sub))
        yield home


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Point user presets, runs, caches and the run index at fresh temp folders for each test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("GPT_COCKPIT_CONFIG", str(home / "config"))
    monkeypatch.setenv("GPT_COCKPIT_RUNS", str(home / "runs"))
    monkeypatch.setenv("GPT_COCKPIT_CACHE", str(home / "cache"))
    monkeypatch.setenv("GPT_COCKPIT_STATE", str(home / "state"))  # the run index
    return home


def _train_shared(tmp_path_factory, name: str, fault: str = "") -> Path:
    """Train the shared tiny run once for the session, in its own home; fail loudly if it fails."""
    from tiny_runs import SHARED_RUN, home_env, make_run, train_in_process

    root = tmp_path_factory.mktemp(name)
    with pytest.MonkeyPatch.context() as env:
        for var, value in home_env(root).items():
            env.setenv(var, value)
        run_dir = make_run(root, *SHARED_RUN, name=name)
        proc = train_in_process(run_dir, fault=fault)
    assert proc.returncode == 0, proc.stderr
    return run_dir


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """The shared tiny run, trained to its end. Read it; copy it (tiny_runs.copy_run) to change it."""
    return _train_shared(tmp_path_factory, "finished")


@pytest.fixture(scope="session")
def stopped_run(tmp_path_factory) -> Path:
    """The same run stopped gracefully after step SHARED_STOP_STEP. Copy it to resume or damage it."""
    from tiny_runs import SHARED_STOP_STEP

    return _train_shared(tmp_path_factory, "stopped", f"stop_at_step={SHARED_STOP_STEP}")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real single-node Slurm (tests/slurm_cluster.py), once per session; skipped without Slurm.

    SLURM_CONF points every Slurm command of the session at it."""
    from slurm_cluster import skip_reason, start_cluster

    why = skip_reason()
    if why:
        pytest.skip(why)
    cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("SLURM_CONF", str(cluster.conf))
            yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(slurm_cluster):
    """The session's Slurm cluster, with every job cancelled when the test ends."""
    yield slurm_cluster
    slurm_cluster.cancel_all()
