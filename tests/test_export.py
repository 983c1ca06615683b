"""`gpt-cockpit export`: a GPT-2 folder transformers loads with our logits; golf and bdh round-trip."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from cockpit.__main__ import main
from cockpit.plan.presets import ModelConfig, Preset
from cockpit.train.export import export_run, load_exported
from cockpit.train.models import build_model
from cockpit.train.sample import RunModel, load_run_model

pytestmark = pytest.mark.slow


def run_model(cfg: ModelConfig, tokenizer: dict | None = None) -> RunModel:
    """A freshly initialised model (random weights are as good as trained ones for a layout)."""
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():  # GPT's zero-initialised parts get values, so a wrong mapping shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    preset = Preset(name="t", model=cfg)
    state = tokenizer or {"name": "byte"}
    return RunModel(model, None, preset, Path("best.pt"), 7, torch.device("cpu"), state)


def hf_logits(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    transformers = pytest.importorskip(
        "transformers", reason="transformers is not installed (pip install -e '.[test]')"
    )
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        return hf(ids).logits


def our_logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.logits_for(ids, last_only=False)


def test_a_trained_run_loads_in_transformers_with_our_logits(tmp_path, finished_run, capsys):
    out = tmp_path / "hf"
    assert main(["export", str(finished_run), "--to", str(out)]) == 0
    files = capsys.readouterr().out.split()
    assert {Path(f).name for f in files} >= {"model.safetensors", "config.json", "README.md"}
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["vocab_size"] == 64
    assert (
        config["cockpit_tokenizer"].startswith("char:") and "padding" in config["cockpit_tokenizer"]
    )
    assert json.loads((out / "cockpit_tokenizer.json").read_text())["name"] == "char"
    assert "GPT2LMHeadModel" in (out / "README.md").read_text()

    rm = load_run_model(finished_run, "best", "cpu", tokenizer=False)
    ids = torch.randint(0, 64, (2, 32), generator=torch.Generator().manual_seed(1))
    diff = (hf_logits(out, ids) - our_logits(rm.model, ids)).abs().max().item()
    assert diff < 1e-4, diff


def test_bias_and_an_untied_head_map_too(tmp_path):
    cfg = ModelConfig(
        n_layer=2,
        n_head=2,
        n_embd=16,
        block_size=16,
        vocab_size=50,
        bias=True,
        tie_embeddings=False,
        mlp_ratio=2,
    )
    rm = run_model(cfg)
    export_run(rm, tmp_path / "hf", "r")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["tie_word_embeddings"] is False and config["n_inner"] == 32
    ids = torch.randint(0, 50, (3, 16), generator=torch.Generator().manual_seed(2))
    diff = (hf_logits(tmp_path / "hf", ids) - our_logits(rm.model, ids)).abs().max().item()
    assert diff < 1e-4, diff


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(
            arch="golf",
            n_layer=2,
            n_head=2,
            n_kv_head=1,
            n_embd=16,
            block_size=16,
            vocab_size=40,
            logit_softcap=30.0,
        ),
        ModelConfig(
            arch="golf",
            n_layer=2,
            n_head=2,
            n_embd=16,
            block_size=16,
            vocab_size=40,
            tie_embeddings=False,
        ),
        ModelConfig(
            arch="bdh",
            n_layer=2,
            n_head=2,
            n_embd=16,
            block_size=16,
            vocab_size=40,
            mlp_internal_dim_multiplier=4,
        ),
    ],
    ids=["golf-tied", "golf-untied", "bdh"],
)
def test_golf_and_bdh_round_trip_into_our_model(tmp_path, cfg):
    rm = run_model(cfg, {"name": "char", "chars": "abc"})
    written = export_run(rm, tmp_path / "out", "r")
    assert {p.name for p in written} == {
        "model.safetensors",
        "cockpit_config.json",
        "cockpit_tokenizer.json",
        "README.md",
    }
    back = load_exported(tmp_path / "out")
    assert type(back) is type(rm.model)
    ids = torch.randint(0, 40, (2, 16), generator=torch.Generator().manual_seed(3))
    assert torch.equal(our_logits(back, ids), our_logits(rm.model, ids))
    note = json.loads((tmp_path / "out" / "cockpit_config.json").read_text())["tokenizer"]
    assert note.startswith("char:") and "3 characters" in note and "ids 3..39 are padding" in note


def test_export_errors_are_one_line(tmp_path, finished_run, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    assert main(["export", str(finished_run), "--to", str(tmp_path / "file")]) == 2
    assert "not a directory" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)  # as if it were not installed
    assert main(["export", str(finished_run), "--to", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "pip install" in err and "safetensors" in err and err.count("\n") == 1
