"""bdh: the BDH module (its spec: cockpit/arch/bdh.py)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from cockpit.arch.bdh import SPEC
from cockpit.plan.presets import ModelConfig
from cockpit.train.models.base import LanguageModel


class BDH(LanguageModel):
    """BDH: one shared set of sparse encoder/decoder weights applied n_layer times."""

    checkpointing_supported = SPEC.activation_checkpointing

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.block_size = cfg.block_size
        nh, D = cfg.n_head, cfg.n_embd
        N = cfg.mlp_internal_dim_multiplier * D // nh
        self.n_layer, self.n_head, self.N = cfg.n_layer, nh, N
        self.decoder = nn.Parameter(torch.zeros((nh * N, D)).normal_(std=0.02))
        self.encoder = nn.Parameter(torch.zeros((nh, D, N)).normal_(std=0.02))
        self.encoder_v = nn.Parameter(torch.zeros((nh, D, N)).normal_(std=0.02))
        self.embed = nn.Embedding(cfg.vocab_size, D)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.lm_head = nn.Parameter(torch.zeros((D, cfg.vocab_size)).normal_(std=0.02))
        self.drop = nn.Dropout(cfg.dropout)
        self.rope_base = cfg.rope_base

    def _rope_tables(self, T: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """bdh.py's rotary: adjacent pairs share a frequency 1/base^(2*floor(j/2)/N), phases in turns.

        Built once per forward, shared by every layer: (cos, sin), each (T, N) fp32."""
        N = self.N
        j = torch.arange(N, dtype=torch.float32, device=device)
        freqs = 1.0 / (self.rope_base ** ((j / 2).floor() * 2 / N)) / (2 * math.pi)
        turns = torch.arange(T, dtype=torch.float32, device=device)[:, None] * freqs  # (T, N)
        phases = (turns % 1) * (2 * math.pi)
        return phases.cos(), phases.sin()

    @staticmethod
    def _rope(v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        v_rot = torch.stack((-v[..., 1::2], v[..., ::2]), dim=-1).view(*v.size())
        return v * cos.to(v.dtype) + v_rot * sin.to(v.dtype)

    def _layer(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, _, T, D = x.shape
        # per-head products as one batched matmul over the heads: `x @ encoder` would broadcast
        # the (nh, D, N) weight over the batch and keep that expanded copy for backward
        # (contiguous: the rotated copy feeds a batched matmul that would otherwise copy and keep it)
        x_latent = torch.einsum("btd,hdn->bhtn", x.squeeze(1), self.encoder).contiguous()
        x_sparse = F.relu(x_latent)
        qr = self._rope(x_sparse, cos, sin)
        scores = (qr @ qr.transpose(-1, -2)).tril(diagonal=-1)  # linear attention, strictly causal
        yKV = F.layer_norm(scores @ x, (D,))
        y_latent = torch.einsum("bhtd,hdn->bhtn", yKV, self.encoder_v)
        xy_sparse = self.drop(x_sparse * F.relu(y_latent))
        yMLP = xy_sparse.transpose(1, 2).reshape(B, 1, T, self.N * self.n_head) @ self.decoder
        return F.layer_norm(x + F.layer_norm(yMLP, (D,)), (D,))

    def logits_for(self, idx: torch.Tensor, last_only: bool) -> torch.Tensor:
        x = F.layer_norm(self.embed(idx).unsqueeze(1), (self.embed.embedding_dim,))  # (B, 1, T, D)
        cos, sin = self._rope_tables(idx.size(1), idx.device)
        for _ in range(self.n_layer):
            x = self._run_block(self._layer, x, cos, sin)
        x = x.squeeze(1)
        if last_only:
            x = x[:, [-1], :]
        return x @ self.lm_head

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        return [
            {
                "params": [p for p in self.parameters() if p.requires_grad],
                "weight_decay": weight_decay,
            }
        ]
