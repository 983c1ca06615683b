"""The queue database: the state machine, one transaction per change, and a clear line for a bad file."""

from __future__ import annotations

import os
import sqlite3
import threading

import pytest

from cockpit.campaign import locations
from cockpit.campaign.store import SCHEMA_VERSION, NewEntry, Queue, QueueError


@pytest.fixture
def queue(tmp_path):
    q = Queue(tmp_path / "q.sqlite3")
    yield q
    q.close()


def _claim(q: Queue, entry_id: int):
    return q.claim(entry_id, backend="local", planned_device="cpu", planned_bytes=1 << 20)


def test_the_database_lives_in_the_state_folder_unless_the_variable_says_otherwise(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("GPT_COCKPIT_STATE", str(tmp_path / "state"))
    assert locations.queue_db_path() == tmp_path / "state" / "queue.sqlite3"
    with Queue() as q:
        assert q.path == tmp_path / "state" / "queue.sqlite3"
        mode = q._conn.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        assert q._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    monkeypatch.setenv("GPT_COCKPIT_QUEUE_DB", str(tmp_path / "other.db"))
    assert locations.queue_db_path() == tmp_path / "other.db"
    assert locations.scheduler_lock_path().parent == tmp_path


def test_entries_come_out_in_priority_then_insertion_order(queue):
    a, b = queue.add([NewEntry("tiny_char"), NewEntry("small", priority=5)])
    (c,) = queue.add([NewEntry("tiny_char", device="cpu", gpus=3)])
    assert [e.id for e in queue.entries()] == [b.id, a.id, c.id]
    assert c.gpus == 0 and c.device_count == 0
    assert a.device_count == 1
    queue.move(c.id, before=b.id)
    assert [e.id for e in queue.entries()] == [c.id, b.id, a.id]


def test_a_claim_happens_once_and_records_the_attempt(queue):
    (e,) = queue.add([NewEntry("tiny_char")])
    claimed = _claim(queue, e.id)
    assert claimed.state == "starting" and claimed.attempts == 1 and claimed.started
    assert _claim(queue, e.id) is None  # already taken: nobody starts it twice
    running = queue.mark_running(e.id, run_dir="/runs/x", backend_job="123")
    assert (running.state, running.run_dir, running.backend_job) == ("running", "/runs/x", "123")


def test_a_retry_keeps_the_run_directory_and_says_why(queue):
    (e,) = queue.add([NewEntry("tiny_char")])
    _claim(queue, e.id)
    queue.mark_running(e.id, run_dir="/runs/x")
    back = queue.requeue(e.id, "killed by SIGKILL")
    assert back.state == "queued" and back.run_dir == "/runs/x"
    assert [r["reason"] for r in back.retries] == ["killed by SIGKILL"]
    assert back.attempt_started is None and back.run_seconds >= 0
    again = _claim(queue, e.id)
    assert again.attempts == 2


@pytest.mark.parametrize(
    ("path", "to", "ok"),
    [
        (["claim"], "done", True),
        (["claim", "run"], "failed", True),
        ([], "done", False),  # a queued entry never ran
        (["claim", "run", "done"], "failed", False),  # done is final
    ],
)
def test_finish_follows_the_state_machine(queue, path, to, ok):
    (e,) = queue.add([NewEntry("tiny_char")])
    for step in path:
        if step == "claim":
            _claim(queue, e.id)
        elif step == "run":
            queue.mark_running(e.id)
        else:
            queue.finish(e.id, step)
    if ok:
        assert queue.finish(e.id, to, "why").state == to
    else:
        before = queue.get(e.id)
        with pytest.raises(QueueError, match="cannot become"):
            queue.finish(e.id, to)
        assert queue.get(e.id) == before


def test_rm_cancels_queued_asks_live_ones_and_drops_ended_ones(queue):
    a, b, c = queue.add([NewEntry("t", group="g"), NewEntry("t", group="g"), NewEntry("t")])
    _claim(queue, b.id)
    _claim(queue, c.id)
    queue.finish(c.id, "done")
    queue.cancel("g")
    assert queue.get(a.id).state == "cancelled"
    assert queue.get(b.id).state == "starting" and queue.get(b.id).request == "cancel"
    queue.cancel(str(c.id))
    assert c.id not in [e.id for e in queue.entries()]


def test_a_name_that_is_no_entry_or_group_is_one_line_and_changes_nothing(queue):
    queue.add([NewEntry("t")])
    before = queue.entries()
    for ref in ("99", "nosuchgroup"):
        with pytest.raises(QueueError, match="no queue entry"):
            queue.cancel(ref)
    with pytest.raises(QueueError, match="--after 42"):
        queue.add([NewEntry("t"), NewEntry("t", after=42)])  # the whole batch or nothing
    assert queue.entries() == before


def test_two_writers_at_once_lose_nothing(tmp_path):
    path = tmp_path / "q.sqlite3"
    Queue(path).close()

    def add_many(n: int) -> None:
        with Queue(path) as q:
            for _ in range(n):
                q.add([NewEntry("t"), NewEntry("t")])

    threads = [threading.Thread(target=add_many, args=(25,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Queue(path) as q:
        assert len(q.entries()) == 200


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "q.sqlite3"
    Queue(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(QueueError, match="newer than this gpt-cockpit"):
        Queue(path)


def test_a_corrupt_file_is_one_line(tmp_path):
    path = tmp_path / "q.sqlite3"
    path.write_bytes(b"this is no database at all" * 100)
    with pytest.raises(QueueError, match="is damaged") as err:
        Queue(path)
    assert "\n" not in str(err.value)
    assert path.read_bytes().startswith(b"this is no database")


def test_a_foreign_database_is_not_taken_over(tmp_path):
    path = tmp_path / "q.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE other (x)")
    conn.commit()
    conn.close()
    with pytest.raises(QueueError, match="not a gpt-cockpit queue"):
        Queue(path)


def _read_only(paths: list, on: bool) -> None:
    """chmod for a user; for root (who writes through modes) the immutable flag, where allowed."""
    if os.geteuid() != 0:
        for p in paths:
            p.chmod((0o555 if p.is_dir() else 0o444) if on else (0o755 if p.is_dir() else 0o644))
        return
    import subprocess

    flag = "+i" if on else "-i"
    done = subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make files read-only as root here: {done.stderr.decode().strip()}")


def test_a_read_only_database_is_one_line_and_unchanged(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "q.sqlite3"
    with Queue(path) as q:
        q.add([NewEntry("t")])
    files = [*folder.iterdir(), folder]
    _read_only(files, True)
    try:
        with pytest.raises(QueueError, match="cannot be written|damaged") as err:
            q = Queue(path)
            q.add([NewEntry("t")])
        assert "\n" not in str(err.value)
    finally:
        _read_only(files, False)
    with Queue(path) as q:
        assert len(q.entries()) == 1


def test_meta_and_log_round_trip(queue):
    queue.set_meta("stop", "now")
    assert queue.get_meta("stop") == "now"
    queue.set_meta("stop", None)
    assert queue.get_meta("stop", "none") == "none"
    queue.log("done", "#1 done", entry_id=1)
    lines = queue.log_lines()
    assert [(x["kind"], x["entry_id"]) for x in lines] == [("done", 1)]
    assert queue.log_lines(since_id=lines[-1]["id"]) == []


def test_sweeps_added_at_once_get_groups_of_their_own(tmp_path):
    path = tmp_path / "q.sqlite3"
    Queue(path).close()

    def add_sweep() -> None:
        with Queue(path) as q:
            q.add(
                [NewEntry("t", name="{group}[a]"), NewEntry("t", name="{group}[b]")], group_base="t"
            )

    threads = [threading.Thread(target=add_sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Queue(path) as q:
        assert q.groups() == [f"t-sweep{n}" for n in range(1, 5)]
        assert all(len(q.entries(group=g)) == 2 for g in q.groups())
        assert q.entries()[0].name == f"{q.entries()[0].group}[a]"
        with pytest.raises(QueueError, match="a group of that name exists"):
            q.add([NewEntry("t")], group="t-sweep2")
