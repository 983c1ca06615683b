"""One bad line longer than a listing's window at the end of the log hides no good record."""

from __future__ import annotations

import pytest

from cockpit import rundir, runs
from cockpit.__main__ import main
from cockpit.plan.presets import Preset


def run_with_a_long_bad_last_line(root, tail: bytes):
    run_dir = rundir.create_run_dir(Preset(name="torn"), root=root)
    rundir.update_run_info(run_dir, status="stopped", step=7)
    good = (
        '{"v":1,"event":"start","time":1.0,"step":0}\n'
        + "".join(
            f'{{"v":1,"event":"step","time":{1 + s}.0,"step":{s},"loss":{3 - s / 10}}}\n'
            for s in range(1, 8)
        )
        + '{"v":1,"event":"eval","time":9.0,"step":7,"val_loss":2.5}\n'
    )
    (run_dir / rundir.EVENTS_JSONL).write_bytes(good.encode() + tail)
    return run_dir


TAILS = {
    "20 MB, no newline": b'{"v":1,"event":"step","loss":' + b"7" * (20 << 20),
    "20 MB and a newline": b"\x00" * (20 << 20) + b"\n",
    "two long lines": b"x" * (1 << 20) + b"\n" + b"y" * (1 << 20),
}


@pytest.mark.parametrize("tail", list(TAILS.values()), ids=list(TAILS))
def test_runs_shows_the_last_good_loss_before_a_long_bad_line(tmp_path, capsys, tail):
    root = tmp_path / "runs"
    run_dir = run_with_a_long_bad_last_line(root, tail)
    (summary,) = runs.list_runs(root)
    long_lines = len([line for line in tail.split(b"\n") if line])
    assert summary.last_loss == pytest.approx(2.3) and summary.step == 7
    assert summary.skipped == long_lines
    assert main(["--runs-dir", str(root), "runs"]) == 0
    out, err = capsys.readouterr()
    assert "2.3000" in out and "2.5000" in out
    assert f"{run_dir.name}: skipped {long_lines} unreadable line(s)" in err


def test_a_long_line_beyond_the_scan_limit_is_given_up_quietly(tmp_path, monkeypatch):
    from cockpit.rundir import events

    monkeypatch.setattr(events, "LONG_LINE_SCAN", 1 << 20)
    run_dir = run_with_a_long_bad_last_line(tmp_path / "runs", b"z" * (3 << 20))
    records, skipped = rundir.read_tail(run_dir / rundir.EVENTS_JSONL)
    assert records == [] and skipped == 0
