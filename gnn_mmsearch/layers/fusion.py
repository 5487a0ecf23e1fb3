"""Modality fusion: turn per-modality tokens (with a presence mask) into one product vector.

All fusions take ``tokens [N, M, H]`` and ``mask [N, M]`` (True = modality present) and return ``[N, H]``.
A missing modality never enters as a zero vector: concat swaps in a learned "missing" token, weighted and
attention renormalise over the present modalities, and a row with no modality at all gets a learned empty token.
"""
from __future__ import annotations

import torch
from torch import nn

from .._registry import Registry

FUSIONS: Registry[type[nn.Module]] = Registry("fusion")  # built as FUSIONS.create(name, num_modalities, hidden_dim, **kwargs)


class _Fusion(nn.Module):
    def __init__(self, num_modalities: int, hidden_dim: int):
        super().__init__()
        self.empty = nn.Parameter(torch.zeros(hidden_dim))
        nn.init.normal_(self.empty, std=0.02)
        self.last_weights: torch.Tensor | None = None  # [N, M] modality weights of the last call, for explanations

    def _fill_empty(self, fused: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        empty_rows = ~mask.any(dim=1, keepdim=True)
        return torch.where(empty_rows, self.empty.expand_as(fused), fused)


@FUSIONS.register("concat")
class ConcatFusion(_Fusion):
    """Concatenate modality tokens (a learned token stands in for a missing one) and mix with a linear layer."""

    def __init__(self, num_modalities: int, hidden_dim: int):
        super().__init__(num_modalities, hidden_dim)
        self.missing = nn.Parameter(torch.randn(num_modalities, hidden_dim) * 0.02)
        self.mix = nn.Linear(num_modalities * hidden_dim, hidden_dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tokens = torch.where(mask.unsqueeze(-1), tokens, self.missing.expand_as(tokens))
        self.last_weights = mask.float() / mask.float().sum(1, keepdim=True).clamp(min=1)
        return self._fill_empty(self.mix(tokens.flatten(1)), mask)


@FUSIONS.register("weighted")
class WeightedFusion(_Fusion):
    """A learned weight per modality, softmax-normalised over the modalities a product has."""

    def __init__(self, num_modalities: int, hidden_dim: int):
        super().__init__(num_modalities, hidden_dim)
        self.logits = nn.Parameter(torch.zeros(num_modalities))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.logits.expand(tokens.size(0), -1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(logits, dim=1).nan_to_num(0.0)
        self.last_weights = weights.detach()
        return self._fill_empty((weights.unsqueeze(-1) * tokens).sum(1), mask)


@FUSIONS.register("attention")
class AttentionFusion(_Fusion):
    """A learned query attends over modality tokens (plus modality-type embeddings); masks are respected."""

    def __init__(self, num_modalities: int, hidden_dim: int, num_heads: int = 4):
        super().__init__(num_modalities, hidden_dim)
        self.query = nn.Parameter(torch.randn(1, 1, hidden_dim) * 0.02)
        self.type_embedding = nn.Parameter(torch.randn(num_modalities, hidden_dim) * 0.02)
        self.attn = nn.MultiheadAttention(hidden_dim, num_heads, batch_first=True)
        self.out = nn.Sequential(nn.LayerNorm(hidden_dim), nn.Linear(hidden_dim, hidden_dim))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n = tokens.size(0)
        # rows with no modality attend to a dummy unmasked slot; _fill_empty replaces their output afterwards
        key_mask = ~mask & mask.any(dim=1, keepdim=True)
        fused, weights = self.attn(self.query.expand(n, -1, -1), tokens + self.type_embedding, tokens,
                                   key_padding_mask=key_mask, need_weights=True)
        self.last_weights = weights.squeeze(1).detach() * mask.any(dim=1, keepdim=True)
        return self._fill_empty(self.out(fused.squeeze(1)), mask)
