"""Values near float's limit (1e308) and infinities: every face prints them compactly."""

from __future__ import annotations

import json
import math

import pytest

from cockpit import rundir
from cockpit.__main__ import main
from cockpit.common.format import (
    elapsed,
    fmt_eta,
    fmt_float,
    fmt_norm,
    human_bytes,
    human_count,
    human_duration,
)
from cockpit.health import HealthMonitor
from cockpit.plan.presets import Preset
from cockpit.rundir.events import encode_record

HUGE = (1e308, -1e308, 1.7976931348623157e308, 1e307, math.inf, -math.inf, math.nan)


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize(
    "formatter",
    [fmt_float, fmt_norm, human_count, human_bytes, human_duration, elapsed, fmt_eta],
)
def test_every_formatter_keeps_a_huge_value_short(formatter, value):
    assert len(formatter(value)) <= 12


@pytest.mark.parametrize(
    ("value", "spec", "expected"),
    [
        (1e308, ".4f", "1.0e+308"),
        (-1e308, ".4f", "-1.0e+308"),
        (2.31412, ".4f", "2.3141"),
        (123456789.5, ".1f", "123456789.5"),
        (1234567890.5, ".1f", "1.2e+09"),
        (3.3e307, ".1e", "3.3e+307"),
    ],
)
def test_fmt_float_switches_to_e_notation_only_for_huge_values(value, spec, expected):
    assert fmt_float(value, spec) == expected


def flooded_run(root, value: float):
    """A finished run of 60 plain steps, then 10 whose step and eval records hold `value` in
    every numeric field (enough history for the health rules to compare against)."""
    run_dir = rundir.create_run_dir(Preset(name="huge"), root=root)
    rundir.update_run_info(run_dir, status="finished", step=70, best_val_loss=value)
    fields = ("loss", "lr", "grad_norm", "tokens_per_s", "step_ms", "mfu", "vram_bytes")
    plain = (3.0, 1e-3, 1.0, 1e5, 40.0, 0.3, 2e9)
    records = [{"v": 1, "event": "start", "time": 1.0, "step": 0}]
    for step in range(1, 71):
        values = plain if step <= 60 else (value,) * len(fields)
        record = {"v": 1, "event": "step", "time": 1.0 + step, "step": step, "tokens": step}
        records.append(record | dict(zip(fields, values, strict=True)))
        if step % 10 == 0:
            val = 3.0 if step <= 60 else value
            records.append(
                {"v": 1, "event": "eval", "time": 1.5 + step, "step": step, "val_loss": val}
                | {"train_loss": val, "val_bpb": val}
            )
    records.append({"v": 1, "event": "end", "time": 80.0, "step": 70, "reason": "finished"})
    text = "".join(encode_record(r) + "\n" for r in records)
    (run_dir / rundir.EVENTS_JSONL).write_text(text)
    return run_dir


@pytest.mark.parametrize("value", [1e308, -1e308, math.inf])
def test_runs_and_attach_print_a_huge_loss_compactly(tmp_path, capsys, value):
    root = tmp_path / "runs"
    run_dir = flooded_run(root, value)
    assert main(["--runs-dir", str(root), "runs"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) < 120, out
    if math.isfinite(value):
        assert fmt_float(value) in out and f"{value:.1e}" in out
    assert main(["--runs-dir", str(root), "runs", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["run_id"] == run_dir.name
    assert main(["--runs-dir", str(root), "attach", "--no-ui", run_dir.name]) == 0
    out, err = capsys.readouterr()
    lines = (out + err).splitlines()
    assert any(line.startswith("step 70") for line in lines)
    assert max(len(line) for line in lines) < 200, max(lines, key=len)[:100]


@pytest.mark.parametrize("value", [1e308, -1e308, 1e200, math.inf])
def test_health_messages_about_a_huge_value_stay_short(value):
    records = []
    for step in range(1, 200):
        late = step > 150
        numbers = dict.fromkeys(("loss", "lr", "grad_norm", "vram_bytes", "tokens_per_s"), value)
        plain = {"loss": 3.0, "lr": 1e-3, "grad_norm": 1.0, "vram_bytes": 1e9, "tokens_per_s": 1e5}
        records.append(
            {"v": 1, "event": "step", "time": step, "step": step} | (numbers if late else plain)
        )
        if step % 10 == 0:
            val = value if late else 3.0
            records.append({"v": 1, "event": "eval", "time": step, "step": step, "val_loss": val})
    warnings = HealthMonitor().replay(records)
    assert warnings
    for w in warnings:
        assert len(w.message) < 250, w.message[:200]


@pytest.mark.parametrize("value", [1e308, 10**308, -1e308])
def test_huge_numbers_in_run_json_and_the_start_record_stay_short(tmp_path, capsys, value):
    root = tmp_path / "runs"
    run_dir = flooded_run(root, 1e308)
    info = json.loads((run_dir / rundir.RUN_JSON).read_text())
    for key in ("max_steps", "step", "created", "updated", "started", "params", "pid"):
        info[key] = value
    (run_dir / rundir.RUN_JSON).write_text(json.dumps(info))
    events = run_dir / rundir.EVENTS_JSONL
    lines = events.read_text().splitlines()
    start = json.loads(lines[0]) | {"max_steps": value, "params": value, "time": 1e308}
    events.write_text("\n".join([json.dumps(start), *lines[1:]]) + "\n")
    for argv in (["runs"], ["attach", "--no-ui", run_dir.name]):
        assert main(["--runs-dir", str(root), *argv]) == 0
        out, err = capsys.readouterr()
        longest = max((out + err).splitlines(), key=len)
        assert len(longest) < 250, longest[:120]
    assert main(["--runs-dir", str(root), "runs", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["max_steps"] == 2000  # a count past 2^53 is no count: the preset's is shown
