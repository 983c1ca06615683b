"""Your own model (model.arch = PATH.py:ClassName): a nanoGPT-style file written here trains,
resumes exactly, samples, and is planned; a broken file is one line before any run exists.

The model file is written into tmp_path by each test and never imported by the project's own
process: the measuring child, the tracer child and the training child import it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
import types
from pathlib import Path

import pytest
from tiny_runs import copy_run, events_of, step_losses, train_in_process, write_corpus

from cockpit.__main__ import main
from cockpit.plan import presets
from cockpit.plan.presets import PresetError, apply_overrides, load_preset_file, preset_from_dict

ROOT = Path(__file__).resolve().parents[1]
EXT_DIR = ROOT / ".cache" / "fake_cuda"  # the fake-CUDA extension, built once (as test_trace)

# nanoGPT's model.py, cut down: learned positions, pre-LayerNorm blocks, SDPA, tied head.
# `mlp_mult` is a key of its own, not one of the preset schema's model fields.
NANO = """
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        C = config.n_embd
        self.n_head = config.n_head
        self.ln_1 = nn.LayerNorm(C, bias=config.bias)
        self.c_attn = nn.Linear(C, 3 * C, bias=config.bias)
        self.c_proj = nn.Linear(C, C, bias=config.bias)
        self.ln_2 = nn.LayerNorm(C, bias=config.bias)
        self.c_fc = nn.Linear(C, config.mlp_mult * C, bias=config.bias)
        self.mlp_proj = nn.Linear(config.mlp_mult * C, C, bias=config.bias)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.drop(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))
        return x + self.drop(self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)))))


class TinyGPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight
        self.apply(self._init)

    def _init(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        b, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        x = self.ln_f(x)
        if targets is None:
            return self.lm_head(x[:, [-1], :]), None
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss
"""

SHAPE = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, "vocab_size": 64}
TRAIN = {
    "batch_size": 4,
    "max_steps": 50,
    "warmup_steps": 0,
    "lr": 3e-3,
    "min_lr": 3e-4,
    "eval_interval": 25,
    "eval_steps": 2,
    "log_interval": 5,
    "sample_tokens": 16,
}


def write_model(folder: Path, source: str = NANO, name: str = "model.py") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def write_split_model(folder: Path) -> tuple[Path, Path]:
    """NANO in two files, as a model grows: my_blocks.py holds Block, and model.py imports it
    as a sibling module (`from my_blocks import Block`)."""
    imports, rest = NANO.split("class Block")
    blocks, model = ("class Block" + rest).split("class TinyGPT")
    sibling = write_model(folder, imports + blocks, name="my_blocks.py")
    source = imports + "from my_blocks import Block\n\n\nclass TinyGPT" + model
    return write_model(folder, source), sibling


def write_preset(folder: Path, arch: str = "model.py:TinyGPT", **train: object) -> Path:
    """A preset beside the model file, naming it relative to itself."""
    corpus = write_corpus(folder)
    body = {
        "name": "own_test",
        "model": {"arch": arch, **SHAPE, "mlp_mult": 4},
        "train": {**TRAIN, **train},
        "data": {"source": str(corpus), "tokenizer": "char"},
    }
    path = folder / "own_test.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


def import_for_the_test(path: Path) -> types.ModuleType:
    """The test's own import of the file (to count its parameters independently)."""
    spec = importlib.util.spec_from_file_location("own_model_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def imported_by_us(path: Path) -> bool:
    """Whether this process has imported the model file (the core and the app never should)."""
    return any(getattr(m, "__file__", None) == str(path) for m in list(sys.modules.values()))


# --------------------------------------------------------------------------- the preset schema


def test_the_model_section_keeps_the_keys_of_your_own_model(tmp_path):
    write_model(tmp_path)
    preset = load_preset_file(write_preset(tmp_path))
    assert preset.model.arch == f"{tmp_path / 'model.py'}:TinyGPT"  # found beside the preset
    assert preset.model.extra == {"mlp_mult": 4}
    saved = preset.to_dict()["model"]
    assert saved["mlp_mult"] == 4 and "extra" not in saved
    assert preset_from_dict(preset.to_dict()) == preset  # kept through a round trip
    changed = apply_overrides(preset, ["model.mlp_mult=2", "model.gate=true"])
    assert changed.model.extra == {"mlp_mult": 2, "gate": True}
    assert presets.arch_trainable(preset.model.arch) == (True, "")


def test_a_builtin_architecture_still_refuses_unknown_keys():
    with pytest.raises(PresetError, match="unknown field") as err:
        preset_from_dict({"name": "x", "model": {"arch": "gpt", "mlp_mult": 4}})
    assert err.value.path == "model.mlp_mult"
    with pytest.raises(PresetError, match="for gpt and golf"):
        preset_from_dict({"name": "x", "model": {"arch": "m.py:M", "loss_chunk": 8}})


# --------------------------------------------------------------------------- the whole cockpit


@pytest.mark.slow
def test_it_trains_headless_with_falling_loss_and_samples(tmp_path, capsys):
    """A model file that imports a module beside it: measured, trained, sampled and exported."""
    model, sibling = write_split_model(tmp_path)
    preset = write_preset(tmp_path)
    runs_dir = tmp_path / "runs"
    argv = ["--no-ui", "--preset", str(preset), "--runs-dir", str(runs_dir), "--device", "cpu"]
    assert main(argv) == 0, capsys.readouterr().err
    assert not imported_by_us(model) and not imported_by_us(
        sibling
    )  # measured and trained in children
    (run_dir,) = list(runs_dir.iterdir())
    losses = step_losses(run_dir)
    assert sorted(losses)[-1] == 50
    first, last = [losses[s] for s in sorted(losses)[:2]], [losses[s] for s in sorted(losses)[-2:]]
    assert sum(last) / 2 < sum(first) / 2 - 0.5, losses  # char-level, from ~ln(64)
    assert events_of(run_dir, "end")[-1]["reason"] == "finished"
    assert all(e["text"] for e in events_of(run_dir, "sample"))  # our sampler, at each eval
    capsys.readouterr()
    assert main(["sample", str(run_dir), "--tokens", "24", "--seed", "1", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert len(text.strip()) > 0 and set(text) <= set(write_corpus(tmp_path).read_text()) | {"\n"}
    # exported under the module's own parameter names, loadable by the file's own class
    assert main(["export", str(run_dir), "--to", str(tmp_path / "out")]) == 0
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert "h.0.c_attn.weight" in weights and not any(k.startswith("net.") for k in weights)


@pytest.mark.slow
def test_it_resumes_exactly(tmp_path):
    write_model(tmp_path)
    preset = load_preset_file(write_preset(tmp_path, max_steps=30, eval_interval=10))
    from cockpit import rundir

    straight = rundir.create_run_dir(preset, tmp_path / "straight")
    assert train_in_process(straight).returncode == 0
    parted = rundir.create_run_dir(preset, tmp_path / "parted")
    assert train_in_process(parted, fault="stop_at_step=15").returncode == 0
    assert events_of(parted, "end")[-1]["reason"] == "stopped"
    moved = copy_run(parted, tmp_path / "elsewhere" / "parted")  # the file is found from anywhere
    second = train_in_process(moved, resume=True)
    assert second.returncode == 0, second.stderr
    assert [s["resumed_from"] for s in events_of(moved, "start")] == [None, 15]
    assert step_losses(moved) == step_losses(straight)  # exactly, step for step


@pytest.mark.slow
def test_estimate_reports_counted_params_measured_flops_and_traced_memory(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("GPT_COCKPIT_EXT_DIR", str(EXT_DIR))
    model, sibling = write_split_model(tmp_path)  # the measuring and tracer children import both
    preset = write_preset(tmp_path)
    assert main(["estimate", str(preset), "--json"]) == 0, capsys.readouterr().err
    out = json.loads(capsys.readouterr().out)
    assert not imported_by_us(model) and not imported_by_us(sibling)

    monkeypatch.syspath_prepend(str(tmp_path))  # the test's own import finds the sibling too
    module = import_for_the_test(model)
    sys.modules.pop("my_blocks", None)
    config = types.SimpleNamespace(**SHAPE, dropout=0.0, bias=False, mlp_mult=4)
    numel = sum(p.numel() for p in module.TinyGPT(config).parameters())
    assert out["params"] == numel and out["figures"] == "measured"
    L, H, C, T = SHAPE["n_layer"], SHAPE["n_head"], SHAPE["n_embd"], SHAPE["block_size"]
    n = numel - T * C  # position embeddings are left out, as nanoGPT's estimate_mfu does
    palm = 6 * n + 12 * L * H * (C // H) * T
    assert abs(out["flops_per_token"] - palm) / palm < 0.01
    assert out["traced"] and out["exact"]["peak_bytes"] > numel * 4 * 3  # weights + Adam moments
    assert out["memory"]["activation_form"] == "traced"

    assert main(["estimate", str(preset)]) == 0  # the table says which figures are measured
    table = capsys.readouterr().out
    assert "counted on the meta device" in table and "FlopCounterMode" in table
    assert "your own model, traced" in table


# --------------------------------------------------------------------------- a broken file


BROKEN = {
    "syntax": ("def broken(:\n", "TinyGPT", "failed to import (SyntaxError"),
    "import": ("import no_such_module_here\n", "TinyGPT", "ModuleNotFoundError"),
    "class": (NANO, "Missing", "has no class Missing"),
    "init": (
        NANO.replace(
            "def __init__(self, config):\n        super().__init__()\n        self.config",
            "def __init__(self):\n        super().__init__()\n        self.config",
        ),
        "TinyGPT",
        "must take one argument, the config",
    ),
    "forward": (
        NANO.replace(
            "def forward(self, idx, targets=None):\n        b, t",
            "def forward(self, idx):\n        b, t",
        ),
        "TinyGPT",
        "must be forward(idx, targets=None)",
    ),
    "shape": (
        NANO.replace("return logits, loss", "return logits.transpose(0, 1), loss"),
        "TinyGPT",
        "returned logits of shape (32, 2, 64), expected (2, 32, 64)",
    ),
    "tuple": (NANO.replace("return logits, loss", "return loss"), "TinyGPT", "not (logits, loss)"),
}


def measure_here(preset):
    """The measuring child's work in this process (its entry point's result, without a child)."""
    from cockpit.train.measure import measure
    from cockpit.train.models.own import OwnModelError

    try:
        return measure(preset), ""
    except OwnModelError as exc:
        return None, str(exc)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_broken_model_file_is_one_line_naming_it(tmp_path, case):
    from cockpit.plan.measure import ensure_measured

    source, cls, expected = BROKEN[case]
    model = write_model(tmp_path, source, name=f"model_{case}.py")
    preset = load_preset_file(write_preset(tmp_path, arch=f"model_{case}.py:{cls}"))
    problem = ensure_measured(preset, runner=measure_here)
    assert problem is not None and problem.startswith(f"{model}: ") and expected in problem
    assert "\n" not in problem


@pytest.mark.slow
def test_a_broken_model_file_is_refused_before_a_run_exists(tmp_path, capsys):
    """Headless mode end to end: the measuring child's one line, exit 2, no run directory."""
    source, cls, expected = BROKEN["shape"]
    model = write_model(tmp_path, source)
    preset = write_preset(tmp_path, arch=f"model.py:{cls}")
    argv = ["--no-ui", "--preset", str(preset), "--runs-dir", str(tmp_path / "runs")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"gpt-cockpit: error: model.arch: {model}: "), err
    assert expected in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "runs").exists()
    assert not imported_by_us(model)


def test_a_missing_model_file_is_said_without_a_child(tmp_path, capsys):
    preset = write_preset(tmp_path, arch="nowhere.py:TinyGPT")
    assert main(["--no-ui", "--preset", str(preset), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err.strip().endswith("nowhere.py: no such file")
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- a changed model file


def test_the_modules_a_model_file_imports_beside_it_are_found_by_reading_it(tmp_path):
    from cockpit.arch import local_modules

    model, sibling = write_split_model(tmp_path)
    assert local_modules(model) == [sibling]
    (tmp_path / "unused.py").write_text("x = 1\n")  # beside it, not imported: not the model's
    (tmp_path / "layers").mkdir()
    (tmp_path / "layers" / "__init__.py").write_text("from .norm import Norm\n")
    (tmp_path / "layers" / "norm.py").write_text("import helpers\n\nNorm = None\n")
    (tmp_path / "helpers.py").write_text("import os, json\n")  # stdlib: not beside it
    sibling.write_text(sibling.read_text() + "\nimport layers.norm\n")
    got = [p.relative_to(tmp_path).as_posix() for p in local_modules(model)]
    assert got == ["helpers.py", "layers/__init__.py", "layers/norm.py", "my_blocks.py"]
    (tmp_path / "my_blocks.py").write_text("def broken(:\n")  # the child says what is wrong
    assert local_modules(model) == [sibling]


def test_an_edit_to_an_imported_module_measures_the_model_again(tmp_path):
    from cockpit.plan.measure import load_measured, model_file_hash, save_measured

    model, sibling = write_split_model(tmp_path)
    preset = load_preset_file(write_preset(tmp_path))
    before = model_file_hash(preset)
    save_measured(
        preset.model,
        {
            "params": 1,
            "matrix_params": 1,
            "embedding_params": 1,
            "matmul_params": 1,
            "flops_per_token": 6.0,
        },
    )
    assert load_measured(preset.model) is not None
    (tmp_path / "unused.py").write_text("x = 1\n")
    assert model_file_hash(preset) == before  # a file it does not import changes nothing
    sibling.write_text(sibling.read_text().replace("config.mlp_mult * C", "2 * C"))
    assert model_file_hash(preset) != before and load_measured(preset.model) is None


@pytest.fixture
def stopped_own_run(tmp_path, monkeypatch):
    """A stopped run of a model file that imports a module beside it, with a checkpoint to resume
    from; nothing trains: the launch is recorded, not started, and the memory plan passes."""
    from cockpit import headless, rundir
    from cockpit.runs import prelaunch

    model, sibling = write_split_model(tmp_path)
    preset = load_preset_file(write_preset(tmp_path))
    run_dir = rundir.create_run_dir(preset, root=tmp_path / "runs")
    (run_dir / rundir.CHECKPOINTS / "last.pt").write_bytes(b"a checkpoint")
    rundir.update_run_info(run_dir, status="stopped", step=10)
    launched: list[Path] = []
    monkeypatch.setattr(prelaunch, "plan_problem", lambda *a: None)
    monkeypatch.setattr(headless, "launch_and_follow", lambda rd, **kw: launched.append(rd) or 0)
    return model, sibling, run_dir, launched


def resume(run_dir: Path, *extra: str) -> int:
    return main(["--runs-dir", str(run_dir.parent), "resume", run_dir.name, "--no-ui", *extra])


def edit(path: Path) -> str:
    """Change a file's content (a comment more); its content before, to restore it."""
    before = path.read_text()
    path.write_text(before + "\n# an edit\n")
    return before


def test_the_run_records_its_model_files_hash(stopped_own_run):
    import hashlib

    from cockpit import rundir

    model, sibling, run_dir, _ = stopped_own_run
    info = rundir.read_run_info(run_dir)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    beside = hashlib.sha256(sibling.read_bytes()).hexdigest()
    assert info.model_file == {
        "path": str(model.resolve()),
        "sha256": digest,
        "modules": {str(sibling.resolve()): beside},
    }
    assert info.schema == rundir.RUN_SCHEMA_VERSION == 3
    assert json.loads((run_dir / rundir.RUN_JSON).read_text())["model_file"]["sha256"] == digest


@pytest.mark.parametrize("which", ["model", "sibling"])
def test_a_resume_refuses_a_changed_model_file_before_anything_starts(
    stopped_own_run, capsys, which
):
    from cockpit import rundir

    model, sibling, run_dir, launched = stopped_own_run
    before = (run_dir / rundir.RUN_JSON).read_text()
    changed = model if which == "model" else sibling
    original = edit(changed)
    assert resume(run_dir, "--max-steps", "90") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    line = err[0]
    named = f"{changed.resolve()}" + ("" if which == "model" else " (imported by model.py)")
    assert line.startswith(f"gpt-cockpit: error: {named} changed since {run_dir.name} started")
    assert "restore the file" in line and f"gpt-cockpit resume {run_dir.name} --force" in line
    assert not launched and (run_dir / rundir.RUN_JSON).read_text() == before  # nothing written
    changed.write_text(original)  # the file as it was: the resume goes on
    assert resume(run_dir) == 0 and launched == [run_dir]


def test_force_resumes_with_the_changed_file_and_checks_against_it_from_then(
    stopped_own_run, capsys
):
    import hashlib

    from cockpit import rundir

    model, sibling, run_dir, launched = stopped_own_run
    original = edit(sibling)
    assert resume(run_dir, "--force") == 0 and launched == [run_dir]
    assert "resuming with it anyway (--force)" in capsys.readouterr().err
    recorded = rundir.read_run_info(run_dir).model_file
    now = hashlib.sha256(sibling.read_bytes()).hexdigest()
    assert recorded["modules"] == {str(sibling.resolve()): now}
    assert resume(run_dir) == 0 and len(launched) == 2  # the edited file is the run's file now
    sibling.write_text(original)  # and going back is a change too
    assert resume(run_dir) == 2 and len(launched) == 2


@pytest.mark.parametrize("which", ["model", "sibling"])
def test_a_model_file_that_is_gone_is_refused_even_with_force(stopped_own_run, capsys, which):
    model, sibling, run_dir, launched = stopped_own_run
    gone = model if which == "model" else sibling
    gone.unlink()
    assert resume(run_dir, "--force") == 2 and not launched
    line = capsys.readouterr().err.strip()
    assert (
        f"{gone.resolve()}" in line
        and f": no such file; {run_dir.name} was trained with it" in line
    )
    assert "restore it" in line and "--force" not in line


def test_a_run_that_recorded_no_model_file_resumes_as_before(stopped_own_run):
    """A run directory from before run.json kept the file (schema 2) has nothing to check."""
    from cockpit import rundir

    model, _, run_dir, launched = stopped_own_run
    rundir.update_run_info(run_dir, model_file=None)
    edit(model)
    assert resume(run_dir) == 0 and launched == [run_dir]


def test_the_queue_fails_a_retry_whose_model_file_changed(stopped_own_run):
    """A queued run retried after it died resumes: not with another model than its checkpoint's."""
    from cockpit.campaign.scheduler import Scheduler

    model, _, run_dir, _ = stopped_own_run
    entry = types.SimpleNamespace(run_dir=str(run_dir))
    assert Scheduler._run_dir(None, entry) == (run_dir, True)
    edit(model)
    with pytest.raises(RuntimeError, match="changed since"):
        Scheduler._run_dir(None, entry)


def test_the_training_child_refuses_to_resume_with_a_changed_file(stopped_own_run):
    """What starts the child without a launcher's check (a Slurm requeue, by hand) meets the
    same line: the run ends in an error naming the file, its checkpoint untouched."""
    from cockpit import rundir

    model, sibling, run_dir, _ = stopped_own_run
    edit(sibling)
    proc = train_in_process(run_dir, resume=True)
    assert proc.returncode != 0
    assert f"{sibling.resolve()} (imported by model.py) changed since" in proc.stderr
    (end,) = events_of(run_dir, "end")
    assert end["reason"] == "error" and "changed since" in end["message"]
    assert (run_dir / rundir.CHECKPOINTS / "last.pt").read_bytes() == b"a checkpoint"
