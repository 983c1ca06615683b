"""bdh: BDH, one shared set of sparse encoder/decoder weights applied n_layer times.

Exact parameter count (C = n_embd, H = n_head, V = vocab_size, N = mlp_internal_dim_multiplier
* C // H), the module in cockpit/train/models/bdh.py; every layer shares these weights and its
LayerNorms have no affine parameters:

    encoder H*C*N + encoder_v H*C*N + decoder H*N*C + embed V*C + lm_head C*V
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cockpit.arch.base import ArchSpec, Problem, half_bytes, rotary_problem

if TYPE_CHECKING:
    from cockpit.plan.presets import ModelConfig


def latent_size(m: ModelConfig) -> int:
    """N, the per-head latent width."""
    return m.mlp_internal_dim_multiplier * m.n_embd // m.n_head


class BdhSpec(ArchSpec):
    """BDH."""

    name = "bdh"
    description = (
        "BDH: shared sparse encoder/decoder weights applied n_layer times, linear attention"
    )
    flash_attention = False  # its linear attention keeps the (T, T) scores
    logits_hole = False  # its small vocabulary's logits leave no reserved hole (traced)

    def check(self, m: ModelConfig) -> Problem | None:
        problem = rotary_problem(m)
        if problem:
            return problem
        if m.mlp_internal_dim_multiplier < 1:
            return ("model.mlp_internal_dim_multiplier", "must be at least 1")
        return None

    def count_params(self, m: ModelConfig) -> int:
        return 3 * m.n_head * m.n_embd * latent_size(m) + 2 * m.vocab_size * m.n_embd

    def matrix_params(self, m: ModelConfig) -> int:
        return 3 * m.n_head * m.n_embd * latent_size(m)

    def token_embedding_params(self, m: ModelConfig) -> int:
        return 0  # its head is a weight of its own, never tied; the count keeps both

    def flops_per_token(self, m: ModelConfig) -> float:
        # one shared set of weights applied n_layer times: 6 FLOPs per weight use, plus linear attention
        N = latent_size(m)
        per_layer = 3 * m.n_head * m.n_embd * N
        return (
            6 * (m.n_layer * per_layer + m.vocab_size * m.n_embd)
            + 12 * m.n_layer * m.n_head * N * m.block_size
        )

    def matmul_params(self, m: ModelConfig) -> int:
        return self.count_params(m) - m.vocab_size * m.n_embd  # everything but the input embedding

    def layer_activation_bytes(self, m: ModelConfig, batch: int, dtype: str, *, flash: bool) -> int:
        """One BDH layer as traced: (B, nh, T, N) latents, the linear-attention scores, the residual.

        The encoders are applied per head (no copy of the weights expanded over the batch); its
        scores are always materialised, so `flash` changes nothing."""
        s, b, h, a = m.block_size, batch, m.n_embd, m.n_head
        half = half_bytes(dtype)
        drop = 1 if m.dropout > 0 else 0  # bool masks, one byte per element
        N = latent_size(m)
        latent = (
            s * b * a * N * (4 * half + 0.6 + drop)
        )  # x_sparse, rotated q, relu(y_latent), product
        scores = b * a * s * s * half  # the masked scores, saved for `scores @ x`
        return int(latent + scores + s * b * (8 * h + 48))

    def transient_bytes(self, m: ModelConfig, batch: int, dtype: str) -> int:
        """The peak is at the last layer's output norm: its latent temporaries are live then (measured)."""
        half = half_bytes(dtype)
        return int(m.block_size * batch * m.n_head * latent_size(m) * (3 * half + 0.2))

    def outside_blocks_bytes(self, m: ModelConfig, tokens: int, dtype: str) -> int:
        half = half_bytes(dtype)
        h = m.n_embd
        ids = 16  # int64 inputs and targets
        # each layer keeps its own (D, nh*N) re-laid-out, 16-bit copy of the encoder for backward
        encoder_copies = m.n_layer * m.n_head * h * latent_size(m) * half
        transient = self.transient_bytes(m, tokens // m.block_size, dtype)
        return tokens * (ids + 12 * h) + transient + encoder_copies

    def tied_head(self, m: ModelConfig) -> bool:
        return False


SPEC = BdhSpec()
