"""cockpit.plan.presets: validation messages, --set overrides, files and user presets.

Fuzzing of the same entry points is in test_presets_fuzz.py, the shipped presets in
test_presets_files.py.
"""

from __future__ import annotations

import json
import math
import os

import pytest

from cockpit.plan import presets
from cockpit.plan.presets import (
    Preset,
    PresetError,
    apply_overrides,
    field_paths,
    get_field,
    load_preset,
    load_preset_file,
    parse_json_text,
    parse_override,
    preset_from_dict,
    resolve_field_path,
    save_user_preset,
)


def errors_for(raw: object) -> PresetError:
    with pytest.raises(PresetError) as info:
        preset_from_dict(raw, name="t")
    return info.value


@pytest.mark.parametrize(
    ("raw", "path", "fragment"),
    [
        (
            {"model": {"n_embd": 100, "n_head": 3}},
            "model.n_embd",
            "not divisible by model.n_head=3",
        ),
        (
            {"model": {"n_head": 8, "n_kv_head": 3, "arch": "golf", "n_embd": 128}},
            "model.n_kv_head",
            "must divide model.n_head=8",
        ),
        ({"model": {"n_kv_head": 2}}, "model.n_kv_head", "no grouped-query attention"),
        ({"model": {"n_layer": 0}}, "model.n_layer", "at least 1"),
        ({"model": {"block_size": 0}}, "model.block_size", "must be at least 1"),
        ({"model": {"n_kv_head": -1}}, "model.n_kv_head", "0 (same as n_head) or positive"),
        ({"model": {"n_layer": "4"}}, "model.n_layer", "not the string '4' (drop the quotes)"),
        ({"model": {"n_layer": 4.0}}, "model.n_layer", "whole number"),
        ({"model": {"n_layer": True}}, "model.n_layer", "whole number"),
        ({"model": {"vocab_size": 2**60}}, "model.vocab_size", "at most"),
        ({"model": {"bias": "yes"}}, "model.bias", "true or false"),
        ({"model": {"n_layr": 3}}, "model.n_layr", "did you mean model.n_layer"),
        ({"model": {"dropout": 1.0}}, "model.dropout", "[0, 1)"),
        (
            {"model": {"arch": "rnn"}},
            "model.arch",
            "unknown architecture 'rnn'; choose one of gpt, golf, bdh",
        ),
        ({"model": {"arch": "golf", "n_layer": 1}}, "model.n_layer", "encoder and decoder"),
        ({"train": {"lr": 1e-4, "min_lr": 1e-3}}, "train.min_lr", "above train.lr"),
        (
            {"train": {"warmup_steps": 100, "max_steps": 100}},
            "train.warmup_steps",
            "not below train.max_steps=100",
        ),
        (
            {
                "train": {
                    "schedule": "warmdown",
                    "warmup_steps": 10,
                    "warmdown_steps": 95,
                    "max_steps": 100,
                }
            },
            "train.warmdown_steps",
            "exceed",
        ),
        ({"train": {"lr": 0}}, "train.lr", "must be positive"),
        ({"train": {"lr": float("nan")}}, "train.lr", "must be a finite number"),
        ({"train": {"batch_size": -8}}, "train.batch_size", "must be at least 1"),
        ({"train": {"warmup_steps": -1}}, "train.warmup_steps", "must not be negative"),
        ({"train": {"batch_size": "12"}}, "train.batch_size", "the string '12' (drop the quotes)"),
        ({"train": {"lr": "3e-4"}}, "train.lr", "(drop the quotes)"),
        ({"train": {"compile": 1}}, "train.compile", "true or false"),
        ({"train": {"batch_size": 1.5}}, "train.batch_size", "whole number"),
        ({"train": {"beta2": 1.0}}, "train.beta2", "[0, 1)"),
        ({"train": {"schedule": "linear"}}, "train.schedule", "choose one of cosine"),
        ({"train": {"on_anomaly": "panic"}}, "train.on_anomaly", "warn, halt, rollback"),
        ({"train": {"lrr": 1}}, "train.lrr", "did you mean train.lr?"),
        ({"train": {"learning_rate": 3e-4}}, "train.learning_rate", "unknown field"),
        (
            {"data": {"tokenizer": "gpt2"}, "model": {"vocab_size": 256}},
            "model.vocab_size",
            "256 is smaller than the gpt2 tokenizer's 50257 tokens; set it to at least 50257 (50304",
        ),
        ({"data": {"tokenizer": "bpe"}}, "data.tokenizer", "unknown tokenizer"),
        ({"data": {"val_fraction": 0.5}}, "data.val_fraction", "(0, 0.5)"),
        ({"data": {"source": ""}}, "data.source", "must name a file"),
        ({"model": []}, "model", "must be an object"),
        ({"modle": {}}, "modle", "did you mean 'model'?"),
        ({"name": "has space"}, "name", "not a usable name"),
    ],
)
def test_validation_names_the_field_and_the_fix(raw, path, fragment):
    exc = errors_for(raw)
    assert exc.path == path
    assert fragment in exc.message
    assert str(exc).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("raw", "kind"), [([], "list"), ("preset", "str"), (3, "int"), (None, "NoneType")]
)
def test_a_preset_must_be_an_object(raw, kind):
    assert f"must be a JSON object, not {kind}" in errors_for(raw).message


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=abc", "must be a number, not the string 'abc'"),
        ("train.batch_size=twelve", "must be a whole number, not the string 'twelve'"),
        ("train.lr=nan", "must be a number, not the string 'nan'"),
        ('train.lr="3e-4"', "must be a number, not the string '3e-4' (drop the quotes)"),
    ],
)
def test_drop_the_quotes_only_where_a_number_was_quoted(override, message):
    with pytest.raises(PresetError) as info:
        apply_overrides(Preset(name="x"), [override])
    assert info.value.message == message


def test_defaults_are_nanogpt_shakespeare_char():
    p = Preset(name="x")
    assert (p.model.n_layer, p.model.n_head, p.model.n_embd, p.model.block_size) == (4, 4, 128, 64)
    assert (p.train.batch_size, p.train.lr, p.train.min_lr, p.train.beta2) == (12, 1e-3, 1e-4, 0.99)
    assert p.tokens_per_step == 12 * 64
    assert preset_from_dict(p.to_dict()) == p


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("train.lr=3e-4", "train.lr", 3e-4),
        ("train.compile=true", "train.compile", True),
        ("data.source=/tmp/x.txt", "data.source", "/tmp/x.txt"),
        ('data.source="quoted"', "data.source", "quoted"),
        ("data.source = my folder ", "data.source", "my folder"),
        ('model.n_layer="4"', "model.n_layer", "4"),  # a JSON string stays a string
        ("model.n_layer = 6", "model.n_layer", 6),
        ("description=a b=c", "description", "a b=c"),
    ],
)
def test_parse_override(text, key, value):
    assert parse_override(text) == (key, value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("train.lr", "key=value"),
        ("=3", "field name"),
        ("train.lr=NaN", "finite number"),
        ("train.lr=Infinity", "finite"),
    ],
)
def test_parse_override_errors(text, fragment):
    with pytest.raises(PresetError, match=fragment):
        parse_override(text)


def test_apply_overrides_validates_and_accepts_bare_names():
    base = Preset(name="x")
    p = apply_overrides(base, ["lr=3e-4", "model.n_layer=2", "name=y"])
    assert p.train.lr == 3e-4 and p.model.n_layer == 2 and p.name == "y"
    assert base.train.lr == 1e-3  # the original is untouched
    assert apply_overrides(base, {"train.max_steps": 500}).train.max_steps == 500
    with pytest.raises(PresetError, match="min_lr"):
        apply_overrides(base, ["train.lr=1e-5"])
    with pytest.raises(PresetError) as info:
        apply_overrides(base, ["n_layr=3"])  # a bare name with a typo
    assert info.value.path == "n_layr" and "did you mean n_layer" in str(info.value)


def test_nan_and_infinity_are_refused_with_the_field():
    with pytest.raises(PresetError) as info:
        parse_json_text('{"train": {"lr": NaN}}', "mine.json")
    assert "NaN is not allowed" in str(info.value) and "mine.json" in str(info.value)
    for text in ("train.lr=NaN", "train.lr=Infinity", "lr=-Infinity"):
        with pytest.raises(PresetError) as info:
            apply_overrides(load_preset("tiny"), [text])
        assert info.value.path.endswith("lr")
    with pytest.raises(PresetError, match="train.lr: must be a finite number"):
        apply_overrides(load_preset("tiny"), {"train.lr": math.inf})
    with pytest.raises(PresetError, match="train.lr: must be a number, not the string"):
        apply_overrides(load_preset("tiny"), ["train.lr=fast"])


def test_field_paths_resolve_and_read():
    paths = field_paths()
    assert "model.n_embd" in paths and "train.lr" in paths and "data.tokenizer" in paths
    assert resolve_field_path("n_embd") == "model.n_embd"
    assert resolve_field_path("name") == "name"
    with pytest.raises(PresetError, match="unknown field; did you mean"):
        resolve_field_path("train.warmup")
    assert (
        get_field(Preset(name="x"), "train.lr") == 1e-3
        and get_field(Preset(name="x"), "name") == "x"
    )


def test_arch_trainable():
    assert presets.arch_trainable("gpt") == (True, "")
    ok, why = presets.arch_trainable("lstm")
    assert not ok and "unknown architecture" in why


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{", "not valid JSON (Expecting property name"),
        ('{"train": {"lr": NaN}}', "NaN is not allowed"),
        ('{"train": {"lr": Infinity}}', "Infinity is not allowed"),
        ("[]", "must be a JSON object"),
        ('{"train": {"lr": -1}}', "train.lr"),
    ],
)
def test_bad_preset_files(tmp_path, text, fragment):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(PresetError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        load_preset_file(path)


def test_preset_file_not_utf8_or_missing(tmp_path):
    path = tmp_path / "bin.json"
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(PresetError, match="not UTF-8"):
        load_preset_file(path)
    with pytest.raises(PresetError, match="no preset file at"):
        load_preset(str(tmp_path / "missing.json"))


def test_preset_name_comes_from_the_file(tmp_path):
    path = tmp_path / "shakespeare.json"
    path.write_text(json.dumps({"description": "d", "train": {"lr": 5e-4}}))
    p = load_preset(str(path))
    assert (
        p.name == "shakespeare"
        and p.train.lr == 5e-4
        and p.source_path == str(path)
        and not p.builtin
    )


def test_unknown_preset_name_suggests_a_close_one(tmp_path):
    save_user_preset(Preset(name="my_tiny"))
    with pytest.raises(PresetError, match="did you mean my_tiny"):
        load_preset("my_tinny")


def test_user_preset_round_trip_is_atomic_and_listed(tmp_path):
    p = apply_overrides(Preset(name="mine", description="a test"), {"model.n_layer": 2})
    path = save_user_preset(p)
    assert path.parent == presets.user_dir() and path.name == "mine.json"
    assert str(presets.user_dir()).startswith(os.environ["GPT_COCKPIT_CONFIG"])
    assert load_preset("mine") == p
    assert "mine" in [x.name for x in presets.list_presets()]
    assert not [f for f in path.parent.iterdir() if f.name.endswith(".tmp")]


def test_save_rejects_an_invalid_preset_and_keeps_the_old_file(tmp_path):
    good = Preset(name="keep")
    path = save_user_preset(good)
    before = path.read_text()
    bad = Preset(name="keep")
    bad.train.lr = -1.0
    with pytest.raises(PresetError):
        save_user_preset(bad)
    assert path.read_text() == before


def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = save_user_preset(Preset(name="crashy"))
    before = path.read_text()

    real_fsync = os.fsync

    def failing_fsync(fd):
        real_fsync(fd)
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)  # the write fails after the temp file has data
    with pytest.raises(OSError):
        save_user_preset(apply_overrides(Preset(name="crashy"), {"train.lr": 5e-4}))
    monkeypatch.undo()
    assert path.read_text() == before
    assert [f.name for f in path.parent.iterdir()] == ["crashy.json"]  # no temp file left


def test_user_preset_extends_records_only_the_difference(tmp_path):
    base = apply_overrides(Preset(name="base_one"), {"train.max_steps": 500})
    save_user_preset(base)
    child = apply_overrides(base, {"name": "child", "train.lr": 6e-4})
    path = save_user_preset(child, extends="base_one")
    body = json.loads(path.read_text())
    assert body["extends"] == "base_one"
    assert body["train"] == {"lr": 6e-4}
    assert "model" not in body and "data" not in body
    loaded = load_preset("child")
    assert loaded.train.lr == 6e-4 and loaded.train.max_steps == 500


def test_extends_an_unknown_preset(tmp_path):
    folder = presets.user_dir()
    folder.mkdir(parents=True)
    (folder / "orphan.json").write_text(json.dumps({"extends": "nobody"}))
    with pytest.raises(PresetError, match="'nobody' is not a known preset"):
        load_preset("orphan")
    problems = presets.preset_problems()
    assert [p.name for p, _ in problems] == ["orphan.json"]
    assert "orphan" not in [x.name for x in presets.list_presets()]


def test_builtin_presets_all_load():
    """Every shipped preset loads and validates (none may be broken)."""
    folder = presets.builtin_dir()
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    for path in files:
        p = load_preset_file(path, builtin=True)
        assert p.name == path.stem and p.description, path
        assert math.isfinite(p.train.lr)
    builtin_problems = [(p, why) for p, why in presets.preset_problems() if p.parent == folder]
    assert builtin_problems == []
