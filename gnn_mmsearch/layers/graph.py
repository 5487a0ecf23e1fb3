"""Graph propagation: a stack of PyG convolutions whose layer outputs are averaged (0 layers = identity).

``lightgcn`` (default) is PyG's ``LGConv``: symmetric GCN-normalised neighbour averaging with no weights
(He et al., LightGCN, 2020). ``gcn`` / ``sage`` / ``gat`` are the learnable ``GCNConv`` / ``SAGEConv`` /
``GATConv`` followed by LayerNorm, ReLU and dropout. Averaging the outputs of every depth (as LightGCN and
jumping-knowledge networks do) keeps each product's own content in its embedding.
"""
from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import GATConv, GCNConv, LGConv, SAGEConv

_CONVS = {
    "lightgcn": lambda dim: LGConv(),
    "gcn": lambda dim: GCNConv(dim, dim),
    "sage": lambda dim: SAGEConv(dim, dim),
    "gat": lambda dim: GATConv(dim, dim // 4, heads=4),
}


def list_convs() -> list[str]:
    return sorted(_CONVS)


class GraphPropagation(nn.Module):
    """``mean(x, conv(x), conv(conv(x)), ...)`` over ``num_layers`` convolutions."""

    def __init__(self, dim: int, num_layers: int, conv: str = "lightgcn", dropout: float = 0.1):
        super().__init__()
        if conv not in _CONVS:
            raise ValueError(f"unknown conv {conv!r}; choose one of {list_convs()}")
        self.convs = nn.ModuleList(_CONVS[conv](dim) for _ in range(num_layers))
        learnable = conv != "lightgcn"
        self.post = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.ReLU(), nn.Dropout(dropout)) if learnable else nn.Identity()
            for _ in range(num_layers))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        outs = [x]
        for conv, post in zip(self.convs, self.post):
            outs.append(post(conv(outs[-1], edge_index)))
        return torch.stack(outs).mean(0)
