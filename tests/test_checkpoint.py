"""Checkpoint files: atomic writes, last/prev rotation, weights_only loading, corrupt-file fallback, RNG state."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

from cockpit.train import checkpoint as ckpt


def make_state(step: int) -> dict:
    torch.manual_seed(step)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    return {
        "format": ckpt.FORMAT_VERSION,
        "step": step,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "preset": {"name": "t"},
        "rng": ckpt.rng_state(),
        "sampler": ckpt.plain({"pos": np.int64(7), "perm": np.arange(5, dtype=np.int64)}),
        "best_val_loss": None,
    }


def test_roundtrip_weights_only(tmp_path):
    state = make_state(3)
    path = tmp_path / "x.pt"
    nbytes = ckpt.save_checkpoint(path, state)
    assert nbytes == path.stat().st_size > 0
    loaded = ckpt.load_checkpoint(path)
    assert loaded["step"] == 3
    assert torch.equal(loaded["model"]["weight"], state["model"]["weight"])
    assert loaded["sampler"]["pos"] == 7 and torch.equal(loaded["sampler"]["perm"], torch.arange(5))
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind


def test_save_last_keeps_previous(tmp_path):
    ckpt.save_last(tmp_path, make_state(1))
    assert not (tmp_path / ckpt.LAST_PREV).exists()
    ckpt.save_last(tmp_path, make_state(2))
    assert ckpt.load_checkpoint(tmp_path / ckpt.LAST)["step"] == 2
    assert ckpt.load_checkpoint(tmp_path / ckpt.LAST_PREV)["step"] == 1
    ckpt.save_last(tmp_path, make_state(3))
    assert ckpt.load_checkpoint(tmp_path / ckpt.LAST_PREV)["step"] == 2


def test_failed_write_leaves_old_file(tmp_path):
    ckpt.save_last(tmp_path, make_state(1))
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        ckpt.save_checkpoint(
            tmp_path / ckpt.LAST, {"format": 1, "bad": lambda: 0}
        )  # cannot be pickled
    assert ckpt.load_checkpoint(tmp_path / ckpt.LAST)["step"] == 1
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_last_falls_back_to_prev(tmp_path, damage):
    ckpt.save_last(tmp_path, make_state(1))
    ckpt.save_last(tmp_path, make_state(2))
    last = tmp_path / ckpt.LAST
    data = last.read_bytes()
    if damage == "truncate":
        last.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        last.write_bytes(b"not a checkpoint at all" * 10)
    else:
        last.write_bytes(b"")
    loaded = ckpt.load_latest(tmp_path)
    assert loaded.path.name == ckpt.LAST_PREV
    assert loaded.state["step"] == 1
    assert len(loaded.problems) == 1 and "last.pt" in loaded.problems[0]
    assert any(w in loaded.problems[0] for w in ("corrupt", "empty"))


def test_both_bad_is_a_clear_error(tmp_path):
    (tmp_path / ckpt.LAST).write_bytes(b"\x00" * 100)
    (tmp_path / ckpt.LAST_PREV).write_bytes(b"")
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.load_latest(tmp_path)
    text = str(info.value)
    assert "last.pt" in text and "last.prev.pt" in text and "no usable checkpoint" in text


def test_no_checkpoint_at_all(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="no such checkpoint"):
        ckpt.load_latest(tmp_path)


def test_not_a_cockpit_checkpoint(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "a.pt")
    with pytest.raises(ckpt.CheckpointError, match="missing format"):
        ckpt.load_checkpoint(tmp_path / "a.pt")
    torch.save(torch.zeros(2), tmp_path / "b.pt")
    with pytest.raises(ckpt.CheckpointError, match="not a gpt-cockpit checkpoint"):
        ckpt.load_checkpoint(tmp_path / "b.pt")
    state = make_state(1)
    state["format"] = 99
    torch.save(state, tmp_path / "c.pt")
    with pytest.raises(ckpt.CheckpointError, match="format 99"):
        ckpt.load_checkpoint(tmp_path / "c.pt")


def test_pickled_objects_are_refused(tmp_path):
    from fractions import Fraction  # any class: weights_only must refuse to build it

    torch.save(
        {"format": 1, "step": 0, "model": {}, "optimizer": {}, "preset": Fraction(1, 3)},
        tmp_path / "e.pt",
    )
    with pytest.raises(ckpt.CheckpointError, match="refuses to build.*Fraction"):
        ckpt.load_checkpoint(tmp_path / "e.pt")


def test_rng_state_roundtrip_through_a_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    ckpt.save_checkpoint(tmp_path / "r.pt", {"rng": ckpt.rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item(), np.random.randn())
    state = torch.load(tmp_path / "r.pt", weights_only=True)
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    ckpt.set_rng_state(state["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item(), np.random.randn()) == expected


def flip_bit(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_checkpoints_carry_a_checksum_torch_load_still_reads(tmp_path):
    path = tmp_path / "x.pt"
    ckpt.save_checkpoint(path, make_state(3))
    assert path.read_bytes()[-ckpt.FOOTER_SIZE :].startswith(ckpt.FOOTER_TAG)
    assert ckpt.verify_checksum(path) is True
    assert torch.load(path, weights_only=True)["step"] == 3  # plain torch still loads it


def test_one_flipped_bit_is_caught_and_resume_falls_back_to_prev(tmp_path):
    ckpt.save_last(tmp_path, make_state(1))
    ckpt.save_last(tmp_path, make_state(2))
    last = tmp_path / ckpt.LAST
    # A bit inside the model's weights: the zip still reads, the numbers would silently change.
    weights = torch.load(last, weights_only=True)["model"]["weight"].numpy().tobytes()
    flip_bit(last, last.read_bytes().index(weights) + 5)
    assert ckpt.verify_checksum(last) is False
    with pytest.raises(ckpt.CheckpointError, match="checksum mismatch"):
        ckpt.load_checkpoint(last)
    loaded = ckpt.load_latest(tmp_path)
    assert loaded.path.name == ckpt.LAST_PREV and loaded.state["step"] == 1
    assert "last.pt: checksum mismatch" in loaded.problems[0]


def test_a_checkpoint_without_a_footer_still_loads(tmp_path):
    path = tmp_path / "old.pt"
    torch.save(make_state(4), path)  # as versions before checksums wrote it
    assert ckpt.verify_checksum(path) is None
    assert ckpt.load_checkpoint(path)["step"] == 4


def test_checkpoints_are_readable_as_the_umask_allows(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        path, _ = ckpt.save_last(tmp_path, make_state(1))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == ckpt.SHARED_FILE_MODE == 0o644


class RunsCode:
    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_named_as_such_and_never_runs(tmp_path):
    marker = tmp_path / "ran"
    torch.save(
        {"format": 1, "step": 0, "model": {}, "optimizer": {}, "preset": RunsCode(marker)},
        tmp_path / "evil.pt",
    )
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.load_checkpoint(tmp_path / "evil.pt")
    assert "refused: the file asks to run code (GLOBAL posix.system)" in str(info.value)
    assert not marker.exists()


def test_random_bytes_are_corrupt_not_refused(tmp_path):
    rng = random.Random(3)
    for i in range(5):
        path = tmp_path / f"noise{i}.pt"
        path.write_bytes(bytes(rng.randrange(256) for _ in range(4096)))
        with pytest.raises(ckpt.CheckpointError, match="truncated or corrupt"):
            ckpt.load_checkpoint(path)
