"""Pre-launch checks: data, tokenizer and device problems that would end a run at step 0 are
one line and exit 2, with nothing created, in headless mode and the app alike."""

from __future__ import annotations

import sys
import types
from array import array
from pathlib import Path

import pytest
from fake_trainer import use_fake_trainer
from test_gpu import TWO_GPUS, fake_nvml

from cockpit import rundir
from cockpit.__main__ import main
from cockpit.plan import gpu as gpu_mod
from cockpit.plan.presets import Preset, apply_overrides
from cockpit.runs import prelaunch


def shard(path: Path, ids: list[int], *, count: int | None = None) -> Path:
    header = array(
        "i", [prelaunch.SHARD_MAGIC, prelaunch.SHARD_VERSION, len(ids) if count is None else count]
    )
    header.extend([0] * (prelaunch.SHARD_HEADER_INTS - 3))
    path.write_bytes(header.tobytes() + array("H", ids).tobytes())
    return path


def bad_sources(tmp: Path) -> dict[str, tuple[str, str]]:
    """name -> (--data value, what the one error line says)."""
    (tmp / "empty.txt").write_bytes(b"")
    (tmp / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" * 10)
    (tmp / "random.bin").write_bytes(bytes(range(256)) * 8)  # ids up to 65535
    (tmp / "odd.bin").write_bytes(b"\1\0\2")
    shard(tmp / "cut.bin", [1, 2, 3], count=10)
    folder = tmp / "blobs"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"")
    (folder / "b.txt").write_bytes(b"\0\1\2")
    return {
        "empty": ("empty.txt", "empty.txt is empty"),
        "binary": ("image.txt", "image.txt is binary (it holds NUL bytes), not text"),
        "random .bin": (
            "random.bin",
            "random.bin holds token id 65534, beyond model.vocab_size=256",
        ),
        "odd .bin": ("odd.bin", "odd.bin has an odd number of bytes"),
        "cut shard": ("cut.bin", "cut.bin is truncated or damaged"),
        "folder": ("blobs", "blobs holds no text: every file is empty or binary"),
    }


@pytest.fixture
def no_gpu(monkeypatch):
    gpu_mod._reset_nvml_for_tests()
    yield
    gpu_mod._reset_nvml_for_tests()


def one_error(capsys) -> str:
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("gpt-cockpit: error: ")]
    assert out == "" and len(errors) == 1, err
    return errors[0]


@pytest.mark.parametrize(
    "case", ["empty", "binary", "random .bin", "odd .bin", "cut shard", "folder"]
)
def test_bad_data_is_refused_before_anything_is_created(tmp_path, monkeypatch, capsys, case):
    use_fake_trainer(monkeypatch)
    data, says = bad_sources(tmp_path)[case]
    code = main(["--no-ui", "--runs-dir", str(tmp_path / "runs"), "--data", str(tmp_path / data)])
    assert code == 2
    line = one_error(capsys)
    assert line.startswith("gpt-cockpit: error: data.source: ") and says in line, line
    assert "pass --data" not in line  # it was passed; what it holds is the problem
    assert not (tmp_path / "runs").exists()


def test_good_data_passes_the_checks(tmp_path):
    (tmp_path / "text.txt").write_text("hello world\n" * 100)
    shard(tmp_path / "ok.bin", [1, 2, 255] * 100)
    (tmp_path / "raw.bin").write_bytes(array("H", [0, 7, 255] * 100).tobytes())
    for name in ("text.txt", "ok.bin", "raw.bin"):
        preset = apply_overrides(Preset(name="t"), {"data.source": str(tmp_path / name)})
        assert prelaunch.data_problem(preset) is None, name
    assert prelaunch.data_problem(Preset(name="t")) is None  # the embedded corpus


def test_the_shard_header_agrees_with_the_trainers():
    """Read from the trainer's source, so the check needs no torch."""
    import ast

    import cockpit

    source = (Path(cockpit.__file__).parent / "train" / "data.py").read_text()
    values = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "").startswith("SHARD_")
    }
    assert (prelaunch.SHARD_MAGIC, prelaunch.SHARD_VERSION, prelaunch.SHARD_HEADER_INTS) == (
        values["SHARD_MAGIC"],
        values["SHARD_VERSION"],
        values["SHARD_HEADER_INTS"],
    )


def test_a_bpe_preset_without_cached_files_is_refused(tmp_path, monkeypatch, capsys):
    pytest.importorskip("tiktoken")
    use_fake_trainer(monkeypatch)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    assert main(["--no-ui", "--runs-dir", str(tmp_path / "runs"), "--preset", "gpt2_124m"]) == 2
    line = one_error(capsys)
    assert line.startswith(
        "gpt-cockpit: error: data.tokenizer: the gpt2 tokenizer needs tiktoken's BPE files"
    )
    assert "data.tokenizer=byte" in line and not (tmp_path / "runs").exists()


def test_token_files_need_no_bpe_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    shard(tmp_path / "ok.bin", [1, 2, 3] * 100)
    preset = apply_overrides(
        Preset(name="t"),
        {
            "data.source": str(tmp_path / "ok.bin"),
            "data.tokenizer": "gpt2",
            "model.vocab_size": 50304,
        },
    )
    assert prelaunch.tokenizer_problem(preset) is None


def nvml_that_fails() -> types.ModuleType:
    mod = types.ModuleType("pynvml")

    def init() -> None:
        raise RuntimeError("NVML Shared Library Not Found")

    mod.nvmlInit = init
    return mod


def test_device_cuda_without_a_gpu_is_refused(tmp_path, monkeypatch, capsys, no_gpu):
    use_fake_trainer(monkeypatch)
    monkeypatch.setitem(sys.modules, "pynvml", nvml_that_fails())
    assert main(["--no-ui", "--runs-dir", str(tmp_path / "runs"), "--device", "cuda"]) == 2
    line = one_error(capsys)
    assert line == (
        "gpt-cockpit: error: --device cuda: no GPU found on this machine "
        "(NVML unavailable: NVML Shared Library Not Found); use --device cpu or auto"
    )
    assert not (tmp_path / "runs").exists()


def test_device_checks_with_gpus_and_without_nvml(monkeypatch, no_gpu):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(TWO_GPUS))
    assert prelaunch.device_problem("cuda") is None and prelaunch.device_problem("cuda:1") is None
    assert "has 2 GPU(s), cuda:0 to cuda:1" in prelaunch.device_problem("cuda:2")
    gpu_mod._reset_nvml_for_tests()
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML to ask: the child finds out
    assert prelaunch.device_problem("cuda") is None
    assert prelaunch.device_problem("cpu") is None and prelaunch.device_problem("auto") is None


def test_the_app_refuses_with_the_same_line(tmp_path):
    from cockpit.tui.app import default_launcher

    data, says = bad_sources(tmp_path)["random .bin"]
    preset = apply_overrides(Preset(name="t"), {"data.source": str(tmp_path / data)})
    with pytest.raises(rundir.RunError, match="data.source: .*" + says.replace(".", r"\.")):
        default_launcher(preset, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_resume_checkpoint_names_match_the_trainers():
    """prelaunch repeats the checkpoint names (it must not import torch): they must agree."""
    from cockpit.runs.prelaunch import RESUME_CHECKPOINTS
    from cockpit.train import checkpoint

    assert RESUME_CHECKPOINTS == (checkpoint.LAST, checkpoint.LAST_PREV)
