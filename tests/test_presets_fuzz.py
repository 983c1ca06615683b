"""Fuzzing: whatever JSON a user types becomes a valid Preset or a PresetError, never another exception."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cockpit.estimate import count_params, estimate, flops_per_token
from cockpit.gpu import lookup_gpu
from cockpit.presets import (
    Preset,
    PresetError,
    apply_overrides,
    field_paths,
    parse_json_text,
    preset_from_dict,
    validate,
)

FIELDS = field_paths()
SECTION_KEYS = {
    s: [p.split(".", 1)[1] for p in FIELDS if p.startswith(s + ".")]
    for s in ("model", "train", "data")
}

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from([10**400, -(10**400), 2**63, 2**64 + 1, 1e308, -0.0, 5e-324]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)

# plausible values for each field, mixed with junk, so most examples get past the type checks
plausible = st.one_of(
    st.integers(min_value=-3, max_value=70000),
    st.floats(min_value=-1, max_value=2, allow_nan=False),
    st.sampled_from(
        [
            "gpt",
            "golf",
            "bdh",
            "cosine",
            "warmdown",
            "auto",
            "bf16",
            "fp32",
            "char",
            "byte",
            "gpt2",
            "default",
            "warn",
        ]
    ),
    st.booleans(),
    json_scalars,
)


@st.composite
def preset_like(draw: st.DrawFn) -> dict:
    """A dict shaped like a preset: known sections and fields with plausible or junk values, plus stray keys."""
    raw: dict = {}
    if draw(st.booleans()):
        raw["name"] = draw(st.one_of(st.text(max_size=10), json_scalars))
    for section, keys in SECTION_KEYS.items():
        if draw(st.booleans()):
            chosen = draw(st.lists(st.sampled_from(keys), max_size=5, unique=True))
            body = {k: draw(plausible) for k in chosen}
            if draw(st.integers(0, 9)) == 0:
                body[draw(st.text(max_size=8))] = draw(json_scalars)
            raw[section] = body if draw(st.integers(0, 19)) else draw(json_values)
    if draw(st.integers(0, 9)) == 0:
        raw[draw(st.text(max_size=8))] = draw(json_values)
    return raw


def _accepts_or_preset_error(raw: object) -> Preset | None:
    try:
        preset = preset_from_dict(raw, name="fuzz")
    except PresetError as exc:
        assert str(exc)  # a readable message, always
        return None
    validate(preset)  # what came back is valid
    return preset


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(preset_like())
def test_any_preset_shaped_json_is_a_preset_or_a_preset_error(raw):
    preset = _accepts_or_preset_error(raw)
    if preset is not None:
        # a valid preset can always be estimated (no overflow, no division by zero)
        assert count_params(preset.model) > 0
        assert flops_per_token(preset.model) > 0
        est = estimate(preset, lookup_gpu("A100-80GB"))
        assert est.peak_bytes > 0 and est.verdict
        # and it survives a round trip through its saved form
        assert preset_from_dict(json.loads(json.dumps(preset.to_dict()))) == preset


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_json_value_is_a_preset_or_a_preset_error(raw):
    _accepts_or_preset_error(raw)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_text_file_is_parsed_or_refused_with_a_preset_error(text):
    try:
        raw = parse_json_text(text, "fuzz.json")
    except PresetError:
        return
    _accepts_or_preset_error(raw)


override_keys = st.one_of(
    st.sampled_from(FIELDS),
    st.sampled_from([p.split(".", 1)[1] for p in FIELDS]),
    st.text(max_size=12),
)
override_values = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats().map(repr),
    st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "true",
            "null",
            "[]",
            "{}",
            "1e999",
            "-0",
            "3e-4",
            '"x"',
            "[[[[1]]]]",
            "1" + "0" * 400,
        ]
    ),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(override_keys, override_values), min_size=1, max_size=3), st.booleans())
def test_any_set_value_is_applied_or_a_preset_error(pairs, with_equals):
    base = Preset(name="base")
    texts = [f"{k}={v}" if with_equals else f"{k}{v}" for k, v in pairs]
    try:
        result = apply_overrides(base, texts)
    except PresetError as exc:
        assert str(exc)
        return
    validate(result)
    assert result.name  # a valid name survived


def test_deep_nesting_is_a_preset_error_not_a_recursion_error():
    text = "[" * 100000 + "]" * 100000
    with pytest.raises(PresetError) as info:
        parse_json_text(text, "deep.json")
    assert "deep.json: not valid JSON" in str(info.value)
    with pytest.raises(PresetError) as info:
        apply_overrides(Preset(name="base"), ["train.lr=" + text])
    assert info.value.path == "train.lr"  # too deep to read as JSON: kept as text, not a number


nasty_values = st.one_of(
    st.sampled_from(
        [
            10**400,
            -(10**400),
            2**53 + 1,
            2**63,
            1e308,
            -1e308,
            5e-324,
            -0.0,
            0,
            -1,
            1,
            "",
            " ",
            "1",
            None,
            [],
            {},
            True,
        ]
    ),
    st.integers(),
    st.floats(),
    st.text(max_size=5),
)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(FIELDS), nasty_values)
def test_one_nasty_field_on_a_valid_preset(path, value):
    section, key = path.split(".", 1)
    _accepts_or_preset_error({"name": "fuzz", section: {key: value}})
    text = (
        value if isinstance(value, str) else json.dumps(value)
    )  # NaN/Infinity come out as the bare words
    try:
        apply_overrides(Preset(name="base"), [f"{path}={text}"])
    except PresetError:
        pass


def test_overflowing_numbers_are_preset_errors():
    for field, value in (
        ("train.lr", 10**400),
        ("model.n_embd", 10**400),
        ("model.n_layer", 2**60),
    ):
        section, key = field.split(".")
        try:
            preset_from_dict({section: {key: value}}, name="x")
        except PresetError as exc:
            assert exc.path == field
        else:
            raise AssertionError(f"{field}={value} was accepted")
