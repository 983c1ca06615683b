"""A full disk (ENOSPC injected at the file layer): a clear message, the previous checkpoint kept,
and the run ended with an `error` record whenever anything can still be written."""

from __future__ import annotations

import errno
import io
import os

import pytest
import torch
from tiny_runs import events_of, make_run, train_in_process

from cockpit import rundir
from cockpit.common import fsutil
from cockpit.rundir import events as events_module
from cockpit.train import checkpoint as ckpt


def full_disk_after(limit: int):
    """An os.fdopen whose binary files raise ENOSPC once `limit` bytes have been written."""
    real_fdopen = os.fdopen

    class Full(io.RawIOBase):
        def __init__(self, handle) -> None:
            self.handle, self.written = handle, 0

        def write(self, data) -> int:
            if self.written + len(data) > limit:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(data)
            return self.handle.write(data)

        def writable(self) -> bool:
            return True

        def fileno(self) -> int:
            return self.handle.fileno()

        def flush(self) -> None:
            if not self.handle.closed:
                self.handle.flush()

        def close(self) -> None:
            super().close()
            self.handle.close()

    def fdopen(fd, mode="r", *args, **kwargs):
        handle = real_fdopen(fd, mode, *args, **kwargs)
        return Full(handle) if "b" in mode else handle

    return fdopen


def small_state(step: int) -> dict:
    return {
        "format": 1,
        "step": step,
        "model": {"w": torch.randn(64, 64)},
        "optimizer": {},
        "preset": {},
    }


def test_a_checkpoint_write_on_a_full_disk_says_so_and_keeps_the_previous(tmp_path, monkeypatch):
    ckpt.save_last(tmp_path, small_state(1))
    monkeypatch.setattr(fsutil.os, "fdopen", full_disk_after(4096))
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.save_last(tmp_path, small_state(2))
    text = str(info.value)
    assert f"no space left on {tmp_path} (" in text and "bytes free)" in text
    assert "previous checkpoint is kept" in text and "inline_container" not in text
    monkeypatch.undo()
    assert ckpt.load_checkpoint(tmp_path / ckpt.LAST)["step"] == 1
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
def test_a_run_whose_checkpoint_cannot_be_written_ends_with_an_error_record(tmp_path, monkeypatch):
    run_dir = make_run(tmp_path, "train.max_steps=30", "train.eval_interval=10")
    monkeypatch.setattr(fsutil.os, "fdopen", full_disk_after(0))  # checkpoints only: binary files
    proc = train_in_process(run_dir)
    assert proc.returncode == 1
    assert "no space left on" in proc.stderr and "bytes free" in proc.stderr, proc.stderr
    (err,) = events_of(run_dir, "error")
    assert "no space left on" in err["message"]
    assert events_of(run_dir, "end")[-1]["reason"] == "error"
    assert rundir.read_run_info(run_dir).status == "error"
    assert not (run_dir / rundir.CHECKPOINTS / ckpt.LAST).exists()


@pytest.mark.slow
def test_a_run_that_can_write_nothing_more_still_says_why(tmp_path, monkeypatch):
    run_dir = make_run(tmp_path, "train.max_steps=30", "train.eval_interval=0")
    real = events_module.EventWriter.write_many
    calls = {"n": 0}

    def fills_up(self, records):
        calls["n"] += 1
        if calls["n"] > 3:  # the start and a few steps, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, records)

    def no_room(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(events_module.EventWriter, "write_many", fills_up)
    monkeypatch.setattr(rundir.info, "atomic_write_text", no_room)
    monkeypatch.setattr(fsutil.os, "fdopen", full_disk_after(0))
    proc = train_in_process(run_dir)
    assert proc.returncode == 1
    assert f"no space left on {run_dir} (" in proc.stderr
    assert "the end of the run could not be recorded" in proc.stderr
    assert "Traceback" not in proc.stderr
