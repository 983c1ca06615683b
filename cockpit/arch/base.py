"""What an architecture tells the planning core, the presets and the engine: ArchSpec.

A spec is torch-free arithmetic about a model section (cockpit.plan.presets.ModelConfig): its
rules, its exact parameter count, the FLOPs of a training token, the bytes its blocks keep for
backward, and what the engine can do with it. The module that the count describes lives in
cockpit/train/models/<name>.py; tests/test_arch_registry.py checks that the two agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cockpit.plan.presets import ModelConfig

# (field path, message): a rule of the architecture that the model section breaks
Problem = tuple[str, str]


def half_bytes(dtype: str) -> int:
    """Bytes of a matmul input under autocast: 2 for bf16/fp16, 4 in fp32."""
    return 4 if dtype == "fp32" else 2


def rotary_problem(m: ModelConfig) -> Problem | None:
    """Rotary embeddings rotate pairs of a head's dimensions: the head size must be even."""
    if (m.n_embd // m.n_head) % 2:
        return (
            "model.n_embd",
            f"rotary embeddings need an even head size; n_embd/n_head is {m.n_embd // m.n_head}",
        )
    return None


class ArchSpec:
    """One architecture: its rules, sizes, FLOPs, activation bytes and what the engine supports.

    Subclasses set the class attributes and implement the sizes; the defaults are those of a
    plain transformer with a token embedding and no position embedding.
    """

    name: str = ""
    description: str = ""
    # what the engine can do with this architecture
    activation_checkpointing: bool = True  # train.activation_checkpointing recomputes its blocks
    chunked_loss: bool = False  # model.loss_chunk: fused head + cross-entropy in chunks
    streams: bool = False  # model.num_streams > 1: parallel residual streams
    hf_export: bool = False  # `export` writes Hugging Face's GPT-2 layout (else our own names)
    flash_attention: bool = True  # SDPA keeps no s^2 scores (bdh's linear attention does)
    # parameter-name fragments of 2-D tensors trained as scalars (Adam) by the muon optimizer
    control_patterns: tuple[str, ...] = ()
    logits_hole: bool = True  # the 16-bit logits, freed in the forward, leave a reserved hole
    measured: bool = False  # figures measured from the module (your own model), not formulas

    def check(self, m: ModelConfig) -> Problem | None:
        """The first rule of this architecture that `m` breaks (None when it keeps them all)."""
        return None

    def count_params(self, m: ModelConfig) -> int:
        """Exact parameter count of the module cockpit.train.models.build_model(m) builds."""
        raise NotImplementedError

    def matrix_params(self, m: ModelConfig) -> int:
        """Parameters the muon optimizer trains with Muon (cockpit.train.optim.param_roles' "matrix")."""
        raise NotImplementedError

    def embedding_params(self, m: ModelConfig) -> int:
        """Parameters in position embeddings (left out of FLOPs, as nanoGPT's estimate_mfu does)."""
        return 0

    def token_embedding_params(self, m: ModelConfig) -> int:
        """Token-embedding parameters left out of the non-embedding count (the tied head's too)."""
        return m.vocab_size * m.n_embd

    def non_embedding_params(self, m: ModelConfig) -> int:
        """Parameters without the position and token embeddings."""
        return self.count_params(m) - self.embedding_params(m) - self.token_embedding_params(m)

    def flops_per_token(self, m: ModelConfig) -> float:
        """Training FLOPs per token: 6N + 12*L*H*Q*T (PaLM appendix B; N without position embeddings)."""
        n = self.count_params(m) - self.embedding_params(m)
        head_dim = m.n_embd // m.n_head
        return 6 * n + 12 * m.n_layer * m.n_head * head_dim * m.block_size

    def matmul_params(self, m: ModelConfig) -> int:
        """Parameters autocast casts to 16 bits for a matmul (one cached copy each, kept for backward)."""
        raise NotImplementedError

    def layer_activation_bytes(self, m: ModelConfig, batch: int, dtype: str, *, flash: bool) -> int:
        """Bytes one block keeps for backward, term by term as the traced step keeps them."""
        raise NotImplementedError

    def outside_blocks_bytes(self, m: ModelConfig, tokens: int, dtype: str) -> int:
        """Bytes outside the blocks: the batch (inputs, targets), the last residual, the head's input."""
        raise NotImplementedError

    def checkpoint_waiting_tensors(self, m: ModelConfig) -> int:
        """Residual-wide gradients waiting for their block during a checkpointed backward (skips)."""
        return 0

    def chunked_logit_floor(self, m: ModelConfig, tokens: int, dtype: str) -> int:
        """With model.loss_chunk: bytes of a peak that moves into the blocks' backward (0: none)."""
        return 0

    def tied_head(self, m: ModelConfig) -> bool:
        """The output head is the token embedding (two gradients summed at the end of backward)."""
        return m.tie_embeddings


def plain_attention_bytes(m: ModelConfig, batch: int, dtype: str) -> float:
    """Materialised attention: scores, softmax, its dropout mask, attention weights (16-bit)."""
    s, a = m.block_size, m.n_head
    return 5 * a * s * s * batch * (half_bytes(dtype) / 2)
