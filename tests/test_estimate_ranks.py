"""The estimator per GPU of a run on several GPUs: DDP's gradient buckets, FSDP's shards."""

from __future__ import annotations

import json

from cockpit.__main__ import main
from cockpit.plan.allocator import FRAGMENTATION
from cockpit.plan.estimate import (
    count_params,
    estimate,
    fsdp_unit_params,
    memory_breakdown,
    memory_per_gpu,
    suggest_batch,
)
from cockpit.plan.gpu import lookup_gpu
from cockpit.plan.presets import apply_overrides, load_preset


def test_one_gpu_is_the_plain_breakdown():
    preset = load_preset("gpt2_124m")
    assert memory_per_gpu(preset, lookup_gpu("A100-80GB"), world_size=1) == memory_breakdown(
        preset, lookup_gpu("A100-80GB")
    )


def test_ddp_adds_a_flat_copy_of_the_gradients():
    preset, gpu = load_preset("gpt2_124m"), lookup_gpu("A100-80GB")
    one, ddp = memory_breakdown(preset, gpu), memory_per_gpu(preset, gpu, world_size=8)
    params = count_params(preset.model)
    assert ddp.comm_buffers == params * 4 and ddp.comm_form == "DDP gradient buckets"
    assert ddp.weights == one.weights and ddp.optimizer == one.optimizer
    grown = ddp.total_bytes - one.total_bytes
    # the buckets and the allocator model's fragmentation on them
    assert abs(grown - params * 4 * (1 + FRAGMENTATION)) <= 8


def test_fsdp_shards_weights_grads_and_optimizer_state_and_gathers_units():
    preset = apply_overrides(load_preset("gpt2_124m"), {"train.parallel": "fsdp"})
    gpu = lookup_gpu("A100-80GB")
    one, fsdp = memory_breakdown(preset, gpu), memory_per_gpu(preset, gpu, world_size=8)
    params = count_params(preset.model)
    assert fsdp.weights == -(-params * 4 // 8) and fsdp.optimizer == one.optimizer // 8
    assert fsdp.comm_buffers == 3 * 4 * fsdp_unit_params(preset.model)
    assert fsdp.activations == one.activations and fsdp.logits == one.logits  # per-GPU micro-batch
    ddp = memory_per_gpu(preset, gpu, world_size=8, parallel="ddp")
    assert fsdp.total_bytes < ddp.total_bytes


def test_estimate_on_several_gpus_is_per_gpu_memory_and_global_tokens():
    preset, gpu = load_preset("gpt2_124m"), lookup_gpu("H100")
    one, eight = estimate(preset, gpu), estimate(preset, gpu, world_size=8)
    assert eight.world_size == 8 and eight.tokens_per_step == 8 * one.tokens_per_step
    assert eight.eta_s == one.eta_s / 8
    assert eight.peak_bytes > one.peak_bytes  # the buckets


def test_the_batch_suggestion_is_per_gpu_and_fsdp_fits_more():
    preset = apply_overrides(load_preset("gpt2_124m"), {"model.n_layer": 24, "model.n_embd": 1536})
    gpu = lookup_gpu("T4")
    ddp = suggest_batch(preset, gpu, world_size=4)
    fsdp = suggest_batch(apply_overrides(preset, {"train.parallel": "fsdp"}), gpu, world_size=4)
    assert ddp is not None and fsdp is not None
    assert fsdp.largest_fit >= ddp.largest_fit
    assert "per GPU of 4" in fsdp.reason
    seqs = preset.train.batch_size * preset.train.grad_accum
    assert fsdp.tokens_per_step >= seqs * preset.model.block_size * 4


def test_estimate_nproc_on_the_command_line(capsys):
    assert main(["estimate", "gpt2_124m", "--gpu", "A100-80GB", "--nproc", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["world_size"] == 4 and out["memory"]["comm_form"] == "DDP gradient buckets"
