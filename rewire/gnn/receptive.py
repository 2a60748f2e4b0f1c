"""Receptive fields of GNN nodes: the small subgraph that decides a node's output.

A model with L message-passing layers computes the output of node ``i`` from the nodes
within L hops of ``i`` (along the edges' direction, ``source → target``, PyG's default
flow). The normalisations that those layers read (GCN's ``D^-½``, SAGE's mean) use the
in-degrees of the nodes within L hops, which are exact once the subgraph spans L + 1 hops.
So ``model(x[S], A[S, S])[index] == model(x, A)[nodes]`` for ``S`` the (L + 1)-hop
neighbourhood of ``nodes``, up to the order of floating-point sums.

:class:`ReceptiveField` keeps the graph as a CSR by target (built once, O(E log E)), so a
subgraph costs time proportional to the edges it holds, not to the whole graph:
:func:`torch_geometric.utils.k_hop_subgraph` scans all E edges per hop, which on a graph
of 10⁷ edges costs about 0.1 s per call.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import MessagePassing

__all__ = ["ReceptiveField", "message_passing_layers"]


def message_passing_layers(model: nn.Module) -> int:
    """Number of PyG ``MessagePassing`` modules in ``model`` (its hops, for the 2-layer
    models of :mod:`rewire.gnn.models`; EGNN counts the layers of its GNN)."""
    return sum(isinstance(m, MessagePassing) for m in model.modules())


class ReceptiveField:
    """Subgraphs of the ``hops``-hop in-neighbourhoods of node sets, from a CSR by target.

    Args:
        edge_index: (2, E) int64, edges ``source → target``.
        num_nodes: N.
        hops: hops to span (L + 1 for an L-layer model, see the module docstring).

    Raises:
        ValueError: ``edge_index`` not (2, E) integer, indices outside ``[0, N)``, or
            ``hops < 0``.

    Example:
        >>> ei = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])  # path 0-1-2-3
        >>> subset, sub_ei, index = ReceptiveField(ei, 4, hops=1).subgraph(torch.tensor([0]))
        >>> subset.tolist(), sub_ei.tolist(), index.tolist()
        ([0, 1], [[0, 1], [1, 0]], [0])
    """

    def __init__(self, edge_index: torch.Tensor, num_nodes: int, hops: int):
        if edge_index.dim() != 2 or edge_index.shape[0] != 2 or edge_index.is_floating_point():
            raise ValueError(f"edge_index must be an integer tensor of shape (2, E), got "
                             f"{tuple(edge_index.shape)} {edge_index.dtype}")
        if hops < 0:
            raise ValueError(f"hops must be >= 0, got {hops}")
        if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
            raise ValueError(f"edge_index holds node indices outside [0, {num_nodes - 1}]")
        self.num_nodes, self.hops = int(num_nodes), int(hops)
        self.num_edges = int(edge_index.shape[1])
        target = edge_index[1]
        order = torch.argsort(target, stable=True)
        self._source = edge_index[0][order].contiguous()  # sources, grouped by target
        self._edge_id = order  # position of each CSR entry in edge_index
        counts = torch.bincount(target, minlength=self.num_nodes)
        self._ptr = torch.zeros(self.num_nodes + 1, dtype=torch.long)
        torch.cumsum(counts, 0, out=self._ptr[1:])
        # Scratch maps of size N, reset after each use (O(subgraph), not O(N), per call;
        # so one ReceptiveField must not be used from two threads at once).
        self._seen = torch.zeros(self.num_nodes, dtype=torch.bool)
        self._local = torch.full((self.num_nodes,), -1, dtype=torch.long)

    def _incoming(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(positions in the CSR, their targets) of every edge into ``nodes``."""
        start, end = self._ptr[nodes], self._ptr[nodes + 1]
        counts = end - start
        total = int(counts.sum())
        if total == 0:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty
        offsets = torch.cumsum(counts, 0) - counts
        pos = torch.arange(total) - torch.repeat_interleave(offsets - start, counts)
        return pos, torch.repeat_interleave(nodes, counts)

    def subset(self, nodes: torch.Tensor) -> torch.Tensor:
        """Sorted node indices within ``hops`` hops of ``nodes`` (the nodes included)."""
        mask = self._seen
        frontier = nodes.unique()
        found_all = [frontier]
        mask[frontier] = True
        try:
            for _ in range(self.hops):
                pos, _ = self._incoming(frontier)
                found = self._source[pos]
                frontier = found[~mask[found]].unique()
                if frontier.numel() == 0:
                    break
                mask[frontier] = True
                found_all.append(frontier)
        finally:
            subset = torch.cat(found_all).sort().values
            mask[subset] = False
        return subset

    def subgraph(self, nodes: torch.Tensor):
        """``(subset, edge_index, index)``: the ``hops``-hop neighbourhood of ``nodes``
        (sorted global ids, (N',)), the edges among it relabelled to ``[0, N')`` ((2, E'),
        in their order in ``edge_index``, so that sums over neighbours run in the same
        order as on the whole graph) and the positions of ``nodes`` in ``subset`` ((T,))."""
        nodes = torch.as_tensor(nodes, dtype=torch.long).flatten()
        subset = self.subset(nodes)
        pos, target = self._incoming(subset)
        local = self._local
        local[subset] = torch.arange(subset.numel())
        try:
            source = local[self._source[pos]]
            keep = source >= 0
            pos, source, target = pos[keep], source[keep], local[target[keep]]
            order = torch.argsort(self._edge_id[pos])
            edge_index = torch.stack([source[order], target[order]])
            index = local[nodes]
        finally:
            local[subset] = -1
        return subset, edge_index, index
