"""`gpt-cockpit compare` and cockpit.runs.compare: best val, final loss, tokens, preset differences."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cockpit.__main__ import main
from cockpit.runs import compare

SPIKE_RUN = Path(__file__).parent / "tui" / "data" / "finished_run"  # 250 steps, warnings


def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    """The recorded spike run, and a copy whose preset says another lr and batch size."""
    a = shutil.copytree(SPIKE_RUN, tmp_path / "a-run")
    b = shutil.copytree(SPIKE_RUN, tmp_path / "b-run")
    preset = json.loads((b / "preset.json").read_text())
    preset["train"]["lr"] = 0.5
    preset["description"] = "another description"  # not a difference in training
    (b / "preset.json").write_text(json.dumps(preset))
    return a, b


def test_curves_and_facts_of_a_run():
    c = compare.read_curves(SPIKE_RUN)
    assert c.status == "finished" and c.preset_name == "spike_run"
    assert c.last_step == 250 and c.tokens(250) == 250 * 1024 and c.tokens_per_step == 1024
    assert c.best_val is not None and c.best_val[1] in c.val.steps
    assert min(v for v in c.val.values) == c.best_val[0]
    assert c.final == (c.loss.values[-1], 250)
    assert [s for s, _, _ in c.warnings] and all(sev != "info" for _, sev, _ in c.warnings)
    by_tokens = c.aligned(c.val, "tokens")
    assert by_tokens.steps == [s * 1024 for s in c.val.steps] and by_tokens.values == c.val.values


def test_compare_prints_best_val_and_the_differences(tmp_path, capsys):
    a, b = two_runs(tmp_path)
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "best val" in out and "a-run" in out and "b-run" in out
    best = compare.read_curves(a).best_val
    assert f"{best[0]:.4f}" in out and f"step {best[1]}" in out
    assert "train.lr" in out and "1.5" in out and "0.5" in out
    assert "description" not in out  # labels are no difference in training

    assert main(["compare", str(a), str(b), "--align", "tokens", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["differences"] == {"train.lr": [1.5, 0.5]}
    row = data["runs"][0]
    assert row["best_val_at"] == row["best_val_step"] * 1024 and row["tokens"] == 256000
    assert row["steps"] == 250 and row["warnings"] >= 1


def test_compare_the_same_preset_and_a_bad_run(tmp_path, capsys):
    a = shutil.copytree(SPIKE_RUN, tmp_path / "a")
    b = shutil.copytree(SPIKE_RUN, tmp_path / "b")
    assert main(["compare", str(a), str(b), "--align", "tokens"]) == 0
    out = capsys.readouterr().out
    assert "the same in every field" in out and "205.8k" not in out
    assert main(["compare", str(a), str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err
