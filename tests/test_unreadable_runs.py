"""Another user's private run (a 0700 folder, a 0600 run.json) never breaks a listing."""

from __future__ import annotations

import json
import os

from private_runs import as_another_user, make_runs, the_test_user

from cockpit import runs
from cockpit.__main__ import main


def test_runs_and_runs_json_list_a_private_run_as_unreadable_and_go_on(tmp_path, capsys):
    user = the_test_user()
    root = tmp_path / "runs"
    readable, private, closed = make_runs(root, user)
    with as_another_user():
        assert main(["--runs-dir", str(root), "runs"]) == 0
        out, err = capsys.readouterr()
        assert main(["--runs-dir", str(root), "runs", "--json"]) == 0
        as_json = capsys.readouterr().out
    for run_dir in readable:
        assert run_dir.name in out
    assert "unreadable" in out and private.name in out and closed.name in out
    assert f"{private} is unreadable: permission denied" in err
    assert f"{closed} is unreadable: permission denied" in err
    assert f"owned by {user.pw_name}, mode 0700" in err and "mode 0600" in err
    assert "rebuilds it" not in err  # resume cannot fix a permission problem

    rows = {r["path"]: r for r in map(json.loads, as_json.splitlines())}
    assert set(rows) == {str(p) for p in (*readable, private, closed)}
    assert rows[str(private)]["status"] == "unreadable"
    assert "permission denied" in rows[str(private)]["problem"]
    assert rows[str(closed)]["status"] == "unreadable"
    assert rows[str(readable[0])]["status"] == "finished"


def test_attach_goes_on_past_a_private_run_and_refuses_it_in_one_line(tmp_path, capsys):
    user = the_test_user()
    root = tmp_path / "runs"
    readable, private, _ = make_runs(root, user)
    with as_another_user():
        assert main(["--runs-dir", str(root), "attach", "--no-ui", readable[0].name]) == 0
        out, err = capsys.readouterr()
        assert "step 3" in out and f"attached to {readable[0]}" in err
        assert main(["--runs-dir", str(root), "attach", "--no-ui", "last"]) == 0
        err = capsys.readouterr().err  # the newest run this user can read, not a private one
        assert f"attached to {readable[1]}" in err and "Traceback" not in err
        refused = main(["--runs-dir", str(root), "attach", "--no-ui", str(private)])
        err = capsys.readouterr().err
    assert refused == 2
    assert "permission denied" in err and str(private) in err
    assert len(err.strip().splitlines()) == 1


def test_the_run_index_keeps_an_unreadable_run(tmp_path, capsys):
    user = the_test_user()
    _, private, _ = make_runs(tmp_path / "elsewhere", user)
    index = tmp_path / "home-state" / "runs.index"
    index.parent.mkdir()
    index.write_text(f"{private}\n")
    os.environ["GPT_COCKPIT_STATE"] = str(index.parent)  # isolated_home restores it
    with as_another_user():
        assert main(["runs", "--json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["path"] == str(private) and row["status"] == "unreadable"
    assert index.read_text() == f"{private}\n"  # kept: it still holds a run, only not ours to read


def test_an_unreadable_runs_folder_is_one_note_not_a_traceback(tmp_path, capsys):
    user = the_test_user()
    root = tmp_path / "runs"
    make_runs(root, user)
    os.chown(root, user.pw_uid, user.pw_gid)
    root.chmod(0o700)
    with as_another_user():
        assert runs.list_runs(root) == []
        assert main(["--runs-dir", str(root), "runs"]) == 0
    err = capsys.readouterr().err
    assert f"cannot read the runs folder {root}: permission denied" in err


def test_resume_of_a_run_with_a_private_run_json_names_the_owner_and_rebuilds_nothing(
    tmp_path, capsys
):
    user = the_test_user()
    root = tmp_path / "runs"
    _, _, closed = make_runs(root, user)
    before = sorted(p.name for p in closed.iterdir())
    with as_another_user():
        assert main(["--runs-dir", str(root), "resume", "--no-ui", closed.name]) == 2
    err = capsys.readouterr().err
    assert f"cannot read {closed}: permission denied (run.json is owned by {user.pw_name}" in err
    assert "rebuil" not in err
    assert sorted(p.name for p in closed.iterdir()) == before  # no run.json.damaged, no new one
