"""Fuzzing: whatever a user types (JSON, a preset file, --set) becomes a valid Preset or a
PresetError with a message, never another exception; and a valid one can always be planned."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cockpit.plan.estimate import (
    count_params,
    estimate,
    flops_per_token,
    memory_breakdown,
    suggest_batch,
)
from cockpit.plan.gpu import lookup_gpu
from cockpit.plan.presets import (
    Preset,
    PresetError,
    apply_overrides,
    field_paths,
    get_field,
    load_preset,
    parse_json_text,
    preset_from_dict,
    validate,
)


def examples(n: int) -> settings:
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow])


PATHS = field_paths()
SECTIONS = ("model", "train", "data")
SECTION_KEYS = {s: [p.split(".", 1)[1] for p in PATHS if p.startswith(s + ".")] for s in SECTIONS}
A100 = lookup_gpu("A100-80GB")

# --------------------------------------------------------------------------- strategies

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),  # NaN and the infinities included
    st.text(max_size=12),
    st.sampled_from(
        ["NaN", "Infinity", "-Infinity", "4", "1e3", "true", "", "gpt", "cosine", "byte", "gpt2"]
        + ["0x10"]
    ),
    # beyond float range, beyond int64, the float edges
    st.sampled_from([10**400, -(10**400), 2**63, 2**64 + 1, 1e308, -0.0, 5e-324]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)
# values of roughly the right type, mixed with junk, so many examples get past the type checks
plausible = st.one_of(
    st.integers(-3, 70000),
    st.floats(-1.0, 2.0),
    st.sampled_from([0, 1, 2, 3, 6, 12, 64, 256, 50304]),
    st.sampled_from(
        ["gpt", "golf", "bdh", "cosine", "warmdown", "auto", "bf16", "fp32", "char", "byte"]
        + ["gpt2", "default", "warn"]
    ),
    st.booleans(),
    scalars,
)


@st.composite
def fields_anywhere(draw: st.DrawFn) -> dict:
    """Known fields picked across all sections, invented ones, stray top-level keys."""
    raw: dict = {}
    for top in ("name", "description", "extends"):
        if draw(st.booleans()):
            raw[top] = draw(st.one_of(st.text(max_size=12), scalars))
    for path in draw(st.lists(st.sampled_from(PATHS), max_size=8, unique=True)):
        section, key = path.split(".", 1)
        raw.setdefault(section, {})[key] = draw(plausible)
    if draw(st.integers(0, 4)) == 0:
        section = draw(st.sampled_from(SECTIONS))
        raw.setdefault(section, {})[draw(st.text(min_size=1, max_size=8))] = draw(scalars)
    if draw(st.integers(0, 9)) == 0:
        raw[draw(st.text(max_size=8))] = draw(values)
    if draw(st.integers(0, 9)) == 0:
        raw[draw(st.sampled_from(SECTIONS))] = draw(values)
    return raw


@st.composite
def fields_by_section(draw: st.DrawFn) -> dict:
    """Whole sections at a time, now and then a section that is not an object at all."""
    raw: dict = {}
    if draw(st.booleans()):
        raw["name"] = draw(st.one_of(st.text(max_size=10), scalars))
    for section, keys in SECTION_KEYS.items():
        if draw(st.booleans()):
            chosen = draw(st.lists(st.sampled_from(keys), max_size=5, unique=True))
            body = {k: draw(plausible) for k in chosen}
            if draw(st.integers(0, 9)) == 0:
                body[draw(st.text(max_size=8))] = draw(scalars)
            raw[section] = body if draw(st.integers(0, 19)) else draw(values)
    if draw(st.integers(0, 9)) == 0:
        raw[draw(st.text(max_size=8))] = draw(values)
    return raw


preset_shaped = st.one_of(fields_anywhere(), fields_by_section())

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


OVERRIDE_VALUES = ["NaN", "Infinity", "-Infinity", "4", '"4"', "-1", "1e400", "1e999", "null"]
OVERRIDE_VALUES += ["[1]", "[]", "{}", "true", "0.5", "-0", "3e-4", '"x"', "[[[[1]]]]"]
OVERRIDE_VALUES += ["99999999999999999999", "1" + "0" * 400]
override_keys = st.one_of(
    st.sampled_from(PATHS),
    st.sampled_from([p.split(".", 1)[1] for p in PATHS]),  # bare names
    st.text(max_size=12),
)
override_values = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats().map(repr),
    st.sampled_from(OVERRIDE_VALUES),
)
override_texts = st.one_of(
    st.lists(
        st.one_of(st.text(max_size=30), st.tuples(override_keys, override_values).map("=".join)),
        max_size=4,
    ),
    # the same pairs with the '=' left out
    st.lists(st.tuples(override_keys, override_values).map("".join), min_size=1, max_size=3),
)

# --------------------------------------------------------------------------- checks


def check_valid(preset: Preset) -> None:
    """A returned preset is valid, round-trips, and the planner can work with it."""
    validate(preset)
    assert preset_from_dict(preset.to_dict()) == preset
    assert preset_from_dict(json.loads(json.dumps(preset.to_dict()))) == preset  # as saved
    # a valid preset can always be estimated (no overflow, no division by zero)
    assert count_params(preset.model) > 0
    assert flops_per_token(preset.model) > 0
    assert memory_breakdown(preset, A100).total_bytes > 0
    est = estimate(preset, A100)
    assert est.peak_bytes > 0 and est.verdict
    suggest_batch(preset, A100)


def only_preset_errors(call, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
    """call(*args, **kwargs), or None if it raised a PresetError (which must have a message)."""
    try:
        result = call(*args, **kwargs)
    except PresetError as exc:
        assert str(exc), "a PresetError without a message"
        return None
    return result


def preset_or_preset_error(raw: object, **kwargs: object) -> None:
    preset = only_preset_errors(preset_from_dict, raw, **kwargs)
    if preset is not None:
        check_valid(preset)


# --------------------------------------------------------------------------- JSON and files


@examples(350)
@given(values)
def test_any_json_value_is_a_preset_or_a_preset_error(raw: object) -> None:
    preset_or_preset_error(raw)


@examples(550)
@given(preset_shaped)
def test_any_preset_shaped_dict_is_a_preset_or_a_preset_error(raw: dict) -> None:
    preset_or_preset_error(raw, name="fuzzed")


@examples(150)
@given(preset_shaped)
def test_preset_shaped_dicts_over_a_builtin(raw: dict) -> None:
    preset_or_preset_error(raw, base=load_preset("tiny"))


@examples(200)  # three texts an example
@given(
    st.one_of(st.text(max_size=60), values.map(json.dumps), preset_shaped.map(json.dumps)),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "", "}"]),
)
def test_any_text_is_parsed_or_refused_including_nan_and_infinity(text: str, junk: str) -> None:
    for candidate in (text, text.replace("1", junk, 1), f'{{"train": {{"lr": {junk}}}}}'):
        raw = only_preset_errors(parse_json_text, candidate, "user.json")
        if raw is None:
            continue
        preset = only_preset_errors(preset_from_dict, raw, name="fuzzed")
        if preset is not None:
            check_valid(preset)
            # an overflowed 1e999 parses as inf: it never gets into a preset
            json.dumps(raw, allow_nan=False)


def test_deep_nesting_is_a_preset_error_not_a_recursion_error() -> None:
    text = "[" * 100000 + "]" * 100000
    with pytest.raises(PresetError) as info:
        parse_json_text(text, "deep.json")
    assert "deep.json: not valid JSON" in str(info.value)
    with pytest.raises(PresetError) as info:
        apply_overrides(Preset(name="base"), ["train.lr=" + text])
    assert info.value.path == "train.lr"  # too deep to read as JSON: kept as text, not a number


@pytest.mark.parametrize(
    ("field", "value"), [("train.lr", 10**400), ("model.n_embd", 10**400), ("model.n_layer", 2**60)]
)
def test_overflowing_numbers_are_preset_errors(field: str, value: int) -> None:
    section, key = field.split(".")
    with pytest.raises(PresetError) as info:
        preset_from_dict({section: {key: value}}, name="x")
    assert info.value.path == field


# --------------------------------------------------------------------------- --set


@examples(550)
@given(st.sampled_from(["tiny", ""]), override_texts)
def test_any_set_override_is_applied_or_a_preset_error(base: str, texts: list[str]) -> None:
    preset = only_preset_errors(
        apply_overrides, load_preset(base) if base else Preset(name="base"), texts
    )
    if preset is not None:
        check_valid(preset)
        assert preset.builtin is False
        assert preset.name  # a valid name survived


@examples(150)
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


nasty_values = st.one_of(
    st.sampled_from(
        [10**400, -(10**400), 2**53 + 1, 2**63, 1e308, -1e308, 5e-324, -0.0, 0, -1, 1]
        + ["", " ", "1", None, [], {}, True]
    ),
    st.integers(),
    st.floats(),
    st.text(max_size=5),
)


@examples(600)
@given(st.sampled_from(PATHS), nasty_values)
def test_one_nasty_field_on_a_valid_preset(path: str, value: object) -> None:
    section, key = path.split(".", 1)
    preset = only_preset_errors(preset_from_dict, {"name": "fuzz", section: {key: value}})
    if preset is not None:
        validate(preset)
    text = value if isinstance(value, str) else json.dumps(value)  # NaN/Infinity: the bare words
    only_preset_errors(apply_overrides, Preset(name="base"), [f"{path}={text}"])
