"""`--run-dir` creates a run only in an empty or missing folder: a user's files are never touched."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from fake_trainer import use_fake_trainer

from cockpit import rundir
from cockpit.__main__ import main
from cockpit.plan.presets import Preset


def tree(path: Path) -> dict[str, str]:
    """Every entry under `path`, with a hash of each file's bytes (and its link target)."""
    out = {}
    for p in sorted(path.rglob("*")):
        rel = str(p.relative_to(path))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


# What a user may keep in a folder: each layout is refused, and named in the message.
LAYOUTS = {
    "preset": {"preset.json": b'{"name": "mine"}\n'},
    "checkpoint": {"checkpoints/last.pt": b"my weights", "checkpoints/best.pt": b"best"},
    "link": {"checkpoints/.last.prev.pt.link": b"last.pt"},
    "notes": {"notes.txt": b"do not lose me\n", "console.log": b"my log\n"},
    "hidden": {".keep": b""},
    "lock": {"train.lock": b"1234\n"},
}


@pytest.mark.parametrize("layout", list(LAYOUTS), ids=list(LAYOUTS))
def test_a_folder_with_a_users_files_is_refused_and_left_byte_identical(
    tmp_path, monkeypatch, capsys, layout
):
    use_fake_trainer(monkeypatch)
    folder = tmp_path / "mine"
    for name, data in LAYOUTS[layout].items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    before = tree(folder)
    argv = ["--no-ui", "--runs-dir", str(tmp_path / "runs"), "--max-steps", "5"]
    assert main([*argv, "--run-dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"{folder} is not empty" in err and "an empty or missing folder" in err
    for name in LAYOUTS[layout]:
        assert name.split("/")[0] in err
    assert tree(folder) == before


def test_a_file_as_run_dir_is_refused(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_bytes(b"data")
    assert main(["--no-ui", "--max-steps", "5", "--run-dir", str(target)]) == 2
    assert f"{target} is a file" in capsys.readouterr().err
    assert target.read_bytes() == b"data"


def test_a_long_listing_is_cut_to_a_few_names(tmp_path):
    folder = tmp_path / "full"
    folder.mkdir()
    for i in range(12):
        (folder / f"f{i:02d}").write_text("x")
    with pytest.raises(rundir.RunError) as caught:
        rundir.create_run_dir(Preset(name="x"), folder)
    assert "f00, f01, f02, f03, f04 and 7 more" in str(caught.value)
    assert sorted(p.name for p in folder.iterdir()) == [f"f{i:02d}" for i in range(12)]


@pytest.mark.parametrize("exists", [False, True], ids=["missing", "empty"])
def test_a_missing_or_empty_folder_takes_the_run(tmp_path, exists):
    folder = tmp_path / "a" / "b"
    if exists:
        folder.mkdir(parents=True)
    run_dir = rundir.create_run_dir(Preset(name="x"), folder)
    assert run_dir == folder
    assert rundir.read_run_info(folder).status == "starting"
    assert (folder / rundir.PRESET_JSON).is_file()
