"""Anything a user can type becomes a valid Preset or a PresetError naming the field: never a crash."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cockpit.estimate import count_params, memory_breakdown, suggest_batch
from cockpit.gpu import lookup_gpu
from cockpit.presets import (
    Preset,
    PresetError,
    apply_overrides,
    field_paths,
    get_field,
    list_presets,
    load_preset,
    parse_json_text,
    parse_override,
    preset_from_dict,
    preset_problems,
    validate,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PATHS = field_paths()
A100 = lookup_gpu("A100-80GB")

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and the infinities included
    st.text(max_size=10),
    st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "4",
            "1e3",
            "true",
            "",
            "gpt",
            "cosine",
            "byte",
            "gpt2",
            "0x10",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
small_numbers = st.one_of(
    st.integers(-2, 4096),
    st.floats(-1.0, 2.0),
    st.sampled_from([0, 1, 2, 3, 6, 12, 64, 256, 50304]),
)


@st.composite
def preset_shaped(draw: st.DrawFn) -> dict:
    """A dict with preset sections, real and invented field names, and any values."""
    raw: dict = {}
    for top in ("name", "description", "extends"):
        if draw(st.booleans()):
            raw[top] = draw(st.one_of(st.text(max_size=12), scalars))
    for path in draw(st.lists(st.sampled_from(PATHS), max_size=8, unique=True)):
        section, key = path.split(".", 1)
        raw.setdefault(section, {})[key] = draw(st.one_of(small_numbers, scalars))
    if draw(st.integers(0, 4)) == 0:
        section = draw(st.sampled_from(["model", "train", "data"]))
        raw.setdefault(section, {})[draw(st.text(min_size=1, max_size=8))] = draw(scalars)
    if draw(st.integers(0, 9)) == 0:
        raw[draw(st.text(max_size=8))] = draw(values)
    if draw(st.integers(0, 9)) == 0:
        raw[draw(st.sampled_from(["model", "train", "data"]))] = draw(values)
    return raw


CHOICES = {
    "model.arch": ["gpt", "golf", "bdh"],
    "train.schedule": ["cosine", "warmdown", "constant"],
    "train.dtype": ["auto", "bf16", "fp16", "fp32"],
    "train.on_anomaly": ["warn", "halt", "rollback"],
    "data.tokenizer": ["byte", "char", "gpt2", "pretokenized"],
}


def plausible_value(path: str) -> st.SearchStrategy:
    """Values of the field's own type, in ranges that often validate."""
    if path in CHOICES:
        return st.sampled_from(CHOICES[path])
    default = get_field(Preset(name="x"), path)
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.sampled_from([0, 1, 2, 3, 4, 6, 8, 12, 16, 64, 128, 256, 1024, 50304])
    if isinstance(default, float):
        return st.one_of(st.floats(0.0, 1.0), st.sampled_from([1e-4, 3e-4, 0.5, 10.0]))
    return st.sampled_from(["default", "x"])


@st.composite
def plausible_edits(draw: st.DrawFn) -> dict:
    paths = draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=3, unique=True))
    return {p: draw(plausible_value(p)) for p in paths}


def check_valid(preset: Preset) -> None:
    """A returned preset is valid, round-trips, and the planner can work with it."""
    validate(preset)
    assert preset_from_dict(preset.to_dict()) == preset
    assert count_params(preset.model) > 0
    assert memory_breakdown(preset, A100).total_bytes > 0
    suggest_batch(preset, A100)


def only_preset_errors(call, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
    try:
        result = call(*args, **kwargs)
    except PresetError as exc:
        assert str(exc), "a PresetError without a message"
        return None
    return result


@FAST
@given(values)
def test_any_json_value(raw: object) -> None:
    preset = only_preset_errors(preset_from_dict, raw)
    if preset is not None:
        check_valid(preset)


@FAST
@given(preset_shaped())
def test_preset_shaped_dicts(raw: dict) -> None:
    preset = only_preset_errors(preset_from_dict, raw, name="fuzzed")
    if preset is not None:
        check_valid(preset)


@FAST
@given(preset_shaped())
def test_preset_shaped_dicts_over_a_builtin(raw: dict) -> None:
    preset = only_preset_errors(preset_from_dict, raw, base=load_preset("tiny"))
    if preset is not None:
        check_valid(preset)


@FAST
@given(
    st.one_of(st.text(max_size=60), values.map(json.dumps), preset_shaped().map(json.dumps)),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "", "}"]),
)
def test_any_json_text_including_nan_and_infinity(text: str, junk: str) -> None:
    for candidate in (text, text.replace("1", junk, 1), f'{{"train": {{"lr": {junk}}}}}'):
        raw = only_preset_errors(parse_json_text, candidate, "user.json")
        if raw is None:
            continue
        preset = only_preset_errors(preset_from_dict, raw, name="fuzzed")
        if preset is not None:
            check_valid(preset)
            json.dumps(
                raw, allow_nan=False
            )  # an overflowed 1e999 parses as inf: never into a preset


@FAST
@given(
    st.lists(
        st.one_of(
            st.text(max_size=30),
            st.tuples(
                st.sampled_from(PATHS + [p.split(".", 1)[1] for p in PATHS]), st.text(max_size=12)
            ).map("=".join),
            st.tuples(
                st.sampled_from(PATHS),
                st.sampled_from(
                    [
                        "NaN",
                        "Infinity",
                        "4",
                        '"4"',
                        "-1",
                        "1e400",
                        "null",
                        "[1]",
                        "{}",
                        "true",
                        "0.5",
                        "99999999999999999999",
                    ]
                ),
            ).map("=".join),
        ),
        max_size=4,
    )
)
def test_set_overrides(overrides: list[str]) -> None:
    preset = only_preset_errors(apply_overrides, load_preset("tiny"), overrides)
    if preset is not None:
        check_valid(preset)
        assert preset.builtin is False


@FAST
@given(
    st.sampled_from(["tiny", "tiny_char", "golf_baseline", "bdh_8gb", "gpt2_124m"]),
    plausible_edits(),
)
def test_plausible_edits_of_builtins(name: str, edits: dict) -> None:
    preset = only_preset_errors(apply_overrides, load_preset(name), edits)
    if preset is not None:
        check_valid(preset)
        for path, value in edits.items():
            assert get_field(preset, path) == value


def test_nan_and_infinity_text_are_refused_with_the_field() -> None:
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


def test_every_builtin_preset_loads_and_validates() -> None:
    presets = list_presets()
    assert preset_problems() == []
    assert len(presets) >= 15
    for preset in presets:
        assert preset.builtin and preset.description, preset.name
        validate(preset)
        assert preset_from_dict(preset.to_dict()) == preset
        assert load_preset(preset.name) == preset


BASE = {
    "name": "t",
    "model": {
        "arch": "gpt",
        "n_layer": 2,
        "n_head": 4,
        "n_embd": 64,
        "block_size": 32,
        "vocab_size": 256,
    },
    "data": {"tokenizer": "byte"},
}


def with_change(section: str, key: str, value: object) -> dict:
    raw = json.loads(json.dumps(BASE))
    raw.setdefault(section, {})[key] = value
    return raw


@pytest.mark.parametrize(
    ("section", "key", "value", "path", "words"),
    [
        ("model", "n_embd", 66, "model.n_embd", "not divisible by model.n_head=4"),
        ("model", "n_kv_head", 3, "model.n_kv_head", "must divide model.n_head=4"),
        ("model", "n_kv_head", 2, "model.n_kv_head", "no grouped-query attention"),
        ("train", "min_lr", 0.5, "train.min_lr", "above train.lr"),
        ("train", "warmup_steps", 2000, "train.warmup_steps", "not below train.max_steps=2000"),
        (
            "data",
            "tokenizer",
            "gpt2",
            "model.vocab_size",
            "smaller than the gpt2 tokenizer's 50257 tokens",
        ),
        ("model", "n_layr", 3, "model.n_layr", "did you mean model.n_layer"),
        ("train", "learning_rate", 3e-4, "train.learning_rate", "unknown field"),
        ("model", "n_layer", "4", "model.n_layer", "not the string '4' (drop the quotes)"),
        ("train", "lr", float("nan"), "train.lr", "must be a finite number"),
        ("model", "n_layer", -2, "model.n_layer", "must be at least 1"),
        ("model", "block_size", 0, "model.block_size", "must be at least 1"),
        ("model", "n_kv_head", -1, "model.n_kv_head", "0 (same as n_head) or positive"),
        ("train", "batch_size", -8, "train.batch_size", "must be at least 1"),
        ("train", "warmup_steps", -1, "train.warmup_steps", "must not be negative"),
        ("model", "dropout", 1.0, "model.dropout", "[0, 1)"),
        ("model", "bias", "yes", "model.bias", "true or false"),
        ("model", "n_layer", 4.0, "model.n_layer", "whole number"),
        ("model", "n_layer", True, "model.n_layer", "whole number"),
        ("model", "vocab_size", 2**60, "model.vocab_size", "at most"),
        ("data", "val_fraction", 0.7, "data.val_fraction", "(0, 0.5)"),
        ("model", "arch", "llama", "model.arch", "choose one of gpt, golf, bdh"),
    ],
)
def test_validation_messages_name_the_field(
    section: str, key: str, value: object, path: str, words: str
) -> None:
    with pytest.raises(PresetError) as info:
        preset_from_dict(with_change(section, key, value))
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: ")
    assert words in str(info.value)


def test_top_level_typos_and_non_objects() -> None:
    with pytest.raises(PresetError, match="did you mean 'model'"):
        preset_from_dict({**BASE, "modle": {}})
    with pytest.raises(PresetError, match="model: must be an object"):
        preset_from_dict({**BASE, "model": [1, 2]})
    with pytest.raises(PresetError, match="must be a JSON object, not list"):
        preset_from_dict([BASE])
    assert preset_from_dict(BASE).model.n_embd == 64  # the base of the table is itself valid


def test_override_parsing() -> None:
    assert parse_override("train.lr=3e-4") == ("train.lr", 3e-4)
    assert parse_override("data.source = my folder ") == ("data.source", "my folder")
    assert parse_override('model.n_layer="4"') == ("model.n_layer", "4")
    with pytest.raises(PresetError, match="key=value"):
        parse_override("train.lr")
    with pytest.raises(PresetError) as info:
        apply_overrides(load_preset("tiny"), ["n_layr=3"])
    assert info.value.path == "n_layr" and "did you mean n_layer" in str(info.value)
    assert (
        apply_overrides(load_preset("tiny"), ["lr=3e-4"]).train.lr == 3e-4
    )  # a bare, unambiguous name
