"""Fan-out neighbour sampling for mini-batch training: GraphSAGE-style, the sampling of PyG's ``NeighborLoader``
with ``subgraph_type="induced"``, in plain torch (PyG's loaders need ``pyg-lib`` or ``torch-sparse`` compiled
for the installed torch)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch_geometric.utils import subgraph


class NeighborSampler:
    """Samples, around seed nodes, up to ``num_neighbors[l]`` neighbours of each node reached at hop ``l``
    (``-1``: all of them) in an undirected ``edge_index``, and returns the subgraph the sampled nodes induce.

    Only edges of ``edge_index`` are ever followed or returned: links left out of it (held-out and target links)
    never reach the encoder."""

    def __init__(self, edge_index: torch.Tensor, num_nodes: int, num_neighbors: Sequence[int]):
        order = torch.argsort(edge_index[0], stable=True)
        self.edge_index, self.num_nodes, self.num_neighbors = edge_index, num_nodes, list(num_neighbors)
        self.col = edge_index[1, order]
        degree = torch.bincount(edge_index[0], minlength=num_nodes)
        self.rowptr = torch.cat([degree.new_zeros(1), degree.cumsum(0)])

    def sample(self, seeds: torch.Tensor, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(nodes, edge_index)``: the sampled node ids, sorted, and the induced edges relabelled to positions in
        ``nodes`` (``torch.searchsorted(nodes, ids)`` maps seed ids to their rows)."""
        nodes = frontier = seeds.unique()
        for fan_out in self.num_neighbors:
            reached = self._neighbors(frontier, fan_out, generator).unique()
            frontier = reached[~torch.isin(reached, nodes)]
            nodes = torch.cat([nodes, frontier])
        nodes = nodes.sort().values
        edge_index, _ = subgraph(nodes, self.edge_index, relabel_nodes=True, num_nodes=self.num_nodes)
        return nodes, edge_index

    def _neighbors(self, nodes: torch.Tensor, fan_out: int, generator: torch.Generator | None) -> torch.Tensor:
        """Up to ``fan_out`` neighbours of each of ``nodes``, drawn without replacement (flattened)."""
        start, degree = self.rowptr[nodes], self.rowptr[nodes + 1] - self.rowptr[nodes]
        segment = torch.repeat_interleave(torch.arange(nodes.numel(), device=nodes.device), degree)
        first = degree.cumsum(0) - degree  # each node's first slot among the flattened neighbour lists
        slot = torch.arange(segment.numel(), device=nodes.device) - first[segment]
        neighbors = self.col[start[segment] + slot]
        if fan_out < 0:
            return neighbors
        # a random order inside each node's list (sort by node, then by a random key); keep the first fan_out
        key = torch.rand(segment.numel(), generator=generator, device=nodes.device, dtype=torch.float64)
        order = torch.argsort(segment.double() + key)
        return neighbors[order][slot < fan_out]  # segments stay in place, so slot is the rank in the new order
