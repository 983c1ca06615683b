"""`gpt-cockpit plot`: a readable PNG of loss, val, LR and grad norm, with warnings marked."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

from cockpit.__main__ import main
from cockpit.runs import compare

SPIKE_RUN = Path(__file__).parent / "tui" / "data" / "finished_run"  # 250 steps, 4 warnings
pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install -e '.[test]')")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def orange_pixels(path: Path) -> int:
    """Pixels of the warning colour (#e69f00)."""
    import matplotlib.image

    rgb = matplotlib.image.imread(str(path))[..., :3]
    target = (0xE6 / 255, 0x9F / 255, 0x00)
    close = (abs(rgb[..., 0] - target[0]) < 0.06) & (abs(rgb[..., 1] - target[1]) < 0.06)
    return int((close & (rgb[..., 2] < 0.15)).sum())


def test_plot_a_run_with_its_warnings_marked(tmp_path, capsys):
    out = tmp_path / "spike.png"
    assert main(["plot", str(SPIKE_RUN), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    width, height = png_size(out)
    assert 1000 <= width <= 2000 and 600 <= height <= 1200
    assert 30_000 < out.stat().st_size < 2_000_000
    assert orange_pixels(out) > 200  # the dashed warning lines

    quiet = compare.read_curves(SPIKE_RUN)
    quiet.warnings = []
    from cockpit.runs.plot import draw

    draw([quiet], tmp_path / "quiet.png")
    assert orange_pixels(tmp_path / "quiet.png") < 20  # the same curves without warnings


@pytest.mark.slow
def test_plot_two_runs_by_tokens(tmp_path, capsys, finished_run):
    out = tmp_path / "sub" / "two.png"  # its folder is made
    assert (
        main(["plot", str(SPIKE_RUN), str(finished_run), "--out", str(out), "--align", "tokens"])
        == 0
    )
    assert png_size(out)[0] >= 1000


def test_plot_errors_are_one_line(tmp_path, capsys, monkeypatch):
    assert main(["plot", str(SPIKE_RUN), "--out", str(tmp_path / "x.jpg")]) == 2
    assert "PNG" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert main(["plot", str(SPIKE_RUN), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "pip install matplotlib" in err and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()
