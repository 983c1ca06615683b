"""gpt: nanoGPT's GPT (learned positions, pre-LayerNorm, GELU MLP), with optional residual streams.

Exact parameter count (C = n_embd, L = n_layer, V = vocab_size, T = block_size, r = mlp_ratio,
b = 1 with bias else 0), the module in cockpit/train/models/gpt.py:

    wte V*C + wpe T*C
    + L * [ (2 LayerNorms) 2*C*(1+b) + c_attn C*3C + 3C*b + c_proj C*C + C*b
            + c_fc C*rC + rC*b + c_proj rC*C + C*b ]
    + ln_f C*(1+b) + (untied head: V*C)
    + (num_streams n > 1: L * 2 * (n*n + 2n) stream-mixing weights, cockpit/train/streams.py)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cockpit.arch.base import ArchSpec, Problem, half_bytes, plain_attention_bytes

if TYPE_CHECKING:
    from cockpit.plan.presets import ModelConfig


def stream_mix_params(m: ModelConfig) -> int:
    """Per block, the residual streams' mixing weights (cockpit/train/streams.py): two sublayers,
    each an n x n mix, n read weights and n write weights; 0 for the plain residual."""
    n = m.num_streams
    return 2 * (n * n + 2 * n) if n > 1 else 0


def stream_mix_bytes(m: ModelConfig, sbh: int, half: int) -> int:
    """Residual streams (num_streams n > 1), per block: each of the two mixes keeps the n fp32
    streams it reads (for its weights' gradients) and the sublayer output it scales (16-bit)."""
    n = m.num_streams
    return 2 * sbh * (4 * n + half) if n > 1 else 0


class GptSpec(ArchSpec):
    """nanoGPT's GPT."""

    name = "gpt"
    description = "nanoGPT's GPT: learned positions, pre-LayerNorm, GELU MLP, GPT-2 init"
    chunked_loss = True
    streams = True
    hf_export = True

    def check(self, m: ModelConfig) -> Problem | None:
        if m.n_kv_head not in (0, m.n_head):
            return (
                "model.n_kv_head",
                "the gpt architecture has no grouped-query attention; set it to 0 or use arch golf",
            )
        return None

    def count_params(self, m: ModelConfig) -> int:
        C, L, V, T, r = m.n_embd, m.n_layer, m.vocab_size, m.block_size, m.mlp_ratio
        b = 1 if m.bias else 0
        per_block = (
            2 * C * (1 + b)
            + (C * 3 * C + 3 * C * b)
            + (C * C + C * b)
            + (C * r * C + r * C * b)
            + (r * C * C + C * b)
        )
        total = V * C + T * C + L * (per_block + stream_mix_params(m)) + C * (1 + b)
        return total + (0 if m.tie_embeddings else V * C)

    def matrix_params(self, m: ModelConfig) -> int:
        C, L, r = m.n_embd, m.n_layer, m.mlp_ratio
        return L * (3 * C * C + C * C + 2 * r * C * C)

    def embedding_params(self, m: ModelConfig) -> int:
        return m.block_size * m.n_embd

    def flops_per_token(self, m: ModelConfig) -> float:
        # residual streams: each mix reads n streams and writes n x n + n products per width (x6
        # for forward and backward), beyond the 6 FLOPs per mixing weight the N term counts
        mix = 6 * 2 * m.n_layer * (m.num_streams**2 + 2 * m.num_streams) * m.n_embd
        mix = mix if m.num_streams > 1 else 0
        return super().flops_per_token(m) + mix

    def matmul_params(self, m: ModelConfig) -> int:
        C, L, V, r = m.n_embd, m.n_layer, m.vocab_size, m.mlp_ratio
        return L * (4 * C * C + 2 * r * C * C) + V * C  # blocks and the output head

    def layer_activation_bytes(self, m: ModelConfig, batch: int, dtype: str, *, flash: bool) -> int:
        s, b, h, a, r = m.block_size, batch, m.n_embd, m.n_head, m.mlp_ratio
        half = half_bytes(dtype)
        full = 4  # residual stream and norm inputs stay fp32
        sbh = s * b * h
        drop = 1 if m.dropout > 0 else 0  # bool masks, one byte per element
        kv = (m.n_kv_head or a) / a
        per_token_small = 4 * a + 16  # attention logsumexp per head (fp32), two norms' mean/rstd
        attn = (
            sbh * half * (1 + 1 + 2 * kv + 1)
        )  # normed input cast, q, k, v, output (= c_proj input)
        mlp = sbh * half * (1 + 2 * r)  # normed input cast, fc output, GELU output
        norms = 2 * sbh * full  # the two LayerNorm inputs (fp32 residual stream)
        total = attn + mlp + norms + s * b * per_token_small + 2 * sbh * drop
        total += stream_mix_bytes(m, sbh, half)
        if not flash:
            total += plain_attention_bytes(m, batch, dtype)
        return int(total)

    def outside_blocks_bytes(self, m: ModelConfig, tokens: int, dtype: str) -> int:
        half = half_bytes(dtype)
        h = m.n_embd
        ids = 16  # int64 inputs and targets
        drop = h if m.dropout > 0 else 0
        return tokens * (ids + 8 + (4 + half) * h + drop)


SPEC = GptSpec()
