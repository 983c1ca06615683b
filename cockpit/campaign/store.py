"""The queue: one SQLite database (WAL), one transaction per change; this module is its only writer.

docs/queue.md states the schema as a contract. Everything else (the commands, the scheduler,
its backends, the app) reads and changes the queue through `Queue`'s methods, never with SQL
of its own, so a state change is always one compare-and-set: two shells adding at once, a
scheduler killed mid-change, or a reboot lose nothing, and no entry is claimed twice.

States and who moves an entry between them:

    queued --claim--> starting --mark_running--> running --finish--> done | failed | stopped
       |                  |                         |
       |                  +------ requeue (retry) --+--> queued   (attempts kept, run_dir kept)
       +--cancel--> cancelled      starting/running --request("cancel")--> the scheduler stops it

A failure (QueueError) is one line that says what is wrong with the database (newer schema,
not a database, read-only, locked) and changes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cockpit.campaign.entry import (
    DEVICES,
    ENDED_STATES,
    LIVE_STATES,
    REQUESTS,
    STATES,
    TRANSITIONS,
    Entry,
    NewEntry,
    entry_from_row,
)
from cockpit.campaign.locations import queue_db_path

__all__ = [
    "DEVICES",
    "ENDED_STATES",
    "LIVE_STATES",
    "REQUESTS",
    "SCHEMA_VERSION",
    "STATES",
    "TRANSITIONS",
    "Entry",
    "NewEntry",
    "Queue",
    "QueueError",
]

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0  # how long a change waits for another writer's transaction

_SCHEMA = """
CREATE TABLE entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    preset TEXT NOT NULL,
    overrides TEXT NOT NULL DEFAULT '{}',
    device TEXT NOT NULL DEFAULT 'any',
    gpus INTEGER NOT NULL DEFAULT 1,
    priority INTEGER NOT NULL DEFAULT 0,
    position INTEGER NOT NULL DEFAULT 0,
    after_id INTEGER,
    group_name TEXT,
    name TEXT NOT NULL DEFAULT '',
    workdir TEXT NOT NULL DEFAULT '',
    runs_root TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'queued',
    reason TEXT NOT NULL DEFAULT '',
    request TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    retries TEXT NOT NULL DEFAULT '[]',
    run_dir TEXT,
    backend TEXT,
    backend_job TEXT,
    planned_bytes INTEGER,
    planned_device TEXT,
    threads INTEGER,
    planned_seconds REAL,
    run_seconds REAL NOT NULL DEFAULT 0,
    gpu_seconds REAL NOT NULL DEFAULT 0,
    attempt_started REAL,
    created REAL NOT NULL,
    started REAL,
    ended REAL,
    updated REAL NOT NULL
);
CREATE INDEX entries_state ON entries(state);
CREATE INDEX entries_group ON entries(group_name);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    entry_id INTEGER,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
"""


class QueueError(RuntimeError):
    """The queue cannot be read or changed; the message is one line that says why."""


def _one_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class Queue:
    """The queue database at `path` (default: locations.queue_db_path()).

    Opening creates the database (and its folder) when missing. Every method is one
    transaction; a method that changes entries returns them as they are afterwards.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else queue_db_path()
        self._conn = self._connect()

    # ------------------------------------------------------------------ opening

    def _connect(self) -> sqlite3.Connection:
        where = str(self.path)
        if self.path.exists() and not self.path.is_file():
            raise QueueError(f"queue database {where}: not a file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise QueueError(
                f"queue database {where}: cannot create its folder ({exc.strerror})"
            ) from None
        try:
            conn = sqlite3.connect(where, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise QueueError(f"queue database {where}: {_one_line(exc)}") from None
        conn.row_factory = sqlite3.Row
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise QueueError(
                    f"queue database {where} has schema version {version}, newer than this "
                    f"gpt-cockpit's {SCHEMA_VERSION}: upgrade gpt-cockpit"
                )
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            if version == 0:
                self._create(conn)
            conn.execute("SELECT count(*) FROM entries").fetchone()
        except QueueError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise QueueError(self._explain(exc)) from None
        return conn

    def _create(self, conn: sqlite3.Connection) -> None:
        """A fresh database: the schema and its version, in one transaction."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] == 0:  # nobody else made it
                tables = conn.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'"
                ).fetchall()
                if tables:
                    raise QueueError(
                        f"queue database {self.path} holds tables but no schema version: "
                        "not a gpt-cockpit queue (move it away)"
                    )
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _explain(self, exc: sqlite3.Error) -> str:
        """One line for a database error: corrupt, read-only, locked, or as SQLite says it."""
        text = _one_line(exc)
        where = f"queue database {self.path}"
        if "not a database" in text or "malformed" in text:
            return f"{where} is damaged ({text}): move it away to start an empty queue"
        if "readonly" in text or "read-only" in text or "unable to open" in text:
            return f"{where} cannot be written ({text}): check its permissions and its folder's"
        if "locked" in text or "busy" in text:
            return f"{where} is locked by another process for over {BUSY_TIMEOUT_S:.0f} s ({text})"
        return f"{where}: {text}"

    def close(self) -> None:
        """Close the connection (the database stays)."""
        self._conn.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE): all of it, or nothing."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise QueueError(self._explain(exc)) from None
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._conn.execute("ROLLBACK")
            raise QueueError(self._explain(exc)) from None
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._conn.execute(sql, tuple(args)).fetchall()
        except sqlite3.Error as exc:
            raise QueueError(self._explain(exc)) from None

    # ------------------------------------------------------------------ reading

    def entries(
        self, *, states: Iterable[str] | None = None, group: str | None = None
    ) -> list[Entry]:
        """Entries in queue order (priority high first, then position), optionally filtered."""
        sql, args = "SELECT * FROM entries", []
        where = []
        if states is not None:
            states = list(states)
            where.append(f"state IN ({','.join('?' * len(states))})")
            args += states
        if group is not None:
            where.append("group_name = ?")
            args.append(group)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY priority DESC, position, id"
        return [entry_from_row(r) for r in self._read(sql, args)]

    def get(self, entry_id: int) -> Entry:
        """One entry; QueueError when there is no such ID."""
        rows = self._read("SELECT * FROM entries WHERE id = ?", (entry_id,))
        if not rows:
            raise QueueError(f"no queue entry {entry_id} (`gpt-cockpit queue` lists them)")
        return entry_from_row(rows[0])

    def groups(self) -> list[str]:
        """The sweep groups that have entries, oldest first."""
        rows = self._read(
            "SELECT group_name FROM entries WHERE group_name IS NOT NULL "
            "GROUP BY group_name ORDER BY min(id)"
        )
        return [r[0] for r in rows]

    def resolve(self, ref: str) -> list[Entry]:
        """An entry ID or a group name -> its entries; QueueError when it names nothing."""
        text = ref.strip().lstrip("#")
        if text.isdigit():
            return [self.get(int(text))]
        found = self.entries(group=ref)
        if not found:
            raise QueueError(f"no queue entry or group {ref!r} (`gpt-cockpit queue` lists them)")
        return found

    # ------------------------------------------------------------------ adding and removing

    def add(
        self, new: Iterable[NewEntry], *, group: str | None = None, group_base: str | None = None
    ) -> list[Entry]:
        """Add entries (a sweep's whole grid) in one transaction; all are added or none.

        A sweep names its group `group` (refused when that group exists) or, with
        `group_base`, the first free `BASE-sweepN`, chosen in the same transaction so two
        shells adding at once never share one; "{group}" in an entry's name becomes it.
        """
        new = list(new)
        now = time.time()
        ids = []
        with self._write() as conn:
            taken = {r[0] for r in conn.execute("SELECT DISTINCT group_name FROM entries")}
            if group is not None and group in taken:
                raise QueueError(f"--name {group}: a group of that name exists; pick another")
            if group is None and group_base is not None:
                n = 1
                while f"{group_base}-sweep{n}" in taken:
                    n += 1
                group = f"{group_base}-sweep{n}"
            if group is not None:
                new = [
                    dataclasses.replace(i, group=group, name=i.name.replace("{group}", group))
                    for i in new
                ]
            for item in new:
                if item.device not in DEVICES:
                    raise QueueError(
                        f"device must be one of {', '.join(DEVICES)}, not {item.device!r}"
                    )
                if (
                    item.after is not None
                    and not conn.execute(
                        "SELECT 1 FROM entries WHERE id = ?", (item.after,)
                    ).fetchone()
                ):
                    raise QueueError(f"--after {item.after}: no such queue entry")
                cur = conn.execute(
                    "INSERT INTO entries (preset, overrides, device, gpus, priority, after_id, "
                    "group_name, name, workdir, runs_root, created, updated) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        item.preset,
                        json.dumps(item.overrides),
                        item.device,
                        0 if item.device == "cpu" else max(1, item.gpus),
                        item.priority,
                        item.after,
                        item.group,
                        item.name,
                        item.workdir or os.getcwd(),
                        item.runs_root,
                        now,
                        now,
                    ),
                )
                ids.append(int(cur.lastrowid or 0))
                conn.execute("UPDATE entries SET position = id WHERE id = ?", (ids[-1],))
        return [self.get(i) for i in ids]

    def cancel(self, ref: str) -> list[Entry]:
        """`queue rm`: queued entries are cancelled, live ones asked to stop (the scheduler
        cancels them after their checkpoint), ended ones leave the list. One transaction."""
        targets = self.resolve(ref)
        now = time.time()
        with self._write() as conn:
            for e in targets:
                if e.state == "queued":
                    conn.execute(
                        "UPDATE entries SET state='cancelled', reason='removed', ended=?, updated=? "
                        "WHERE id=? AND state='queued'",
                        (now, now, e.id),
                    )
                elif e.state in LIVE_STATES:
                    conn.execute(
                        "UPDATE entries SET request='cancel', updated=? WHERE id=?", (now, e.id)
                    )
                else:
                    conn.execute("DELETE FROM entries WHERE id=?", (e.id,))
            self._log(conn, None, "removed", f"removed {ref}")
        return targets

    def set_priority(self, entry_id: int, priority: int) -> Entry:
        """Change an entry's priority (any state; only queued entries are affected by it)."""
        self.get(entry_id)
        with self._write() as conn:
            conn.execute(
                "UPDATE entries SET priority=?, updated=? WHERE id=?",
                (priority, time.time(), entry_id),
            )
        return self.get(entry_id)

    def move(self, entry_id: int, before: int | None) -> Entry:
        """Put an entry just before another in the order (None: last); priority follows `before`."""
        entry = self.get(entry_id)
        with self._write() as conn:
            if before is None:
                top = conn.execute("SELECT max(position) FROM entries").fetchone()[0] or 0
                conn.execute("UPDATE entries SET position=? WHERE id=?", (top + 1, entry.id))
            else:
                other = self.get(before)
                conn.execute(
                    "UPDATE entries SET position = position + 1 WHERE position >= ?",
                    (other.position,),
                )
                conn.execute(
                    "UPDATE entries SET position=?, priority=?, updated=? WHERE id=?",
                    (other.position, other.priority, time.time(), entry.id),
                )
        return self.get(entry_id)

    def request(self, entry_id: int, what: str, reason: str | None = None) -> Entry:
        """Ask the scheduler to cancel, stop or prune a live entry at its next tick (with why)."""
        if what not in REQUESTS:
            raise QueueError(f"request must be one of {', '.join(REQUESTS)}, not {what!r}")
        with self._write() as conn:
            conn.execute(
                "UPDATE entries SET request=?, reason=coalesce(?, reason), updated=? "
                "WHERE id=? AND state IN ('starting', 'running')",
                (what, reason, time.time(), entry_id),
            )
        return self.get(entry_id)

    # ------------------------------------------------------------------ the scheduler's moves

    def claim(
        self,
        entry_id: int,
        *,
        backend: str,
        planned_device: str,
        planned_bytes: int | None,
        threads: int | None = None,
        planned_seconds: float | None = None,
    ) -> Entry | None:
        """queued -> starting, recorded before anything starts; None when it is no longer queued
        (someone cancelled it, or another scheduler took it)."""
        now = time.time()
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE entries SET state='starting', reason='', request=NULL, "
                "attempts=attempts+1, backend=?, backend_job=NULL, planned_device=?, "
                "planned_bytes=?, threads=?, planned_seconds=coalesce(?, planned_seconds), "
                "attempt_started=?, started=coalesce(started, ?), ended=NULL, updated=? "
                "WHERE id=? AND state='queued'",
                (
                    backend,
                    planned_device,
                    planned_bytes,
                    threads,
                    planned_seconds,
                    now,
                    now,
                    now,
                    entry_id,
                ),
            )
            if cur.rowcount != 1:
                return None
        return self.get(entry_id)

    def mark_running(
        self, entry_id: int, *, run_dir: str | None = None, backend_job: str | None = None
    ) -> Entry:
        """starting -> running (or just record the run directory and the backend's job id)."""
        now = time.time()
        with self._write() as conn:
            conn.execute(
                "UPDATE entries SET state = CASE WHEN state='starting' THEN 'running' ELSE state END, "
                "run_dir=coalesce(?, run_dir), backend_job=coalesce(?, backend_job), updated=? "
                "WHERE id=?",
                (run_dir, backend_job, now, entry_id),
            )
        return self.get(entry_id)

    def record_job(self, entry_id: int, *, run_dir: str, backend_job: str) -> Entry:
        """Record the run directory and job id of a starting entry that waits in a cluster's
        queue (it becomes running when its job runs)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE entries SET run_dir=?, backend_job=?, updated=? WHERE id=?",
                (run_dir, backend_job, time.time(), entry_id),
            )
        return self.get(entry_id)

    def set_run_dir(self, entry_id: int, run_dir: str) -> Entry:
        """Link the run directory (before the child starts, so a crash right after finds it)."""
        with self._write() as conn:
            conn.execute(
                "UPDATE entries SET run_dir=?, updated=? WHERE id=?",
                (run_dir, time.time(), entry_id),
            )
        return self.get(entry_id)

    def set_plan(
        self,
        entry_id: int,
        *,
        planned_bytes: int | None,
        planned_device: str | None,
        planned_seconds: float | None,
        reason: str = "",
    ) -> None:
        """Record a queued entry's plan (what it needs, where it would go) and why it waits."""
        with self._write() as conn:
            conn.execute(
                "UPDATE entries SET planned_bytes=?, planned_device=?, planned_seconds=?, "
                "reason=? WHERE id=? AND state='queued'",
                (planned_bytes, planned_device, planned_seconds, reason, entry_id),
            )

    def _move(self, entry_id: int, to: str, sets: str, args: tuple[Any, ...]) -> Entry:
        allowed = [s for s, nxt in TRANSITIONS.items() if to in nxt]
        now = time.time()
        with self._write() as conn:
            row = conn.execute("SELECT state FROM entries WHERE id=?", (entry_id,)).fetchone()
            if row is None:
                raise QueueError(f"no queue entry {entry_id}")
            if row[0] not in allowed:
                raise QueueError(f"queue entry {entry_id} is {row[0]}: it cannot become {to}")
            conn.execute(
                "UPDATE entries SET state=?, "
                "run_seconds = run_seconds + CASE WHEN attempt_started IS NULL THEN 0 "
                "ELSE max(0, ? - attempt_started) END, attempt_started=NULL, "
                f"{sets}, updated=? WHERE id=?",
                (to, now, *args, now, entry_id),
            )
        return self.get(entry_id)

    def finish(self, entry_id: int, state: str, reason: str = "") -> Entry:
        """A live entry ended: done, failed, stopped or cancelled, with why."""
        if state not in ENDED_STATES:
            raise QueueError(f"{state!r} is not an end state ({', '.join(ENDED_STATES)})")
        return self._move(entry_id, state, "reason=?, request=NULL, ended=?", (reason, time.time()))

    def finish_unstarted(self, entry_id: int, reason: str) -> Entry:
        """queued -> failed: it can never start on this machine (too big, a bad preset), with why."""
        now = time.time()
        with self._write() as conn:
            conn.execute(
                "UPDATE entries SET state='failed', reason=?, ended=?, updated=? "
                "WHERE id=? AND state='queued'",
                (reason, now, now, entry_id),
            )
        return self.get(entry_id)

    def requeue(self, entry_id: int, reason: str, *, retry: bool = True) -> Entry:
        """Back to queued: a retry (counted in `retries`, with why) or a person's re-run."""
        entry = self.get(entry_id)
        retries = list(entry.retries)
        if retry:
            retries.append({"at": time.time(), "attempt": entry.attempts, "reason": reason})
        return self._move(
            entry_id,
            "queued",
            "reason=?, request=NULL, retries=?, ended=NULL",
            (reason, json.dumps(retries)),
        )

    def charge(self, gpu_seconds: dict[int, float]) -> None:
        """Add GPU-seconds to entries (the scheduler's tick: what each run used since the last)."""
        with self._write() as conn:
            for entry_id, seconds in gpu_seconds.items():
                conn.execute(
                    "UPDATE entries SET gpu_seconds = gpu_seconds + ? WHERE id=?",
                    (max(0.0, seconds), entry_id),
                )

    # ------------------------------------------------------------------ meta and log

    def get_meta(self, key: str, default: Any = None) -> Any:
        """A JSON value kept beside the entries (the scheduler's record, the stop request)."""
        rows = self._read("SELECT value FROM meta WHERE key=?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def set_meta(self, key: str, value: Any) -> None:
        """Set (or with None, delete) a meta value."""
        with self._write() as conn:
            if value is None:
                conn.execute("DELETE FROM meta WHERE key=?", (key,))
            else:
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES(?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (key, json.dumps(value)),
                )

    def set_paused(self, paused: bool) -> None:
        """Pause the queue (the scheduler starts nothing new, keeps its runs, and waits) or go on."""
        self.set_meta("paused", True if paused else None)
        self.log("paused" if paused else "resumed", "queue paused" if paused else "queue resumed")

    def paused(self) -> bool:
        """The queue is paused."""
        return bool(self.get_meta("paused", False))

    @staticmethod
    def _log(conn: sqlite3.Connection, entry_id: int | None, kind: str, message: str) -> None:
        conn.execute(
            "INSERT INTO log(at, entry_id, kind, message) VALUES(?,?,?,?)",
            (time.time(), entry_id, kind, message),
        )

    def log(self, kind: str, message: str, entry_id: int | None = None) -> None:
        """Append one line to the queue's log (what the app shows as the queue's news)."""
        with self._write() as conn:
            self._log(conn, entry_id, kind, message)

    def log_lines(self, since_id: int = 0, limit: int = 200) -> list[dict[str, Any]]:
        """Log lines after `since_id`, oldest first: {"id", "at", "entry_id", "kind", "message"}."""
        rows = self._read(
            "SELECT * FROM (SELECT * FROM log WHERE id > ? ORDER BY id DESC LIMIT ?) ORDER BY id",
            (since_id, limit),
        )
        return [dict(r) for r in rows]
