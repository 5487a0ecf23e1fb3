"""Leak-free splits: held-out co-purchase links and held-out products for query evaluation."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch_geometric.utils import coalesce, to_undirected

from .catalog import Catalog


def _unique_pairs(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Each undirected pair once, as ``(min, max)``."""
    lo, hi = edge_index.min(0).values, edge_index.max(0).values
    return coalesce(torch.stack([lo, hi]), num_nodes=num_nodes)


def remove_pairs(edges: torch.Tensor, remove: torch.Tensor, num_nodes: int) -> torch.Tensor:
    key = lambda e: e.min(0).values * num_nodes + e.max(0).values  # noqa: E731
    return edges[:, ~torch.isin(key(edges), key(remove))] if remove.numel() else edges


@dataclass
class EdgeSplit:
    """Target-type links split into train/val/test pairs plus the graph each stage may propagate over."""

    num_nodes: int
    train: torch.Tensor  # [2, E] unique pairs
    val: torch.Tensor
    test: torch.Tensor
    graph: torch.Tensor  # all message-passing links (graph types), unique pairs

    def message_passing(self, stage: str) -> torch.Tensor:
        """Undirected edge index for ``stage``: held-out links of that stage (and later ones) are removed,
        whatever their type, so a test pair never reaches the encoder through another edge type."""
        held_out = {"train": [self.val, self.test], "val": [self.val, self.test], "test": [self.test]}[stage]
        edges = remove_pairs(self.graph, torch.cat(held_out, dim=1), self.num_nodes)
        return to_undirected(edges, num_nodes=self.num_nodes)


def split_edges(catalog: Catalog, target_type: str = "also_buy", graph_types=("also_buy", "bought_together"),
                val_ratio: float = 0.1, test_ratio: float = 0.1, seed: int = 0) -> EdgeSplit:
    n = len(catalog)
    target = _unique_pairs(catalog.edge_index([target_type]), n)
    perm = target[:, torch.randperm(target.size(1), generator=torch.Generator().manual_seed(seed))]
    n_val, n_test = int(round(val_ratio * perm.size(1))), int(round(test_ratio * perm.size(1)))
    graph = catalog.edge_index(graph_types)
    graph = _unique_pairs(graph, n) if graph.numel() else graph
    return EdgeSplit(n, train=perm[:, n_val + n_test:], val=perm[:, :n_val], test=perm[:, n_val:n_val + n_test],
                     graph=graph)


def split_products(num_products: int, ratio: float, seed: int) -> torch.Tensor:
    """Boolean mask of products held out from query-alignment training (their queries are evaluated)."""
    perm = torch.randperm(num_products, generator=torch.Generator().manual_seed(seed + 1))
    mask = torch.zeros(num_products, dtype=torch.bool)
    mask[perm[: int(round(ratio * num_products))]] = True
    return mask
