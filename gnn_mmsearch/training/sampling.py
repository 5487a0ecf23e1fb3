"""Fan-out neighbour sampling for mini-batch training: GraphSAGE-style, the sampling of PyG's ``NeighborLoader``
with ``subgraph_type="induced"``, in plain torch (PyG's loaders need ``pyg-lib`` or ``torch-sparse`` compiled
for the installed torch). The adjacency is a CSR built once per sampler, so a step costs O(its subgraph's links),
never O(all links)."""
from __future__ import annotations

from typing import Sequence

import torch


class NeighborSampler:
    """Samples, around seed nodes, up to ``num_neighbors[l]`` neighbours of each node reached at hop ``l``
    (``-1``: all of them) in an undirected ``edge_index``, and returns the subgraph the sampled nodes induce.

    Only edges of ``edge_index`` are ever followed or returned: links left out of it (held-out and target links)
    never reach the encoder."""

    def __init__(self, edge_index: torch.Tensor, num_nodes: int, num_neighbors: Sequence[int]):
        order = torch.argsort(edge_index[0], stable=True)
        self.edge_index, self.num_nodes, self.num_neighbors = edge_index, num_nodes, list(num_neighbors)
        self.col, self.edge_id = edge_index[1, order], order
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
        return nodes, self._induced(nodes)

    def _induced(self, nodes: torch.Tensor) -> torch.Tensor:
        """The links among the sorted ``nodes``, relabelled to their positions, in ``edge_index`` order (what
        ``torch_geometric.utils.subgraph`` returns), read off the adjacency lists of ``nodes`` alone."""
        segment, slots = self._adjacency(nodes)
        col = self.col[slots]
        pos = torch.searchsorted(nodes, col).clamp(max=nodes.numel() - 1)
        keep = nodes[pos] == col
        order = torch.argsort(self.edge_id[slots[keep]])
        return torch.stack([segment[keep][order], pos[keep][order]])

    def _adjacency(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every link leaving ``nodes``, flattened: ``(position in nodes of its source, its CSR slot)``."""
        start, degree = self.rowptr[nodes], self.rowptr[nodes + 1] - self.rowptr[nodes]
        segment = torch.repeat_interleave(torch.arange(nodes.numel(), device=nodes.device), degree)
        first = degree.cumsum(0) - degree  # each node's first slot among the flattened neighbour lists
        return segment, start[segment] + torch.arange(segment.numel(), device=nodes.device) - first[segment]

    def _neighbors(self, nodes: torch.Tensor, fan_out: int, generator: torch.Generator | None) -> torch.Tensor:
        """Up to ``fan_out`` neighbours of each of ``nodes``, drawn without replacement (flattened)."""
        segment, slots = self._adjacency(nodes)
        neighbors = self.col[slots]
        if fan_out < 0:
            return neighbors
        # a random order inside each node's list (sort by node, then by a random key); keep the first fan_out
        key = torch.rand(segment.numel(), generator=generator, device=nodes.device, dtype=torch.float64)
        order = torch.argsort(segment.double() + key)
        rank = slots - self.rowptr[nodes][segment]  # segments stay in place: a link's rank in the new order
        return neighbors[order][rank < fan_out]
