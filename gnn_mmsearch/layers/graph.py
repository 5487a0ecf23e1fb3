"""Graph propagation: a stack of PyG convolutions whose layer outputs are averaged (0 layers = identity).

Convolutions come from the :data:`CONVS` registry (``model.gnn.conv``, options ``model.gnn.conv_kwargs``).
``lightgcn`` (default) is PyG's ``LGConv``: symmetric GCN-normalised neighbour averaging with no weights
(He et al., LightGCN, 2020); ``gcn`` / ``sage`` / ``gat`` are PyG's ``GCNConv`` / ``SAGEConv`` / ``GATConv``. A
convolution with parameters is followed by LayerNorm, ReLU and dropout. Averaging the outputs of every depth (as LightGCN and
jumping-knowledge networks do) keeps each product's own content in its embedding.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn
from torch_geometric.nn import GATConv, GCNConv, LGConv, SAGEConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from .._registry import Registry


class _SymmetricSpMM(torch.autograd.Function):
    """``A @ x`` for a symmetric sparse ``A``: the backward pass multiplies by ``A`` again instead of
    transposing it (the transpose dominates the cost of autograd's sparse product on CPU)."""

    @staticmethod
    def forward(ctx, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, torch.sparse.mm(ctx.adj, grad)


class SymmetricLGConv(LGConv):
    """PyG's ``LGConv`` without normalisation, for a symmetric, already normalised sparse adjacency."""

    def __init__(self):
        super().__init__(normalize=False)

    def message_and_aggregate(self, adj_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return _SymmetricSpMM.apply(adj_t, x)


CONVS: Registry = Registry("convolution")  # name -> factory(dim, **conv_kwargs) -> a MessagePassing layer


@CONVS.register("lightgcn")
def lightgcn(dim: int, normalize: bool = True) -> LGConv:
    return LGConv() if normalize else SymmetricLGConv()


@CONVS.register("gcn")
def gcn(dim: int, normalize: bool = True, **kwargs) -> GCNConv:
    return GCNConv(dim, dim, normalize=normalize, **kwargs)


@CONVS.register("sage")
def sage(dim: int, **kwargs) -> SAGEConv:
    return SAGEConv(dim, dim, **kwargs)


@CONVS.register("gat")
def gat(dim: int, heads: int = 4, **kwargs) -> GATConv:
    return GATConv(dim, dim // heads, heads=heads, **kwargs)


class GraphPropagation(nn.Module):
    """``mean(x, conv(x), conv(conv(x)), ...)`` over ``num_layers`` convolutions.

    ``normalize=False`` skips the GCN normalisation of ``lightgcn`` / ``gcn`` for a graph passed already
    normalised, as the sparse adjacency from :func:`normalized_adjacency` (``lightgcn`` then also relies on its
    symmetry in the backward pass; see :class:`SymmetricLGConv`).
    """

    def __init__(self, dim: int, num_layers: int, conv: str = "lightgcn", dropout: float = 0.1,
                 normalize: bool = True, conv_kwargs: dict | None = None):
        super().__init__()
        kwargs = {**(conv_kwargs or {}), **({} if normalize else {"normalize": False})}
        self.convs = nn.ModuleList(CONVS.create(conv, dim, **kwargs) for _ in range(num_layers))
        learnable = any(p.requires_grad for c in self.convs for p in c.parameters())
        self.post = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.ReLU(), nn.Dropout(dropout)) if learnable else nn.Identity()
            for _ in range(num_layers))

    def forward(self, x: torch.Tensor, edge_index) -> torch.Tensor:
        outs = [x]
        for conv, post in zip(self.convs, self.post):
            outs.append(post(conv(outs[-1], edge_index)))
        return torch.stack(outs).mean(0)


def normalized_adjacency(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """PyG's ``gcn_norm`` (``D^-1/2 A D^-1/2``, no self-loops) of an undirected graph given in both directions,
    as a sparse CSR tensor: the form PyG's convolutions multiply fastest on CPU."""
    edge_index, weight = gcn_norm(edge_index, None, num_nodes, add_self_loops=False)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the product is well tested on CPU
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_coo_tensor(edge_index, weight, (num_nodes, num_nodes)).coalesce().to_sparse_csr()
