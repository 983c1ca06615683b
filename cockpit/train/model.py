"""The models the engine trains: nanoGPT's GPT, the parameter-golf baseline, and BDH.

Exact parameter counts (C = n_embd, L = n_layer, V = vocab_size, T = block_size,
r = mlp_ratio, b = 1 with bias else 0; the estimator's count_params must agree):

gpt   wte V*C + wpe T*C
      + L * [ (2 LayerNorms) 2*C*(1+b) + c_attn C*3C + 3C*b + c_proj C*C + C*b
              + c_fc C*rC + rC*b + c_proj rC*C + C*b ]
      + ln_f C*(1+b) + (untied head: V*C)
      + (num_streams n > 1: L * 2 * (n*n + 2n) stream-mixing weights, cockpit/train/streams.py)
golf  tok_emb V*C + skip_weights min(L//2, L-L//2)*C
      + L * [ c_q C*C + c_k C*K + c_v C*K + proj C*C + q_gain H
              + fc C*rC + proj rC*C + attn_scale C + mlp_scale C + resid_mix 2C ]
      + (untied head: V*C)          (K = n_kv_head * C/H; RMSNorms have no weights)
bdh   encoder H*C*N + encoder_v H*C*N + decoder H*N*C + embed V*C + lm_head C*V
      (N = mlp_internal_dim_multiplier * C // H; every layer shares these weights;
      LayerNorm without affine parameters)
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from cockpit.plan.presets import ModelConfig
from cockpit.train.streams import StreamMix


class LanguageModel(nn.Module):
    """What every architecture shares: the loss, sampling, param groups, checkpointing."""

    block_size: int
    activation_checkpointing: bool = False
    loss_chunk: int = 0  # tokens per chunk of the fused output head + cross-entropy; 0: off
    logit_softcap: float = 0.0

    def features(self, idx: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """The final hidden states (B, T, C) that the output head turns into logits."""
        raise NotImplementedError

    def head_weight(self) -> torch.Tensor:  # pragma: no cover - abstract
        """The output head's (vocab, C) weight (the token embedding where tied)."""
        raise NotImplementedError

    def logits_for(self, idx: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits, mean cross-entropy); without targets, logits of the last position only.

        With model.loss_chunk set (gpt, golf) the logits are never made whole: the loss comes
        from chunked_cross_entropy and the logits returned are None."""
        if targets is None:
            logits = self.logits_for(idx, last_only=True)
            return logits, None
        if self.loss_chunk > 0:
            loss = chunked_cross_entropy(
                self.features(idx), self.head_weight(), targets, self.loss_chunk, self.logit_softcap
            )
            return None, loss  # type: ignore[return-value]
        logits = self.logits_for(idx, last_only=False)
        loss = F.cross_entropy(
            logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1
        )
        return logits, loss

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute each block's activations in backward instead of storing them."""
        self.activation_checkpointing = enabled

    def _run_block(self, block: nn.Module, x: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        if self.activation_checkpointing and self.training:
            return checkpoint(block, x, *args, use_reentrant=False)
        return block(x, *args)

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: decay matrices and embeddings (dim >= 2), not biases, norms or gains."""
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        vocab_limit: int | None = None,
    ) -> torch.Tensor:
        """Sample `max_new_tokens` tokens after `idx` (B, t), cropping the context to block_size.

        `vocab_limit` keeps sampling to ids the tokenizer can decode when vocab_size is padded
        (a char vocabulary of 65 in a 256-row embedding).
        """
        for _ in range(max_new_tokens):
            context = idx if idx.size(1) <= self.block_size else idx[:, -self.block_size :]
            logits, _ = self(context)
            logits = logits[:, -1, :].float() / max(temperature, 1e-5)
            if vocab_limit is not None and vocab_limit < logits.size(-1):
                logits[:, vocab_limit:] = -float("inf")
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("inf")
            probs = F.softmax(logits, dim=-1)
            idx = torch.cat((idx, torch.multinomial(probs, num_samples=1)), dim=1)
        return idx


# --------------------------------------------------------------------------- attention


def causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0
) -> torch.Tensor:
    """Causal scaled_dot_product_attention; under CPU bf16 autocast it runs in float32.

    On CPU, torch's flash kernel is fast in float32 but 5-7x slower in bfloat16 (its
    backward above all), while the matmuls around it gain 2-4x from bfloat16 on AMX. So a
    bf16 run on CPU keeps autocast's bf16 for the linears and computes attention in float32
    (the accuracy of fp32 there, the speed of bf16 elsewhere); GPUs take bf16 flash as is.
    """
    if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        low = torch.get_autocast_dtype("cpu")
        with torch.autocast("cpu", enabled=False):
            y = F.scaled_dot_product_attention(
                q.float(), k.float(), v.float(), dropout_p=dropout_p, is_causal=True
            )
        return y.to(low)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)


# --------------------------------------------------------------------------- gpt (nanoGPT)


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

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.block_size = cfg.block_size
        self.num_streams = cfg.num_streams
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
                wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
                drop=nn.Dropout(cfg.dropout),
                h=nn.ModuleList([_gpt_block(cfg, i) for i in range(cfg.n_layer)]),
                ln_f=LayerNorm(cfg.n_embd, cfg.bias),
            )
        )
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight  # weight tying (one tensor, two uses)
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
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        if self.num_streams > 1:  # every stream starts as the embedding; the mean is read out
            x = x.unsqueeze(0).repeat(self.num_streams, 1, 1, 1)
        for block in self.transformer.h:
            x = self._run_block(block, x)
        if self.num_streams > 1:
            x = x.mean(0)
        return self.transformer.ln_f(x)

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


# --------------------------------------------------------------------------- rotary helpers


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


# --------------------------------------------------------------------------- golf (parameter-golf baseline)


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


# --------------------------------------------------------------------------- bdh


class BDH(LanguageModel):
    """BDH: one shared set of sparse encoder/decoder weights applied n_layer times."""

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


ARCHITECTURES: dict[str, type[LanguageModel]] = {"gpt": GPT, "golf": GolfGPT, "bdh": BDH}


def build_model(cfg: ModelConfig) -> LanguageModel:
    """The module for `cfg.arch`, initialised (on the default device)."""
    try:
        cls = ARCHITECTURES[cfg.arch]
    except KeyError:
        raise NotImplementedError(f"no model for architecture {cfg.arch!r}") from None
    model = cls(cfg)
    model.loss_chunk = cfg.loss_chunk
    return model


# --------------------------------------------------------------------------- chunked loss


def softcapped(logits: torch.Tensor, softcap: float) -> torch.Tensor:
    """softcap * tanh(logits / softcap) (golf's logit softcap); the logits as they are at 0."""
    if softcap > 0:
        return softcap * torch.tanh(logits / softcap)
    return logits


def _chunk_loss(
    x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, softcap: float
) -> torch.Tensor:
    logits = softcapped(F.linear(x, weight), softcap)
    return F.cross_entropy(logits.float(), targets, ignore_index=-1, reduction="sum")


def chunked_cross_entropy(
    x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int, softcap: float = 0.0
) -> torch.Tensor:
    """Mean cross-entropy of softcapped(x @ weight.T) against `targets` (-1 ignored), `chunk` tokens
    at a time, never holding more than one chunk's logits: each chunk runs under a checkpoint, so
    forward keeps only its input and backward recomputes its logits, uses them and lets them go.
    Equal to the plain path (F.cross_entropy over all logits) up to float rounding."""
    flat = x.reshape(-1, x.size(-1))
    labels = targets.reshape(-1)
    parts = [
        checkpoint(_chunk_loss, xs, weight, ts, softcap, use_reentrant=False)
        for xs, ts in zip(flat.split(chunk), labels.split(chunk), strict=True)
    ]
    return torch.stack(parts).sum() / (labels != -1).sum()
