"""The estimator: memory grows with what it should, suggestions fit and keep tokens per step, calibrations are used."""

from __future__ import annotations

import json
import time

import pytest

from cockpit import estimate as est_mod
from cockpit.estimate import (
    ALLOCATOR_SLACK,
    Calibration,
    as_dict,
    calibration_key,
    count_params,
    estimate,
    eta_seconds,
    fit_calibration,
    flops_per_token,
    fmt_bytes,
    fmt_count,
    load_calibration,
    memory_breakdown,
    mfu,
    save_calibration,
    suggest_batch,
    training_dtype,
)
from cockpit.gpu import CATALOG, GIB, lookup_gpu
from cockpit.presets import Preset, apply_overrides, list_presets, load_preset

A100 = lookup_gpu("A100-80GB")
T4 = lookup_gpu("T4")


def gpt(**overrides) -> Preset:
    """A mid-sized gpt preset with overrides (dotted keys)."""
    base = {
        "model.n_layer": 6,
        "model.n_head": 6,
        "model.n_embd": 384,
        "model.block_size": 256,
        "model.vocab_size": 50304,
        "data.tokenizer": "gpt2",
        "train.batch_size": 16,
    }
    return apply_overrides(Preset(name="t"), {**base, **overrides})


def peak(preset: Preset, gpu=A100, **kw) -> int:  # noqa: ANN001
    return estimate(preset, gpu, **kw).peak_bytes


# --------------------------------------------------------------------------- monotonic in what matters


@pytest.mark.parametrize(
    "key, small, large",
    [
        ("train.batch_size", 8, 16),
        ("model.block_size", 256, 512),
        ("model.n_layer", 6, 12),
        ("model.vocab_size", 50304, 100352),
        ("model.n_embd", 384, 768),
    ],
)
def test_peak_grows_with(key, small, large):
    assert peak(gpt(**{key: large})) > peak(gpt(**{key: small}))


def test_peak_is_linear_in_the_batch_apart_from_fixed_costs():
    p = gpt()
    m1, m2, m4 = (memory_breakdown(p, A100, batch_size=b) for b in (1, 2, 4))
    fixed = m1.weights + m1.gradients + m1.optimizer + m1.amp_copies
    assert fixed == m4.weights + m4.gradients + m4.optimizer + m4.amp_copies
    per_seq = m2.activations - m1.activations
    assert m4.activations - m2.activations == pytest.approx(2 * per_seq, rel=1e-6)
    assert m4.logits == 4 * m1.logits


def test_logits_dominate_a_small_model_with_a_50k_vocabulary():
    m = memory_breakdown(gpt(**{"model.n_layer": 2, "model.n_embd": 128, "model.n_head": 4}), A100)
    assert m.logits > m.activations and m.logits > m.weights + m.gradients + m.optimizer


def test_dtype_compile_checkpointing_and_flash_each_change_the_peak():
    base = gpt()
    fp32 = gpt(**{"train.dtype": "fp32"})
    assert peak(fp32) > peak(base)
    assert (
        memory_breakdown(fp32, A100).amp_copies == 0 and memory_breakdown(base, A100).amp_copies > 0
    )
    assert peak(gpt(**{"train.compile": True})) < peak(base)
    ckpt = memory_breakdown(gpt(**{"train.activation_checkpointing": True}), A100)
    assert ckpt.activations < memory_breakdown(base, A100).activations
    plain = memory_breakdown(base, A100, flash=False)
    flash = memory_breakdown(base, A100, flash=True)
    assert plain.activation_form == "plain attention" and flash.activation_form == "flash/SDPA"
    assert plain.activations > flash.activations


def test_plain_attention_grows_with_the_square_of_the_block():
    def extra(block: int) -> int:
        m = memory_breakdown(gpt(**{"model.block_size": block}), A100)
        return m.activations_per_layer_plain - m.activations_per_layer

    # the s^2 part quadruples when the block doubles (the linear parts only double)
    assert extra(1024) / extra(512) == pytest.approx(4, rel=0.05)


def test_optimizer_state_is_two_fp32_moments_and_weights_are_fp32():
    p = gpt()
    n = count_params(p.model)
    m = memory_breakdown(p, A100)
    assert (m.weights, m.gradients, m.optimizer) == (4 * n, 4 * n, 8 * n)
    assert m.allocator_slack == pytest.approx(
        ALLOCATOR_SLACK * (m.reserved_bytes - m.allocator_slack), rel=1e-6
    )
    assert m.total_bytes == sum(v for _, v in m.items())


def test_dtype_auto_follows_the_gpu():
    p = gpt()
    assert training_dtype(p, A100) == "bf16"
    assert training_dtype(p, T4) == "fp16"  # no bf16 tensor cores: fp16 with a GradScaler
    assert training_dtype(p, None) == "fp32"
    assert training_dtype(gpt(**{"train.dtype": "fp32"}), A100) == "fp32"


def test_no_gpu_estimates_without_a_verdict_of_fit():
    e = estimate(gpt(), None)
    assert e.fits is None and e.margin_bytes is None and e.eta_s is None
    assert "no GPU" in e.verdict
    assert e.memory.cuda_context == 0


def test_verdict_says_by_how_much():
    small = estimate(load_preset("tiny_char"), A100)
    assert (
        small.fits is True
        and small.margin_bytes > 0
        and small.verdict.startswith("fits on A100-80GB")
    )
    huge = estimate(load_preset("500M_1024"), T4, batch_size=64)
    assert huge.fits is False and huge.margin_bytes < 0
    assert huge.verdict.startswith("does not fit on T4") and "short" in huge.verdict


def test_estimate_reports_tokens_flops_and_chinchilla():
    p = load_preset("gpt2_124m")
    e = estimate(p, A100)
    assert e.params == count_params(p.model)
    assert e.flops_per_token == flops_per_token(p.model)
    assert e.tokens_per_step == p.train.batch_size * p.train.grad_accum * p.model.block_size
    assert e.run_tokens == e.tokens_per_step * p.train.max_steps
    assert e.chinchilla_tokens == 20 * e.params
    # another micro-batch changes the peak, never the tokens per step
    assert estimate(p, A100, batch_size=8).tokens_per_step == e.tokens_per_step
    json.dumps(as_dict(e))  # --json output is plain JSON


def test_eta_and_mfu():
    p = load_preset("gpt2_124m")
    flops = flops_per_token(p.model) * p.tokens_per_step * p.train.max_steps
    assert eta_seconds(p, A100, 0.5) == pytest.approx(flops / (312e12 * 0.5))
    assert eta_seconds(p, A100, 0.25) == pytest.approx(2 * eta_seconds(p, A100, 0.5))
    assert eta_seconds(p, None) is None
    assert eta_seconds(p, A100, 0) is None
    assert mfu(1000.0, 1e9, 1e13) == pytest.approx(0.1)
    assert mfu(1000.0, 1e9, None) is None and mfu(0.0, 1e9, 1e13) is None


# --------------------------------------------------------------------------- batch suggestions


def test_suggestion_fits_with_headroom_and_keeps_tokens_per_step():
    p = gpt(**{"train.batch_size": 16, "train.grad_accum": 4})
    for gpu in CATALOG:
        s = suggest_batch(p, gpu)
        assert s.micro_batch * s.grad_accum == 64  # 64 has divisors: tokens per step kept exactly
        assert s.tokens_per_step == p.tokens_per_step
        if s.micro_batch > 1:
            assert s.peak_bytes <= gpu.memory_bytes * (1 - s.headroom)


def test_suggestion_is_the_largest_that_fits_when_the_step_is_big():
    p = gpt(**{"train.batch_size": 1024})
    s = suggest_batch(p, A100, headroom=0.1)
    budget = A100.memory_bytes * 0.9
    assert peak(p, batch_size=s.micro_batch) <= budget
    # it may step down to a divisor of 1024, never below half of the largest that fits
    largest = s.micro_batch
    while peak(p, batch_size=largest + 1) <= budget:
        largest += 1
    assert largest // 2 <= s.micro_batch <= largest
    assert 1024 % s.micro_batch == 0


def test_suggestion_rounds_accumulation_up_for_a_prime_step():
    p = gpt(**{"train.batch_size": 1, "train.grad_accum": 997})  # 997 sequences, a prime
    s = suggest_batch(p, A100)
    assert s.micro_batch * s.grad_accum >= 997
    assert "rounded up from 997" in s.reason or s.micro_batch * s.grad_accum == 997


def test_more_headroom_never_suggests_a_bigger_batch():
    p = gpt(**{"train.batch_size": 2048})
    sizes = [suggest_batch(p, A100, h).micro_batch for h in (0.0, 0.08, 0.3, 0.6)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]


def test_model_too_big_for_the_gpu_says_so():
    p = apply_overrides(load_preset("500M_1024"), {"model.n_layer": 96})
    s = suggest_batch(p, T4)
    assert (
        s.micro_batch == 1
        and "even a micro-batch of 1" in s.reason
        and "activation checkpointing" in s.reason
    )


def test_no_gpu_no_suggestion():
    assert suggest_batch(gpt(), None) is None


@pytest.mark.parametrize(
    "gpu_name, reference", [("T4", 8), ("A10G", 16), ("A100-40GB", 32), ("A100-80GB", 64)]
)
def test_gpt2_124m_suggestions_are_near_the_seed_table(gpu_name, reference):
    # seed 000: micro-batch 8 / 16 / 32 / 64 for GPT-2 124M at block 1024 (compiled, bf16 or fp16)
    gpu = lookup_gpu(gpu_name)
    for compile_ in (False, True):
        p = apply_overrides(
            load_preset("gpt2_124m"), {"train.batch_size": 512, "train.compile": compile_}
        )
        s = suggest_batch(p, gpu)
        assert reference / 2 <= s.micro_batch <= reference * 2, (compile_, s.reason)


def test_suggestions_for_every_preset_and_gpu_are_quick():
    started = time.perf_counter()
    for preset in list_presets():
        for gpu in CATALOG:
            suggest_batch(preset, gpu)
    per_call = (time.perf_counter() - started) / (len(list_presets()) * len(CATALOG))
    assert per_call < 0.05  # analytic: well under a second, even on a slow CI machine


def test_apply_gives_a_valid_preset():
    p = gpt(**{"train.batch_size": 256})
    s = suggest_batch(p, T4)
    applied = s.apply(p)
    assert (applied.train.batch_size, applied.train.grad_accum) == (s.micro_batch, s.grad_accum)


# --------------------------------------------------------------------------- calibration from a probe


def test_fit_calibration_is_a_line_through_the_points():
    c = fit_calibration("NVIDIA A100-SXM4-80GB", [(8, 10 * GIB), (16, 14 * GIB)])
    assert c.per_sequence_bytes == pytest.approx(GIB / 2)
    assert c.fixed_bytes == pytest.approx(6 * GIB)
    assert c.predict(32) == 22 * GIB
    three = fit_calibration("x", [(1, 100), (2, 210), (3, 300)])
    assert three.per_sequence_bytes == pytest.approx(100)
    with pytest.raises(ValueError):
        fit_calibration("x", [(8, 100)])
    with pytest.raises(ValueError):
        fit_calibration("x", [(8, 100), (8, 120)])


def test_stored_calibration_replaces_the_analytic_peak(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT_COCKPIT_CACHE", str(tmp_path))
    p = gpt()
    analytic = estimate(p, A100)
    assert analytic.measured is False
    path = save_calibration(p, fit_calibration(A100.name, [(4, 3 * GIB), (8, 5 * GIB)]))
    assert path.parent == tmp_path / "calibration" and path.exists()
    measured = estimate(p, A100, batch_size=16)
    assert measured.measured is True
    assert measured.peak_bytes == 9 * GIB + measured.memory.cuda_context
    assert "measured" in measured.verdict
    # the suggestion follows the measured line too
    s = suggest_batch(apply_overrides(p, {"train.batch_size": 4096}), A100)
    assert (
        s.peak_bytes
        == Calibration(A100.name, GIB, GIB / 2).predict(s.micro_batch)
        + measured.memory.cuda_context
    )


def test_calibration_is_keyed_by_gpu_and_shape_not_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT_COCKPIT_CACHE", str(tmp_path))
    p = gpt()
    save_calibration(p, fit_calibration(A100.name, [(4, 3 * GIB), (8, 5 * GIB)]))
    assert (
        load_calibration(gpt(**{"train.batch_size": 64, "train.lr": 1e-4}), A100.name) is not None
    )
    assert load_calibration(p, "H100") is None
    assert load_calibration(gpt(**{"model.n_layer": 7}), A100.name) is None
    assert load_calibration(gpt(**{"train.compile": True}), A100.name) is None
    assert calibration_key(p, "NVIDIA A100 80GB/PCIe").startswith("NVIDIA_A100_80GB_PCIe-")


def test_a_corrupt_calibration_falls_back_to_the_analytic_estimate(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT_COCKPIT_CACHE", str(tmp_path))
    p = gpt()
    path = save_calibration(p, fit_calibration(A100.name, [(4, 3 * GIB), (8, 5 * GIB)]))
    for junk in (
        "{not json",
        "[]",
        '{"gpu_name": "x"}',
        '{"gpu_name": "x", "fixed_bytes": "a", "per_sequence_bytes": 1}',
    ):
        path.write_text(junk)
        e = estimate(p, A100)
        assert e.measured is False and e.peak_bytes == e.memory.total_bytes


def test_calibration_dir_defaults_to_the_platform_cache(monkeypatch):
    monkeypatch.delenv("GPT_COCKPIT_CACHE")
    assert est_mod.calibration_dir().name == "calibration"


# --------------------------------------------------------------------------- formatting


def test_formatting():
    assert fmt_bytes(512) == "512 B"
    assert fmt_bytes(1536) == "1.5 KiB"
    assert fmt_bytes(3 * GIB) == "3.0 GiB"
    assert fmt_bytes(-2 * GIB) == "-2.0 GiB"
    assert fmt_count(124_439_808) == "124.44M"
    assert fmt_count(999) == "999"
