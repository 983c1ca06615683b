"""What every architecture's module shares: the loss (whole or chunked), sampling, optimizer
groups, activation checkpointing, and causal attention that stays fast under CPU bf16."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


class LanguageModel(nn.Module):
    """What every architecture shares: the loss, sampling, param groups, checkpointing."""

    block_size: int
    activation_checkpointing: bool = False
    loss_chunk: int = 0  # tokens per chunk of the fused output head + cross-entropy; 0: off
    logit_softcap: float = 0.0
    # parameter-name fragments of 2-D tensors the muon optimizer trains as scalars (the spec's)
    control_patterns: tuple[str, ...] = ()
    # set_activation_checkpointing recomputes its blocks (the spec's activation_checkpointing)
    checkpointing_supported: bool = True

    def features(self, idx: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """The final hidden states (B, T, C) that the output head turns into logits."""
        raise NotImplementedError

    def head_weight(self) -> torch.Tensor:  # pragma: no cover - abstract
        """The output head's (vocab, C) weight (the token embedding where tied)."""
        raise NotImplementedError

    def logits_for(self, idx: torch.Tensor, last_only: bool) -> torch.Tensor:  # pragma: no cover
        """Logits (B, T, vocab), or (B, 1, vocab) of the last position with `last_only`."""
        raise NotImplementedError

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
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
            return None, loss
        logits = self.logits_for(idx, last_only=False)
        loss = F.cross_entropy(
            logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1
        )
        return logits, loss

    def export_module(self) -> nn.Module:
        """The module whose state dict an export writes (your own model's: your module's)."""
        return self

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute each block's activations in backward instead of storing them."""
        self.activation_checkpointing = enabled

    def _run_block(
        self, block: Callable[..., torch.Tensor], x: torch.Tensor, *args: torch.Tensor
    ) -> torch.Tensor:
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
