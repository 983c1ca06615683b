"""gpt: nanoGPT's GPT module (its spec, parameter count included: cockpit/arch/gpt.py)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from cockpit.arch.gpt import SPEC
from cockpit.plan.presets import ModelConfig
from cockpit.train.models.base import LanguageModel, causal_attention
from cockpit.train.streams import StreamMix


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's has no bias=False before 2.1)."""

    def __init__(self, ndim: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention through scaled_dot_product_attention (flash on CUDA)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = causal_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, cfg.mlp_ratio * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.mlp_ratio * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(cfg.n_embd, cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = LayerNorm(cfg.n_embd, cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class StreamBlock(Block):
    """A Block over model.num_streams residual streams (cockpit.train.streams), shape (n, B, T, C)."""

    def __init__(self, cfg: ModelConfig, index: int) -> None:
        super().__init__(cfg)
        n, iters, temp = cfg.num_streams, cfg.mixing_iters, cfg.mixing_temperature
        self.mix_attn = StreamMix(n, iters, temp, 2 * index)
        self.mix_mlp = StreamMix(n, iters, temp, 2 * index + 1)

    def forward(self, streams: torch.Tensor) -> torch.Tensor:
        streams = self.mix_attn(streams, self.ln_1, self.attn)
        return self.mix_mlp(streams, self.ln_2, self.mlp)


def _gpt_block(cfg: ModelConfig, index: int) -> Block:
    """The plain Block, or a StreamBlock when the preset asks for parallel residual streams."""
    return Block(cfg) if cfg.num_streams <= 1 else StreamBlock(cfg, index)


class GPT(LanguageModel):
    """nanoGPT's GPT: learned positions, pre-LayerNorm, GELU MLP, tied embeddings, GPT-2 init."""

    checkpointing_supported = SPEC.activation_checkpointing

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.block_size = cfg.block_size
        self.num_streams = cfg.num_streams
        wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.transformer = nn.ModuleDict(
            dict(
                wte=wte,
                wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
                drop=nn.Dropout(cfg.dropout),
                h=nn.ModuleList([_gpt_block(cfg, i) for i in range(cfg.n_layer)]),
                ln_f=LayerNorm(cfg.n_embd, cfg.bias),
            )
        )
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = wte.weight  # weight tying (one tensor, two uses)
        self.apply(_gpt2_init)
        # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    def features(self, idx: torch.Tensor) -> torch.Tensor:
        b, t = idx.size()
        if t > self.block_size:
            raise ValueError(f"sequence of {t} tokens is longer than block_size {self.block_size}")
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        parts = self.transformer
        x = parts["drop"](parts["wte"](idx) + parts["wpe"](pos))
        if self.num_streams > 1:  # every stream starts as the embedding; the mean is read out
            x = x.unsqueeze(0).repeat(self.num_streams, 1, 1, 1)
        blocks: nn.ModuleList = parts["h"]  # type: ignore[assignment]
        for block in blocks:
            x = self._run_block(block, x)
        if self.num_streams > 1:
            x = x.mean(0)
        return parts["ln_f"](x)

    def head_weight(self) -> torch.Tensor:
        return self.lm_head.weight

    def logits_for(self, idx: torch.Tensor, last_only: bool) -> torch.Tensor:
        x = self.features(idx)
        if last_only:
            x = x[:, [-1], :]
        return self.lm_head(x)


def _gpt2_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
