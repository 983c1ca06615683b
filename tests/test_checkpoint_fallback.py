"""Checkpoint fallbacks and what they say: another model's last.pt, a disk where nothing ever
fit, a truncated file's reason in whole sentences."""

from __future__ import annotations

import pytest
import torch
from test_disk_full import full_disk_after
from tiny_runs import copy_run, events_of, train_in_process

from cockpit import rundir
from cockpit.common import fsutil
from cockpit.train import checkpoint as ckpt


def another_shape(path):
    """A valid checkpoint (checksum and all) whose model has one tensor of another shape."""
    state = ckpt.load_checkpoint(path)
    name = next(k for k, v in state["model"].items() if v.ndim == 2)
    rows, cols = state["model"][name].shape
    state["model"][name] = torch.zeros(rows + 3, cols)
    ckpt.save_checkpoint(path, state)
    assert ckpt.verify_checksum(path) is True


@pytest.mark.slow
def test_a_last_pt_of_another_model_shape_falls_back_to_last_prev(tmp_path, stopped_run):
    run_dir = copy_run(stopped_run, tmp_path / "run")  # stopped at 25, the eval before at 20
    folder = run_dir / rundir.CHECKPOINTS
    another_shape(folder / ckpt.LAST)
    proc = train_in_process(run_dir, resume=True)
    assert proc.returncode == 0, proc.stderr
    warning = [w for w in events_of(run_dir, "warning") if w["rule"] == "checkpoint"][-1]
    assert (
        "last.pt" in warning["message"] and "does not fit this preset's model" in warning["message"]
    )
    assert warning["message"].endswith("resuming from last.prev.pt instead")
    assert events_of(run_dir, "start")[-1]["resumed_from"] == 20
    assert events_of(run_dir, "end")[-1]["reason"] == "finished"


@pytest.mark.slow
def test_when_no_checkpoint_fits_the_error_says_why(tmp_path, stopped_run):
    run_dir = copy_run(stopped_run, tmp_path / "run")
    folder = run_dir / rundir.CHECKPOINTS
    for name in (ckpt.LAST, ckpt.LAST_PREV):
        another_shape(folder / name)
    proc = train_in_process(run_dir, resume=True)
    assert proc.returncode == 1
    assert "does not fit this preset's model" in proc.stderr and "Traceback" not in proc.stderr
    assert events_of(run_dir, "end")[-1]["reason"] == "error"


def state(step: int) -> dict:
    return {"format": 1, "step": step, "model": {"w": torch.randn(64, 64)}, "optimizer": {}}


def test_a_full_disk_before_any_checkpoint_fit_says_there_is_none(tmp_path, monkeypatch):
    monkeypatch.setattr(fsutil.os, "fdopen", full_disk_after(1024))
    with pytest.raises(ckpt.CheckpointError) as caught:
        ckpt.save_last(tmp_path, state(1) | {"preset": {}})
    text = str(caught.value)
    assert "no space left on" in text and "previous checkpoint is kept" not in text
    assert "no checkpoint has fit on this disk yet, so there is none to resume from" in text
    monkeypatch.undo()
    assert not (tmp_path / ckpt.LAST).exists()


def test_a_full_disk_after_a_checkpoint_says_which_is_kept(tmp_path, monkeypatch):
    ckpt.save_last(tmp_path, state(1) | {"preset": {}})
    monkeypatch.setattr(fsutil.os, "fdopen", full_disk_after(1024))
    with pytest.raises(ckpt.CheckpointError, match=r"the previous checkpoint is kept \(last\.pt\)"):
        ckpt.save_last(tmp_path, state(2) | {"preset": {}})
    with pytest.raises(ckpt.CheckpointError, match=r"the previous checkpoint is kept \(last\.pt\)"):
        ckpt.save_checkpoint(tmp_path / ckpt.BEST, state(2) | {"preset": {}})


def test_a_truncated_files_reason_is_torchs_first_sentence_whole(tmp_path):
    path = tmp_path / "last.pt"
    ckpt.save_checkpoint(path, state(1) | {"preset": {}})
    path.write_bytes(path.read_bytes()[:100])
    try:
        torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch's own words, whatever it raises
        torch_text = str(exc).splitlines()[0]
    with pytest.raises(ckpt.CheckpointError) as caught:
        ckpt.load_checkpoint(path)
    reason = str(caught.value).split("cannot be read (", 1)[1]
    assert reason.endswith(")") and len(reason) < 220
    sentence = reason[:-1]
    assert torch_text.startswith(sentence)
    rest = torch_text[len(sentence) :]
    assert rest == "" or rest.startswith((". ", ".")), (sentence, rest)  # cut at a full stop


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "failed reading zip archive: no central directory. This is an internal error.",
            "failed reading zip archive: no central directory",
        ),
        ("short", "short"),
        ("word " * 80 + "end.", ("word " * 40).strip() + " ..."),
    ],
)
def test_first_sentence(text, expected):
    assert ckpt._first_sentence(RuntimeError(text)) == expected
