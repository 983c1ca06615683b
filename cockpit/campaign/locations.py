"""Every file the campaign keeps, in one place: the queue database, the scheduler's lock and log.

They live in the per-user state folder ($GPT_COCKPIT_STATE, else platformdirs'
user_state_dir("gpt-cockpit"), the same folder as the run index), so one user's queue is
found from any directory. $GPT_COCKPIT_QUEUE_DB points the queue at another database (tests,
a second queue); the lock and log sit beside whichever database is used, so two queues never
share a scheduler. The price per GPU-hour may come from the config file
($GPT_COCKPIT_CONFIG/queue.json, else the platform config folder).
"""

from __future__ import annotations

import os
from pathlib import Path

from cockpit.runs.index import state_dir

QUEUE_DB_ENV = "GPT_COCKPIT_QUEUE_DB"  # another queue database than the state folder's
PRICE_ENV = "GPT_COCKPIT_PRICE_PER_GPU_HOUR"  # dollars per GPU-hour, when no option gives one
CONFIG_ENV = "GPT_COCKPIT_CONFIG"  # the config folder (presets/ and queue.json live there)
QUEUE_DB_NAME = "queue.sqlite3"


def queue_db_path() -> Path:
    """The queue database: $GPT_COCKPIT_QUEUE_DB, else queue.sqlite3 in the state folder."""
    env = os.environ.get(QUEUE_DB_ENV)
    return Path(env) if env else state_dir() / QUEUE_DB_NAME


def scheduler_lock_path(db: Path | None = None) -> Path:
    """The lock one scheduler holds while it runs (beside its database)."""
    db = db or queue_db_path()
    return db.with_name(db.name + ".scheduler.lock")


def scheduler_log_path(db: Path | None = None) -> Path:
    """Where a detached scheduler writes its lines (beside its database)."""
    db = db or queue_db_path()
    return db.with_name(db.name + ".scheduler.log")


def config_dir() -> Path:
    """$GPT_COCKPIT_CONFIG, else the platform's user config folder for gpt-cockpit."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    from platformdirs import user_config_dir

    return Path(user_config_dir("gpt-cockpit"))


def queue_config_path() -> Path:
    """The queue's config file (JSON): {"price_per_gpu_hour": 2.5, ...}."""
    return config_dir() / "queue.json"
