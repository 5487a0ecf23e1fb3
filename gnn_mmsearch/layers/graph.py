"""Graph propagation: a stack of PyG convolutions whose layer outputs are averaged (0 layers = identity).

Convolutions come from the :data:`CONVS` registry (``model.gnn.conv``, options ``model.gnn.conv_kwargs``).
``lightgcn`` (default) is PyG's ``LGConv``: symmetric GCN-normalised neighbour averaging with no weights
(He et al., LightGCN, 2020); ``gcn`` / ``sage`` / ``gat`` are PyG's ``GCNConv`` / ``SAGEConv`` / ``GATConv``. A
convolution with parameters is followed by LayerNorm, ReLU and dropout. Averaging the outputs of every depth (as LightGCN and
jumping-knowledge networks do) keeps each product's own content in its embedding. Without gradients, a large graph
given as an edge index is propagated through a sparse adjacency instead (``lightgcn`` and ``sage``: the same sums,
fused into one sparse product), so no ``[links, dim]`` message tensor is materialised.

Also the graph helpers the recommenders share: :func:`normalized_adjacency`, :func:`csr_tensor`, :func:`spmm`
(a sparse product with a precomputed transpose for the backward pass) and :func:`knn_graph` (cosine kNN).
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GATConv, GCNConv, LGConv, SAGEConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import to_torch_csr_tensor

from .._registry import Registry


class _SpMM(torch.autograd.Function):
    """``A @ x`` for a sparse ``A`` whose transpose is given: the backward pass multiplies by it instead of
    transposing ``A`` (the transpose dominates the cost of autograd's sparse product on CPU)."""

    @staticmethod
    def forward(ctx, adj: torch.Tensor, adj_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj_t = adj_t
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, None, torch.sparse.mm(ctx.adj_t, grad)


def spmm(adj: torch.Tensor, x: torch.Tensor, adj_t: torch.Tensor | None = None) -> torch.Tensor:
    """``adj @ x`` for a sparse ``adj`` with its transpose ``adj_t`` precomputed (default ``adj``: symmetric)."""
    return _SpMM.apply(adj, adj if adj_t is None else adj_t, x)


class SymmetricLGConv(LGConv):
    """PyG's ``LGConv`` without normalisation, for a symmetric, already normalised sparse adjacency."""

    def __init__(self):
        super().__init__(normalize=False)

    def message_and_aggregate(self, adj_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return spmm(adj_t, x)


SPARSE_MESSAGES = 1 << 26  # inference: links x dim above which propagation goes through a sparse adjacency

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
        if (not torch.is_grad_enabled() and isinstance(edge_index, torch.Tensor) and edge_index.layout == torch.strided
                and edge_index.size(1) * x.size(1) > SPARSE_MESSAGES
                and all(isinstance(c, (LGConv, SAGEConv)) for c in self.convs)):
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                edge_index = to_torch_csr_tensor(edge_index.flip(0), size=(x.size(0), x.size(0)))  # adj_t
        total, h = x, x
        for conv, post in zip(self.convs, self.post):
            h = post(conv(h, edge_index))
            total = total + h  # a running sum: one [N, dim] buffer, not a stack of every layer's output
        return total / (len(self.convs) + 1)


def normalized_adjacency(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """PyG's ``gcn_norm`` (``D^-1/2 A D^-1/2``, no self-loops) of an undirected graph given in both directions,
    as a sparse CSR tensor: the form PyG's convolutions multiply fastest on CPU."""
    edge_index, weight = gcn_norm(edge_index, None, num_nodes, add_self_loops=False)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the product is well tested on CPU
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_coo_tensor(edge_index, weight, (num_nodes, num_nodes)).coalesce().to_sparse_csr()


def csr_tensor(matrix: sp.spmatrix) -> torch.Tensor:
    """A SciPy sparse matrix as a ``float32`` sparse CSR tensor."""
    m = sp.csr_matrix(matrix, dtype=np.float32)
    m.sort_indices()
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(m.indptr).long(), torch.from_numpy(m.indices).long(),
                                       torch.from_numpy(m.data), m.shape)


@torch.no_grad()
def knn_graph(features: torch.Tensor, k: int, block: int = 1024) -> sp.csr_matrix:
    """Binary ``[n, n]`` graph linking each row of ``features`` to its ``k`` most cosine-similar rows (itself
    among them), scored ``block`` rows at a time so memory stays ``O(block * n)``. All-zero rows (a missing
    feature) have no edges and are nobody's neighbour."""
    n = features.size(0)
    present = features.abs().sum(1) > 0
    k = min(k, int(present.sum()))
    unit = F.normalize(features.float(), dim=1)
    penalty = torch.zeros(n, device=features.device).masked_fill_(~present, float("-inf"))
    cols = torch.cat([(unit[s:s + block] @ unit.t() + penalty).topk(k, dim=1).indices
                      for s in range(0, n, block)]).cpu().numpy().ravel()
    rows = np.repeat(np.arange(n), k)
    keep = present.cpu().numpy()[rows]
    return sp.csr_matrix((np.ones(keep.sum(), np.float32), (rows[keep], cols[keep])), shape=(n, n))
