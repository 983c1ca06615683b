"""The estimator: how peak memory moves with each setting, FLOPs, batch suggestions, calibration."""

from __future__ import annotations

import json
import re

import pytest

from cockpit.estimate import (
    CUDA_CONTEXT_BYTES,
    DEFAULT_HEADROOM,
    GIB,
    count_params,
    estimate,
    fit_calibration,
    flops_per_token,
    load_calibration,
    memory_breakdown,
    save_calibration,
    suggest_batch,
)
from cockpit.gpu import GpuSpec, lookup_gpu
from cockpit.presets import Preset, apply_overrides, load_preset

A100 = lookup_gpu("A100-80GB")


def small(**changes: object) -> Preset:
    """The `small` preset with dotted-path changes, explicitly bf16 so no default decides (any vocab: token ids)."""
    return apply_overrides(
        load_preset("small"), {"train.dtype": "bf16", "data.tokenizer": "pretokenized", **changes}
    )


def peak(preset: Preset, gpu: GpuSpec | None = A100, **kw: object) -> int:
    return memory_breakdown(preset, gpu, **kw).total_bytes  # type: ignore[arg-type]


# --------------------------------------------------------------------------- what moves the peak


@pytest.mark.parametrize(
    ("field", "low", "high"),
    [
        ("train.batch_size", 4, 8),
        ("model.block_size", 256, 512),
        ("model.n_layer", 4, 8),
        ("model.vocab_size", 8192, 50304),
        ("model.n_embd", 384, 768),
    ],
)
def test_peak_grows_with_each_size(field: str, low: int, high: int) -> None:
    lo, hi = small(**{field: low}), small(**{field: high})
    assert peak(hi) > peak(lo)
    assert peak(hi, None) > peak(lo, None)


def test_activations_and_logits_are_linear_in_the_batch() -> None:
    b4, b8, b12 = (memory_breakdown(small(), A100, batch_size=b) for b in (4, 8, 12))
    for part in ("activations", "logits"):
        step1 = getattr(b8, part) - getattr(b4, part)
        step2 = getattr(b12, part) - getattr(b8, part)
        assert step1 > 0 and abs(step1 - step2) <= 16, part
    assert (
        b4.weights == b12.weights and b4.optimizer == b12.optimizer
    )  # the fixed parts do not move


def test_fp32_needs_more_than_bf16() -> None:
    fp32, bf16 = (
        memory_breakdown(small(**{"train.dtype": "fp32"}), A100),
        memory_breakdown(small(), A100),
    )
    assert fp32.total_bytes > bf16.total_bytes
    assert fp32.amp_copies == 0 and bf16.amp_copies > 0
    assert fp32.activations > bf16.activations
    assert fp32.logits >= bf16.logits  # 16 bytes an element either way: fp32 holds no 16-bit copies


def test_auto_dtype_follows_the_gpu() -> None:
    auto = apply_overrides(load_preset("small"), {"train.dtype": "auto"})
    assert estimate(auto, lookup_gpu("T4")).dtype == "fp16"  # no bf16 tensor cores
    assert estimate(auto, A100).dtype == "bf16"


@pytest.mark.parametrize("setting", ["train.activation_checkpointing", "train.compile"])
def test_checkpointing_and_compile_lower_the_peak(setting: str) -> None:
    on, off = memory_breakdown(small(**{setting: True}), A100), memory_breakdown(small(), A100)
    assert on.activations < off.activations
    assert on.total_bytes < off.total_bytes
    assert on.weights == off.weights and on.optimizer == off.optimizer


def test_plain_attention_is_larger_than_flash_at_1024() -> None:
    preset = load_preset("gpt2_124m")
    flash, plain = (
        memory_breakdown(preset, A100, flash=True),
        memory_breakdown(preset, A100, flash=False),
    )
    assert plain.total_bytes > flash.total_bytes
    assert flash.activation_form.startswith("flash") and plain.activation_form.startswith("plain")
    ratio = flash.activations_per_layer_plain / flash.activations_per_layer
    assert 2.0 < ratio < 5.0  # the s^2 term: ~3x at s = 1024 (Korthikanti et al. 2022)


def test_plain_layer_matches_korthikanti_with_dropout() -> None:
    """s·b·h·(34 + 5·a·s/h) bytes per layer in 16-bit with dropout masks (Korthikanti et al. 2022, Table 2)."""
    preset = apply_overrides(
        load_preset("gpt2_124m"), {"model.dropout": 0.1, "train.dtype": "bf16"}
    )
    s, b, h, a = 1024, 8, 768, 12
    published = s * b * h * (34 + 5 * a * s / h)
    ours = memory_breakdown(preset, A100, batch_size=b).activations_per_layer_plain
    assert abs(ours - published) / published < 0.10


def test_bdh_always_uses_the_plain_form() -> None:
    bdh = load_preset("bdh_8gb")
    assert memory_breakdown(bdh, A100, flash=True).activation_form.startswith("plain")


def test_breakdown_parts_add_up_and_context_is_outside_reserved() -> None:
    mem = memory_breakdown(small(), A100)
    assert sum(b for _, b in mem.items()) == mem.total_bytes
    assert mem.cuda_context == CUDA_CONTEXT_BYTES
    assert mem.reserved_bytes == mem.total_bytes - CUDA_CONTEXT_BYTES
    params = count_params(small().model)
    assert mem.weights == mem.gradients == 4 * params and mem.optimizer == 8 * params


# --------------------------------------------------------------------------- FLOPs


def test_flops_per_token_for_gpt2_124m_by_hand() -> None:
    m = load_preset("gpt2_124m").model
    # N = 124,373,760 parameters - 1024*768 position embeddings = 123,587,328
    # 6N = 741,523,968; 12*L*H*Q*T = 12*12*12*64*1024 = 113,246,208
    assert count_params(m) == 124_373_760
    assert flops_per_token(m) == 741_523_968 + 113_246_208 == 854_770_176


def test_eta_uses_the_gpu_peak_and_mfu() -> None:
    preset = load_preset("gpt2_124m")
    est = estimate(preset, A100, mfu_assumed=0.5)
    total = 854_770_176 * 32 * 1024 * 4000
    assert est.eta_s == pytest.approx(total / (312e12 * 0.5))
    assert estimate(preset, None).eta_s is None


# --------------------------------------------------------------------------- suggestions


def largest_fit_in_reason(reason: str) -> int:
    match = re.search(r"largest that fits is (\d+)", reason)
    assert match, reason
    return int(match.group(1))


@pytest.mark.parametrize("gpu_name", ["T4", "A10G", "L4", "A100-40GB", "A100-80GB", "H100"])
@pytest.mark.parametrize(("batch", "accum"), [(1, 512), (32, 1), (12, 5), (7, 1)])
def test_suggestion_fits_keeps_tokens_and_the_next_size_does_not_fit(
    gpu_name: str, batch: int, accum: int
) -> None:
    gpu = lookup_gpu(gpu_name)
    preset = apply_overrides(
        load_preset("gpt2_124m"), {"train.batch_size": batch, "train.grad_accum": accum}
    )
    budget = gpu.memory_bytes * (1 - DEFAULT_HEADROOM)
    s = suggest_batch(preset, gpu)
    assert s is not None
    fit = largest_fit_in_reason(s.reason)
    assert estimate(preset, gpu, batch_size=fit).peak_bytes <= budget
    assert estimate(preset, gpu, batch_size=fit + 1).peak_bytes > budget
    assert (
        s.peak_bytes <= budget
        and s.peak_bytes == estimate(preset, gpu, batch_size=s.micro_batch).peak_bytes
    )
    seqs = batch * accum
    assert s.micro_batch <= min(fit, seqs)
    assert s.micro_batch * s.grad_accum >= seqs  # never fewer tokens per step
    assert s.tokens_per_step == s.micro_batch * s.grad_accum * 1024
    if seqs % s.micro_batch == 0:
        assert s.micro_batch * s.grad_accum == seqs and "(kept)" in s.reason
    assert (
        s.micro_batch >= min(fit, seqs) // 2
    )  # a divisor is preferred, but never below half of what fits
    assert s.apply(preset).tokens_per_step == s.tokens_per_step


def test_prime_sequence_count_rounds_accumulation_up() -> None:
    preset = apply_overrides(
        load_preset("gpt2_124m"), {"train.batch_size": 1, "train.grad_accum": 97}
    )
    s = suggest_batch(preset, lookup_gpu("A100-40GB"))
    assert s.micro_batch * s.grad_accum >= 97 and "rounded up from 97" in s.reason


@pytest.mark.parametrize(
    ("gpu_name", "seed_batch"), [("T4", 8), ("A10G", 16), ("A100-40GB", 32), ("A100-80GB", 64)]
)
def test_gpt2_124m_suggestions_match_seed_000_within_2x(gpu_name: str, seed_batch: int) -> None:
    # uncapped by the preset's 32 sequences per step, so the 80 GB card can show 64
    preset = apply_overrides(
        load_preset("gpt2_124m"), {"train.batch_size": 1, "train.grad_accum": 1024}
    )
    s = suggest_batch(preset, lookup_gpu(gpu_name))
    assert seed_batch / 2 <= s.micro_batch <= seed_batch * 2, s.reason


def test_more_headroom_never_suggests_more() -> None:
    preset = apply_overrides(
        load_preset("gpt2_124m"), {"train.batch_size": 1, "train.grad_accum": 1024}
    )
    gpu = lookup_gpu("A100-80GB")
    assert (
        suggest_batch(preset, gpu, headroom=0.3).micro_batch
        <= suggest_batch(preset, gpu, headroom=0.05).micro_batch
    )


def test_no_gpu_no_suggestion_and_too_big_says_so() -> None:
    assert suggest_batch(load_preset("gpt2_124m"), None) is None
    huge = load_preset("500M_1024")
    tiny_gpu = GpuSpec("Tiny", ("TINY",), 2 * GIB, 100, 100, 10, (8, 0))
    s = suggest_batch(huge, tiny_gpu)
    assert s.micro_batch == 1 and "even a micro-batch of 1" in s.reason
    assert (
        estimate(huge, tiny_gpu).fits is False
        and "does not fit" in estimate(huge, tiny_gpu).verdict
    )


# --------------------------------------------------------------------------- calibration


def test_fit_calibration_from_two_points() -> None:
    cal = fit_calibration("A100-80GB", [(8, 10 * GIB), (16, 14 * GIB)])
    assert cal.per_sequence_bytes == pytest.approx(0.5 * GIB)
    assert cal.fixed_bytes == pytest.approx(6 * GIB)
    assert cal.predict(32) == 22 * GIB
    with pytest.raises(ValueError, match="two different batch sizes"):
        fit_calibration("x", [(8, 1), (8, 2)])
    with pytest.raises(ValueError):
        fit_calibration("x", [(8, 1)])
    assert (
        fit_calibration("x", [(4, 9), (8, 5)]).per_sequence_bytes == 0
    )  # noise never gives a negative slope


def test_calibration_round_trip_and_estimate_uses_it() -> None:
    preset = small()
    assert estimate(preset, A100).measured is False
    cal = fit_calibration(A100.name, [(4, 3 * GIB), (8, 5 * GIB)])
    path = save_calibration(preset, cal)
    assert path.is_file() and json.loads(path.read_text())["gpu_name"] == A100.name
    loaded = load_calibration(preset, A100.name)
    assert loaded is not None and loaded.predict(12) == cal.predict(12) == 7 * GIB
    est = estimate(preset, A100, batch_size=12)
    assert est.measured is True and "measured" in est.verdict
    assert est.peak_bytes == 7 * GIB + CUDA_CONTEXT_BYTES
    # the batch is not part of the key; the model shape and the GPU are
    assert estimate(apply_overrides(preset, {"train.batch_size": 2}), A100).measured is True
    assert estimate(small(**{"model.n_layer": 3}), A100).measured is False
    assert estimate(preset, lookup_gpu("H100")).measured is False
    # a suggestion plans with the measured line
    s = suggest_batch(
        apply_overrides(preset, {"train.batch_size": 1, "train.grad_accum": 4096}), A100
    )
    budget = A100.memory_bytes * (1 - DEFAULT_HEADROOM) - CUDA_CONTEXT_BYTES
    assert largest_fit_in_reason(s.reason) == int((budget - 1 * GIB) // (0.5 * GIB))


def test_damaged_calibration_is_ignored() -> None:
    preset = small()
    path = save_calibration(preset, fit_calibration(A100.name, [(4, 3 * GIB), (8, 5 * GIB)]))
    path.write_text("{not json")
    assert load_calibration(preset, A100.name) is None
    assert estimate(preset, A100).measured is False
