"""Locality restore for sequential edits: after an edit, pull the predictions on the rest of
the graph back to the original model's, without undoing any edit.

The *locality* of an edit (Sinitsin et al., *Editable Neural Networks*, ICLR 2020, eq. 2's
``L_loc``; Mitchell et al., *Fast Model Editing at Scale* (MEND), ICLR 2022, §3 ``L_loc``)
is the change of the model's outputs on inputs the edit is not about, measured as
``KL(p_θ₀(·|x) ‖ p_θ(·|x))`` against the unedited model. Here the inputs are the graph's
nodes other than the edited ones, and θ₀ is the model *before the first edit* of a sequence:
the reference is carried across all edits, so drift that earlier edits left behind is
pulled back too. It needs no label: only every node's features and the original model's
own predictions (no test label is read).

One restore (:func:`restore`) after edit ``i`` of a sequence, with ``E`` the edited nodes
(every successful target so far, this edit's included) and ``L`` the locality nodes (all
other nodes, or ``sample`` of them drawn afresh per edit)::

    minimise   L_loc(θ) = mean_{v ∈ L} KL(p_θ₀,v ‖ p_θ,v)
    such that  every v ∈ E stays predicted as y_v

by up to ``steps`` projected gradient steps ``θ ← θ − η u``: ``u`` is ``∇ L_loc`` projected
onto the cone ``G_E u ≥ 0`` of the edited nodes' loss gradients (one row
``∇θ CE(f_θ[v], y_v)`` per edited node, the GRE+ QP of Jiang et al., NeurIPS 2024, arXiv
2410.15556, eqs. 5-6; :class:`rewire.gnn.projection.AnchorProjector`), so no edited node's
loss rises to first order; ``η`` by backtracking (Armijo's rule, Nocedal & Wright,
*Numerical Optimization*, 2nd ed., eq. 3.4, c = 1e-4): a try is kept only if ``L_loc``
falls enough *and* every edited node is still right, else η is quartered; after ``tries``
refused tries the restore ends at the last kept point. The returned model therefore keeps
every edit its input kept. (Adam was tried first: its first step moves every coordinate by
about its learning rate, and no such step was ever kept.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Data

from rewire.gnn.anchors import anchor_gradients, view
from rewire.gnn.projection import AnchorProjector, flatten, unflatten
from rewire.gnn.receptive import ReceptiveField

__all__ = ["locality_nodes", "restore"]


def locality_nodes(num_nodes: int, edited: torch.Tensor, sample: int | None,
                   seed: int) -> torch.Tensor:
    """The nodes whose predictions a restore pulls back: every node not in ``edited``
    (sorted), or ``sample`` of them drawn at random with ``seed``. Shape (M,), int64."""
    keep = torch.ones(num_nodes, dtype=torch.bool)
    keep[edited] = False
    nodes = keep.nonzero().flatten()
    if sample is not None and sample < nodes.numel():
        order = torch.randperm(nodes.numel(), generator=torch.Generator().manual_seed(seed))
        nodes = nodes[order[:sample]].sort().values
    return nodes


def _kl(model, inputs, log_p0) -> torch.Tensor:
    """mean KL(p0 ‖ p_θ) over the locality view ``inputs`` = (x, edge_index, index)."""
    x, edge_index, index = inputs
    log_p = F.log_softmax(model(x, edge_index)[index], dim=1)
    return F.kl_div(log_p, log_p0, reduction="batchmean", log_target=True)


def _assign(params, vector: torch.Tensor) -> None:
    """Set ``params`` in place from a flat float64 vector."""
    with torch.no_grad():
        for p, new in zip(params, unflatten(vector, params)):
            p.copy_(new)


def restore(model: nn.Module, params, data: Data, reference: torch.Tensor,
            edited: torch.Tensor, labels: torch.Tensor, steps: int, lr: float,
            sample: int | None = None, seed: int = 0,
            field: ReceptiveField | None = None, cache: dict | None = None,
            tries: int = 6, extra: int = 0, bound: float = float("inf"),
            pending: tuple[torch.Tensor, torch.Tensor] | None = None
            ) -> tuple[int, float, float]:
    """Pull ``model``'s predictions off the edited nodes back toward ``reference`` in place,
    keeping every edited node right (module docstring).

    Args:
        model: the model after an edit (eval mode); changed in place.
        params: its editable parameters (:func:`rewire.gnn.anchors.editable_parameters`).
        data: the graph.
        reference: log-probabilities of the original model on every node, (N, C) float.
        edited: the edited nodes (E,) int64; ``labels`` their classes (E,).
        steps: at most this many steps (0: nothing is done).
        lr: first step size tried (η; doubled after a kept step, quartered on a refused
            try).
        sample: locality nodes per restore (None: every node not edited).
        seed: seed of that sample (a sequence passes a new one per edit).
        tries: step sizes tried per step (each a quarter of the last) before it ends.
        extra: at most this many steps more after ``steps`` while ``L_loc`` is above
            ``bound`` (an edit that moved the graph far gets a longer restore).
        bound: the ``L_loc`` below which the ``extra`` steps stop.
        pending: ``(nodes, labels)`` of an edit still under way (a restore inside it):
            their loss rows join the cone and a try is kept only if their loss is at
            most 1 % above its value when the restore began (to first order it does not
            rise; a strict bound refuses every step once their row is active), but they
            need not be right yet; they are no locality nodes.
        field, cache: receptive-field index and view cache (:func:`rewire.gnn.anchors.view`).

    Returns:
        ``(steps kept, L_loc before, L_loc after)``.
    """
    held = edited if pending is None else torch.cat([edited, pending[0]])
    if steps == 0 or held.numel() == 0:
        return 0, 0.0, 0.0
    local = locality_nodes(data.num_nodes, held, sample, seed)
    if local.numel() == 0:
        return 0, 0.0, 0.0
    inputs = view(data, local, field, cache if sample is None else None)
    target = reference[local]
    held_view = view(data, held, field)
    held_y = labels if pending is None else torch.cat([labels, pending[1]])
    y = data.y.clone()
    y[held] = held_y
    rows = anchor_gradients(model, data, [n.view(1) for n in held], params, field, y, cache)
    project = AnchorProjector(rows)
    e = edited.numel()

    def acceptable(pending_loss):
        """Every edited node right and the pending targets' loss at most 1 % above
        ``pending_loss``; returns (ok, the pending loss now)."""
        with torch.no_grad():
            logits = model(*held_view[:2])[held_view[2]]
        ok = bool((logits[:e].argmax(dim=1) == labels).all())
        now = float(F.cross_entropy(logits[e:], pending[1])) if pending is not None else 0.0
        return ok and now <= pending_loss * (1 + 1e-2), now

    pending_loss = acceptable(float("inf"))[1]
    loss = _kl(model, inputs, target)
    first, kept, eta = float(loss), 0, lr
    for step in range(steps + extra):
        if step >= steps and float(loss) <= bound:
            break
        g = flatten(torch.autograd.grad(loss, params, allow_unused=True), params)
        u = project(g)  # G_E u >= 0: no edited node's loss rises to first order
        slope = float(g @ u)
        if slope <= 0:
            break
        before = flatten([p.detach() for p in params], params)
        for _ in range(tries):
            _assign(params, before - eta * u)
            right, _ = acceptable(pending_loss)
            new_loss = _kl(model, inputs, target)
            if right and float(new_loss) <= float(loss) - 1e-4 * eta * slope:  # Armijo
                break
            eta /= 4
        else:
            _assign(params, before)
            break
        loss, kept, eta = new_loss, kept + 1, eta * 2
    return kept, first, float(loss)
