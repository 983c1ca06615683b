"""`gpt-cockpit serve`: the app through textual-serve, seen by headless Chromium when there is one."""

from __future__ import annotations

import argparse
import importlib.util
import io
import shlex
import sys
from pathlib import Path

import pytest

from cockpit.__main__ import main
from cockpit.cli.tools import serve_command

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_each_browser_session_runs_this_app_on_the_same_runs_folder(tmp_path):
    args = argparse.Namespace(runs_dir=str(tmp_path / "runs"))
    assert shlex.split(serve_command(args)) == [
        sys.executable,
        "-m",
        "cockpit",
        "--runs-dir",
        str((tmp_path / "runs").resolve()),
    ]
    assert shlex.split(serve_command(argparse.Namespace())) == [sys.executable, "-m", "cockpit"]


def test_serve_without_textual_serve_says_how_to_get_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "textual_serve.server", None)  # as if it were not installed
    assert main(["serve", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "pip install textual-serve" in err and err.count("\n") == 1


@pytest.mark.slow
def test_a_browser_draws_the_served_app(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        import serve_screenshot
    finally:
        sys.path.remove(str(BENCH))
    if serve_screenshot.find_browser() is None:
        pytest.skip("no Chromium on PATH (apt-get install -y chromium)")
    if importlib.util.find_spec("textual_serve") is None:
        pytest.skip("textual-serve is not installed (pip install -e '.[test]')")
    image = pytest.importorskip("matplotlib.image", reason="matplotlib reads the PNG back")

    def light(png) -> float:
        """The share of light pixels: the app's text on its dark screen."""
        return float((image.imread(png)[..., :3].mean(axis=2) > 0.6).mean())

    # the screenshot once the app has drawn and holds still (about 2 s), 20 s at most
    out = serve_screenshot.screenshot(
        tmp_path / "serve.png",
        runs_dir=str(tmp_path / "runs"),
        wait_ms=20000,
        ready=lambda png: light(io.BytesIO(png)) > 0.01,
    )
    pixels = image.imread(str(out))[..., :3]
    assert pixels.shape[1] == 1280 and pixels.shape[0] > 400
    text = light(str(out))
    assert text > 0.01, f"{text:.4f}: a blank page or textual-serve's start page, not the app"
