"""Device files, pipes and sockets are not data: refused before a run is created."""

from __future__ import annotations

import os
import socket

import pytest
from fake_trainer import use_fake_trainer

from cockpit.__main__ import main
from cockpit.plan.presets import Preset, apply_overrides
from cockpit.runs import prelaunch

DEVICES = [d for d in ("/dev/zero", "/dev/urandom", "/dev/null") if os.path.exists(d)]


def refused(capsys) -> str:
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("gpt-cockpit: error: ")]
    assert out == "" and len(errors) == 1, err
    return errors[0]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("how", ["--data", "--set"])
def test_a_device_as_data_is_refused_before_a_run_is_created(
    tmp_path, monkeypatch, capsys, device, how
):
    use_fake_trainer(monkeypatch)
    given = ["--data", device] if how == "--data" else ["--set", f"data.source={device}"]
    assert main(["--no-ui", "--runs-dir", str(tmp_path / "runs"), *given]) == 2
    line = refused(capsys)
    prefix = "--data: " if how == "--data" else "data.source: "
    assert f"{prefix}{device} is a character device, not a file" in line, line
    assert "a regular file, a folder of them, or a glob of them" in line
    assert not (tmp_path / "runs").exists()


def test_a_named_pipe_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)  # opening it would block: the check must only stat it
    problem = prelaunch.source_problem(str(fifo))
    assert problem and "is a named pipe, not a file" in problem
    preset = apply_overrides(Preset(name="t"), {"data.source": str(fifo)})
    assert prelaunch.launch_problem(preset).startswith(f"data.source: {fifo} is a named pipe")


def test_a_glob_or_a_folder_that_reaches_a_device_is_refused(tmp_path):
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "a.bin").write_bytes(b"\0\1" * 8)
    os.mkfifo(tmp_path / "shards" / "b.bin")
    problem = prelaunch.source_problem(str(tmp_path / "shards" / "*.bin"))
    assert problem and "b.bin, a named pipe" in problem
    problem = prelaunch.source_problem(str(tmp_path / "shards"))
    assert problem and "holds b.bin, a named pipe" in problem
    if DEVICES:
        assert "character device" in prelaunch.source_problem("/dev/zer[o]")


def test_a_socket_is_refused(tmp_path):
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        assert "is a socket, not a file" in prelaunch.source_problem(str(path))


def test_regular_files_folders_and_globs_still_pass(tmp_path):
    (tmp_path / "t.txt").write_text("hello\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.bin").write_bytes(b"\0\1")
    for source in ("t.txt", "d", "d/*.bin", "*.txt"):
        assert prelaunch.source_problem(str(tmp_path / source)) is None, source
