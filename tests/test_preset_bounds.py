"""Every numeric field that is not a shape has a sane range, and the refusal says why."""

from __future__ import annotations

import pytest

from cockpit.__main__ import main
from cockpit.plan.presets import (
    BOUNDS,
    Preset,
    PresetError,
    apply_overrides,
    field_paths,
    get_field,
)

# The shape fields: how large is the memory plan's to refuse (with memory needed and
# available), so the preset checks only that each is a whole number of at least its minimum.
SHAPES = {
    "model.n_layer",
    "model.n_head",
    "model.n_kv_head",
    "model.n_embd",
    "model.block_size",
    "model.vocab_size",
    "model.mlp_ratio",
    "model.mlp_internal_dim_multiplier",
    "model.num_streams",
    "model.loss_chunk",
    "train.batch_size",
    "train.grad_accum",
}
# Counts of steps, bounded by train.max_steps or by each other, and max_steps itself (a long
# run is a choice); ranges the checks before the bounds already close.
ELSEWHERE = {
    "train.max_steps",
    "train.warmup_steps",
    "train.warmdown_steps",
    "train.min_lr_hold_steps",
    "train.eval_interval",
    "train.log_interval",
    "train.min_lr",
    "train.muon_momentum_warmup_steps",
    "model.dropout",
    "train.beta1",
    "train.beta2",
    "train.rollback_lr_factor",
    "train.muon_momentum",
    "train.muon_momentum_warmup_start",
    "data.val_fraction",
}


def numeric_paths() -> list[str]:
    default = Preset(name="x")
    return [
        p
        for p in field_paths()
        if isinstance(get_field(default, p), (int, float))
        and not isinstance(get_field(default, p), bool)
    ]


def test_every_numeric_field_is_bounded_a_shape_or_closed_elsewhere():
    loose = [p for p in numeric_paths() if p not in BOUNDS and p not in SHAPES | ELSEWHERE]
    assert loose == [], f"numeric fields with no bound: {loose}"


@pytest.mark.parametrize("path", sorted(BOUNDS))
def test_just_past_each_bound_is_refused_with_the_reason(path):
    low, high, why = BOUNDS[path]
    integer = isinstance(get_field(Preset(name="x"), path), int)
    over = high + 1 if integer else high * 1.5 + 1
    with pytest.raises(PresetError) as caught:
        apply_overrides(Preset(name="x"), {path: over})
    assert caught.value.path == path and why in str(caught.value)
    if low > 0:
        under = low - 1 if integer else low / 2
        with pytest.raises(PresetError, match=path):
            apply_overrides(Preset(name="x"), {path: under})


@pytest.mark.parametrize("path", sorted(BOUNDS))
def test_each_bound_itself_is_allowed(path):
    low, high, _ = BOUNDS[path]
    base = Preset(name="x")
    if path == "train.lr":
        base = apply_overrides(base, {"train.min_lr": 0.0})
    for value in (high, low) if low > 0 else (high,):
        assert get_field(apply_overrides(base, {path: value}), path) == value


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("train.lr=1e308", "train.lr: must be between 0 and 10, not 1e+308: a learning rate"),
        ("train.seed=4294967296", "NumPy's generator takes a 32-bit seed"),
        ("train.adam_eps=1e-300", "below 1e-30 it is 0 in fp32"),
    ],
)
def test_a_meaningless_value_is_refused_before_a_run_is_created(tmp_path, capsys, override, says):
    assert main(["--no-ui", "--runs-dir", str(tmp_path / "runs"), "--set", override]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "override",
    [{"model.n_layer": 1_000_000_000}, {"train.batch_size": 100_000}, {"model.n_embd": 2**20}],
)
def test_shape_fields_are_not_bounded_by_size_here(override):
    """The memory plan refuses these with the memory they need; the preset accepts them."""
    preset = apply_overrides(Preset(name="x"), override)
    ((path, value),) = override.items()
    assert get_field(preset, path) == value


def test_shape_fields_still_refuse_what_is_meaningless():
    for override in ({"model.n_layer": 0}, {"train.batch_size": 1.5}, {"model.n_embd": -4}):
        with pytest.raises(PresetError):
            apply_overrides(Preset(name="x"), override)


def test_the_builtin_presets_are_within_their_bounds():
    from cockpit.plan.presets import list_presets

    for preset in list_presets():
        for path, (low, high, _) in BOUNDS.items():
            assert low <= get_field(preset, path) <= high, (preset.name, path)
