"""Parallel residual streams for the GPT (model.num_streams > 1): the hyper-connection family.

The residual is `n` streams, shape (n, B, T, C), instead of one. Around each sublayer
(attention, MLP) a `StreamMix` holds three learned, static sets of weights:

- `pre`  (n): softmax(pre_logits / temperature): the sublayer reads this convex mix of the streams;
- `res`  (n x n): exp(res_logits / temperature) made doubly stochastic by `mixing_iters`
  Sinkhorn iterations (alternate row and column normalisation, in log space): the
  streams' mix with each other, which neither grows nor shrinks the residual's total;
- `post` (n): 2 * sigmoid(post_logits): how much of the sublayer's output each stream gets.

    streams <- res @ streams + post * sublayer(pre @ streams)

At initialisation every stream is the embedding, post is 1 and res is symmetric, so the
model computes what the plain residual computes (tests/test_streams.py checks it); `pre`
starts leaning to a different stream per sublayer, which lets the streams part from each
other once training starts. Lower temperatures make the weights sharper (closer to the
plain residual's identity mix); higher ones make them more uniform. The mixing runs in
fp32 with autocast off, like the residual stream itself. All mixing parameters are 1-D
(res_logits is stored flat), so they take no weight decay.

Parameters: 2 * (n*n + 2*n) per block; estimate.count_params counts them.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

INIT_LOGIT = 3.0  # the diagonal of res_logits and the favoured entry of pre_logits at the start


def sinkhorn(log_weights: torch.Tensor, iters: int) -> torch.Tensor:
    """exp(log_weights) normalised to a doubly stochastic matrix by `iters` Sinkhorn iterations."""
    for _ in range(iters):
        log_weights = log_weights - torch.logsumexp(log_weights, dim=1, keepdim=True)
        log_weights = log_weights - torch.logsumexp(log_weights, dim=0, keepdim=True)
    return log_weights.exp()


class StreamMix(nn.Module):
    """One sublayer's reading from, mixing of, and writing to `n` residual streams."""

    def __init__(self, n: int, iters: int, temperature: float, index: int) -> None:
        super().__init__()
        self.n, self.iters, self.temperature = n, iters, temperature
        res = torch.zeros(n, n)
        res.fill_diagonal_(INIT_LOGIT)
        self.res_logits = nn.Parameter(res.flatten())
        pre = torch.zeros(n)
        pre[index % n] = INIT_LOGIT
        self.pre_logits = nn.Parameter(pre)
        self.post_logits = nn.Parameter(torch.zeros(n))

    def weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pre (n,), res (n, n), post (n,)), fp32."""
        t = self.temperature
        res = sinkhorn(self.res_logits.float().view(self.n, self.n) / t, self.iters)
        pre = F.softmax(self.pre_logits.float() / t, dim=0)
        post = 2.0 * torch.sigmoid(self.post_logits.float())
        return pre, res, post

    def forward(self, streams: torch.Tensor, norm: nn.Module, sublayer: nn.Module) -> torch.Tensor:
        n = self.n
        pre, res, post = self.weights()
        with torch.autocast(device_type=streams.device.type, enabled=False):
            flat = streams.reshape(n, -1)
            h = (pre @ flat).view(streams.shape[1:])
        out = sublayer(norm(h))
        with torch.autocast(device_type=streams.device.type, enabled=False):
            mixed = (res @ flat).view(streams.shape)
        return mixed + post.view(n, 1, 1, 1) * out
