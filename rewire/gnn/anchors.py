"""Anchors of GRE/GRE+ (Jiang et al., NeurIPS 2024, arXiv 2410.15556, §4): which
parameters an edit changes, the training nodes split into anchor chunks, the anchor
gradients (one row of ``G`` per chunk) and the projector built from them; and the
receptive-field views (:mod:`rewire.gnn.receptive`) every forward of an edit runs on.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Data

from rewire.gnn.config import EditConfig
from rewire.gnn.projection import AnchorProjector, gre_project
from rewire.gnn.receptive import ReceptiveField, message_passing_layers

__all__ = ["anchor_chunks", "anchor_gradients", "base_anchors", "editable_parameters",
           "field_for", "projector", "receptive_field", "view"]


def editable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an edit changes: ``model.editable_parameters()`` if the model
    defines it (EGNN: the MLP only), else every parameter with ``requires_grad``."""
    if hasattr(model, "editable_parameters"):
        return [p for _, p in model.editable_parameters()]
    return [p for p in model.parameters() if p.requires_grad]


def anchor_chunks(data: Data, k: int | None, seed: int = 0,
                  sample: int | None = None) -> list[torch.Tensor]:
    """Split the training nodes at random into ``k`` near-equal chunks (GRE+, §4.2);
    ``k=None``: one chunk per training node. ``sample``: first draw that many training
    nodes at random (all if there are fewer) and split only those.

    Raises:
        ValueError: if there are fewer than ``k`` (sampled) training nodes.

    Example:
        >>> from rewire.gnn.data import toy_graph
        >>> [len(c) for c in anchor_chunks(toy_graph(nodes=60), 5)]
        [3, 3, 2, 2, 2]
    """
    train = data.train_mask.nonzero().flatten()
    perm = torch.randperm(train.numel(), generator=torch.Generator().manual_seed(seed))
    if sample is not None:
        perm = perm[:sample]
    k = perm.numel() if k is None else k
    if k > perm.numel():
        raise ValueError(f"k={k} anchor chunks but only {perm.numel()} training nodes; "
                         f"choose k <= {perm.numel()}")
    return list(torch.tensor_split(train[perm], k))


def field_for(model: nn.Module, data: Data) -> ReceptiveField | None:
    """The :class:`~rewire.gnn.receptive.ReceptiveField` (L + 1 hops) of ``model`` on
    ``data``; ``None`` for a model without message passing (it needs the whole graph)."""
    layers = message_passing_layers(model)
    if layers == 0:
        return None
    return ReceptiveField(data.edge_index, data.num_nodes, layers + 1)


def view(data: Data, nodes: torch.Tensor, field: ReceptiveField | None,
         cache: dict | None = None):
    """``(x, edge_index, index)`` on which ``model(x, edge_index)[index]`` gives the
    outputs of ``nodes``: the receptive field, or the whole graph if ``field`` is None.
    ``cache``: a dict kept for one graph and field (e.g. one :func:`edit` call), in which
    the subgraph of each node set is kept (its ids and edges, not its features), so that
    anchors re-taken before every edit do not rebuild it."""
    if field is None:
        return data.x, data.edge_index, nodes
    key = tuple(nodes.tolist()) if cache is not None else None
    found = cache.get(key) if cache is not None else None
    if found is None:
        found = field.subgraph(nodes)
        if cache is not None:
            cache[key] = found
    subset, edge_index, index = found
    return data.x[subset], edge_index, index


def anchor_gradients(model: nn.Module, data: Data, chunks: Sequence[torch.Tensor],
                     params: Sequence[nn.Parameter], field: ReceptiveField | None = None,
                     y: torch.Tensor | None = None, cache: dict | None = None) -> torch.Tensor:
    """Anchor matrix ``G`` (K, P), float64: row k = ∇θ CE(f_θ(X, A)[chunk_k], y[chunk_k])
    over ``params`` (eval mode); ``y`` (N,) defaults to ``data.y``. With a ``field``
    (:func:`field_for`) each row is computed on its chunk's receptive field only, which
    gives the same value at a fraction of the cost; without, on the whole graph.
    ``cache``: see :func:`view`."""
    y = data.y if y is None else y
    rows = torch.zeros(len(chunks), sum(p.numel() for p in params), dtype=torch.float64)
    for row, nodes in zip(rows, chunks):
        x, edge_index, index = view(data, nodes, field, cache)
        loss = F.cross_entropy(model(x, edge_index)[index], y[nodes])
        at = 0
        for p, grad in zip(params, torch.autograd.grad(loss, params, allow_unused=True)):
            if grad is not None:
                row[at:at + p.numel()] = grad.reshape(-1)
            at += p.numel()
    return rows


def base_anchors(model: nn.Module, data: Data, params, config: EditConfig,
                 field: ReceptiveField | None = None, cache: dict | None = None) -> torch.Tensor:
    """The training-anchor rows of an edit, (K, P) float64: one per training chunk of
    :func:`anchor_chunks` (GRE+, Jiang et al., NeurIPS 2024, arXiv 2410.15556, eq. 5).
    ``cache``: see :func:`view`.

    Raises:
        ValueError: more chunks than ``config.max_anchors``."""
    chunks = anchor_chunks(data, config.anchors, config.seed, config.anchor_sample)
    if len(chunks) > config.max_anchors:
        raise ValueError(f"k=None gives one anchor per training node ({len(chunks)}), more "
                         f"than max_anchors={config.max_anchors}: pass k <= "
                         f"{config.max_anchors} (or anchor_sample) or raise max_anchors")
    return anchor_gradients(model, data, chunks, params, field, cache=cache)


def projector(model: nn.Module, data: Data, params, config: EditConfig,
              field: ReceptiveField | None = None, guards=None,
              base: torch.Tensor | None = None, cache: dict | None = None):
    """The map g ↦ g' for ``config.method`` (None for GD); ``guards`` = (nodes, labels)
    of earlier edited nodes, extra anchor rows (sequential ``protect``); ``base``: the
    rows of :func:`base_anchors` if already taken; ``cache``: see :func:`view`."""
    if config.method == "gd":
        return None
    if base is None:
        base = base_anchors(model, data, params, config, field, cache)
    anchors = base
    if guards is not None and guards[0].numel():
        nodes, labels = guards
        y = data.y.clone()
        y[nodes] = labels
        rows = min(nodes.numel(), max(1, config.max_anchors - anchors.shape[0]))
        extra = anchor_gradients(model, data, list(torch.tensor_split(nodes, rows)), params,
                                 field, y, cache)
        anchors = torch.cat([anchors, extra])
    if anchors.shape[0] == 1:
        return lambda g: gre_project(g, anchors[0])
    return AnchorProjector(anchors, config.lam)


def receptive_field(model: nn.Module, data: Data, nodes: torch.Tensor):
    """The part of the graph that decides the outputs of ``nodes``: ``(x, edge_index, index)``
    with ``model(x, edge_index)[index] == model(data.x, data.edge_index)[nodes]``.

    A model with L message-passing layers (PyG ``MessagePassing`` modules) sees L hops; one
    hop more keeps every degree that a normalisation (GCN's ``D^-½``, SAGE's mean) reads
    exact. A model without such layers gets the whole graph. (Builds the graph's index on
    every call; :func:`edit` builds one per call with :func:`field_for`.)

    Shapes: ``nodes`` (T,); returns x (N', F), edge_index (2, E'), index (T,).
    """
    return view(data, torch.as_tensor(nodes, dtype=torch.long).flatten(),
                 field_for(model, data))

