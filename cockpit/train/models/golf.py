"""golf: the parameter-golf baseline's module (its spec: cockpit/arch/golf.py)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cockpit.arch.golf import SPEC
from cockpit.plan.presets import ModelConfig
from cockpit.train.models.base import LanguageModel, causal_attention, softcapped


def rotary_tables(
    seq_len: int, head_dim: int, base: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape (1, 1, T, head_dim/2) for rotary position embeddings."""
    inv_freq = 1.0 / (
        base ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    )
    t = torch.arange(seq_len, dtype=torch.float32, device=device)
    freqs = torch.outer(t, inv_freq)
    return freqs.cos()[None, None], freqs.sin()[None, None]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of the head dimension."""
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos + x2 * sin, -x1 * sin + x2 * cos), dim=-1)


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    """RMSNorm without a learned scale."""
    return F.rms_norm(x, (x.size(-1),))


class GolfAttention(nn.Module):
    """Grouped-query attention with RoPE and a learned per-head query gain."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.n_kv_head = cfg.n_kv_head or cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        kv_dim = self.n_kv_head * self.head_dim
        self.c_q = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.c_k = nn.Linear(cfg.n_embd, kv_dim, bias=False)
        self.c_v = nn.Linear(cfg.n_embd, kv_dim, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        nn.init.zeros_(self.proj.weight)  # zero-init output projection, as the baseline does
        self.q_gain = nn.Parameter(torch.full((cfg.n_head,), float(cfg.qk_gain_init)))
        self.rope_base = cfg.rope_base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = self.c_v(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        q, k = rms_norm(q), rms_norm(k)
        cos, sin = rotary_tables(T, self.head_dim, self.rope_base, x.device)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        q = q * self.q_gain.to(q.dtype)[None, :, None, None]
        if self.n_kv_head != self.n_head:
            repeat = self.n_head // self.n_kv_head
            k = k.repeat_interleave(repeat, dim=1)
            v = v.repeat_interleave(repeat, dim=1)
        y = causal_attention(q, k, v)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class GolfMLP(nn.Module):
    """relu^2 MLP."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, cfg.mlp_ratio * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.mlp_ratio * cfg.n_embd, cfg.n_embd, bias=False)
        nn.init.zeros_(self.proj.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.relu(self.fc(x)).square())


class GolfBlock(nn.Module):
    """Pre-RMSNorm block with learned residual scales and a mix with the first-layer stream."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn = GolfAttention(cfg)
        self.mlp = GolfMLP(cfg)
        self.attn_scale = nn.Parameter(torch.ones(cfg.n_embd))
        self.mlp_scale = nn.Parameter(torch.ones(cfg.n_embd))
        self.resid_mix = nn.Parameter(
            torch.stack((torch.ones(cfg.n_embd), torch.zeros(cfg.n_embd)))
        )

    def forward(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        x = x + self.attn_scale.to(x.dtype) * self.attn(rms_norm(x))
        return x + self.mlp_scale.to(x.dtype) * self.mlp(rms_norm(x))


class GolfGPT(LanguageModel):
    """The parameter-golf baseline shape: GQA, RoPE, relu^2, U-Net skips, logit softcap.

    golf_baseline trains it as the baseline does (train.optimizer=muon: Muon for the blocks'
    matrices, Adam for the rest; cockpit/train/muon.py); any preset may pick AdamW instead.
    """

    control_patterns = SPEC.control_patterns
    checkpointing_supported = SPEC.activation_checkpointing

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.block_size = cfg.block_size
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        nn.init.normal_(self.tok_emb.weight, mean=0.0, std=cfg.tied_embed_init_std)
        self.num_encoder_layers = cfg.n_layer // 2
        self.num_decoder_layers = cfg.n_layer - self.num_encoder_layers
        n_skip = min(self.num_encoder_layers, self.num_decoder_layers)
        self.skip_weights = nn.Parameter(torch.ones(n_skip, cfg.n_embd))
        self.blocks = nn.ModuleList([GolfBlock(cfg) for _ in range(cfg.n_layer)])
        self.lm_head = (
            None if cfg.tie_embeddings else nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        )
        if self.lm_head is not None:
            nn.init.zeros_(self.lm_head.weight)
        self.logit_softcap = cfg.logit_softcap

    def features(self, idx: torch.Tensor) -> torch.Tensor:
        x = rms_norm(self.tok_emb(idx))
        x0 = x
        skips = []
        for i in range(self.num_encoder_layers):
            x = self._run_block(self.blocks[i], x, x0)
            skips.append(x)
        for i in range(self.num_decoder_layers):
            if skips and i < self.skip_weights.size(0):
                x = x + self.skip_weights[i].to(x.dtype) * skips.pop()
            x = self._run_block(self.blocks[self.num_encoder_layers + i], x, x0)
        return rms_norm(x)

    def head_weight(self) -> torch.Tensor:
        return self.tok_emb.weight if self.lm_head is None else self.lm_head.weight

    def logits_for(self, idx: torch.Tensor, last_only: bool) -> torch.Tensor:
        x = self.features(idx)
        if last_only:
            x = x[:, [-1], :]
        return softcapped(F.linear(x, self.head_weight()), self.logit_softcap)
