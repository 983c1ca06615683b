"""golf: the parameter-golf baseline (GQA, RoPE, relu^2 MLP, U-Net skips, logit softcap).

Exact parameter count (C = n_embd, L = n_layer, V = vocab_size, H = n_head, r = mlp_ratio,
K = n_kv_head * C/H), the module in cockpit/train/models/golf.py; its RMSNorms have no weights:

    tok_emb V*C + skip_weights min(L//2, L-L//2)*C
    + L * [ c_q C*C + c_k C*K + c_v C*K + proj C*C + q_gain H
            + fc C*rC + proj rC*C + attn_scale C + mlp_scale C + resid_mix 2C ]
    + (untied head: V*C)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cockpit.arch.base import ArchSpec, Problem, plain_attention_bytes, rotary_problem

if TYPE_CHECKING:
    from cockpit.plan.presets import ModelConfig


def skip_count(m: ModelConfig) -> int:
    """U-Net skips: one per encoder layer that has a decoder layer to feed."""
    return min(m.n_layer // 2, m.n_layer - m.n_layer // 2)


class GolfSpec(ArchSpec):
    """The parameter-golf baseline."""

    name = "golf"
    description = "the parameter-golf baseline: GQA, RoPE, relu^2, U-Net skips, logit softcap"
    chunked_loss = True
    # the baseline's CONTROL_TENSOR_NAME_PATTERNS: residual mixes, scales, gains, skip weights
    control_patterns = ("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weight")

    def check(self, m: ModelConfig) -> Problem | None:
        problem = rotary_problem(m)
        if problem:
            return problem
        if m.n_layer < 2:
            return (
                "model.n_layer",
                "the golf architecture splits layers into encoder and decoder halves; use at least 2",
            )
        return None

    def _kv_dim(self, m: ModelConfig) -> int:
        return (m.n_kv_head or m.n_head) * (m.n_embd // m.n_head)

    def count_params(self, m: ModelConfig) -> int:
        C, L, V, H, r = m.n_embd, m.n_layer, m.vocab_size, m.n_head, m.mlp_ratio
        kv_dim = self._kv_dim(m)
        per_block = C * C + 2 * C * kv_dim + C * C + H + C * r * C + r * C * C + C + C + 2 * C
        total = V * C + skip_count(m) * C + L * per_block
        return total + (0 if m.tie_embeddings else V * C)

    def matrix_params(self, m: ModelConfig) -> int:
        C, L, r = m.n_embd, m.n_layer, m.mlp_ratio
        return L * (2 * C * C + 2 * C * self._kv_dim(m) + 2 * r * C * C)

    def matmul_params(self, m: ModelConfig) -> int:
        return self.matrix_params(m) + m.vocab_size * m.n_embd

    def layer_activation_bytes(self, m: ModelConfig, batch: int, dtype: str, *, flash: bool) -> int:
        s, b, h, a, r = m.block_size, batch, m.n_embd, m.n_head, m.mlp_ratio
        sbh = s * b * h
        drop = 1 if m.dropout > 0 else 0  # bool masks, one byte per element
        kv = (m.n_kv_head or a) / a
        per_token_small = 4 * a + 16  # attention logsumexp per head (fp32), two norms' mean/rstd
        # traced: fp32 rms_norm / relu^2 paths under autocast, one bf16 cast of the normed input
        # per projection, resid_mix's fp32 tensors; 4 bytes per KV width, 8 per MLP width, and per
        # width 42 under autocast (q and k cast to bf16 for flash attention, as a GPU runs it) or 52
        # in fp32
        base = 52 if dtype == "fp32" else 42
        total = sbh * (base + 4 * kv + 8 * r) + s * b * per_token_small + 2 * sbh * drop
        if not flash:
            total += plain_attention_bytes(m, batch, dtype)
        return int(total)

    def outside_blocks_bytes(self, m: ModelConfig, tokens: int, dtype: str) -> int:
        half = 4 if dtype == "fp32" else 2
        ids = 16  # int64 inputs and targets
        return tokens * (
            ids + (12 + half) * m.n_embd
        )  # x0, the U-Net skips, final norm, head input

    def checkpoint_waiting_tensors(self, m: ModelConfig) -> int:
        return skip_count(m)  # the U-Net skips' gradients wait for their decoder block

    def chunked_logit_floor(self, m: ModelConfig, tokens: int, dtype: str) -> int:
        # once its small logits are chunked, golf's peak moves into the blocks' backward
        # (25, in fp32 17, bytes per token per width, measured)
        return (17 if dtype == "fp32" else 25) * tokens * m.n_embd


SPEC = GolfSpec()
