"""Edit a trained GNN so that target nodes get their correct labels: plain gradient
descent (GD), GRE and GRE+ (Jiang et al., NeurIPS 2024), each also on EGNN.

One *edit* fixes one set of target nodes ``S`` with labels ``y_S``: at most ``max_steps``
Adam steps on the target loss ``CE(f_θ(X, A)[S], y_S)``, stopping as soon as every target
is predicted right (forward passes in eval mode, so without dropout). GRE/GRE+ rewire each
step with anchor gradients of the training loss (see :mod:`rewire.gnn.projection`):

* ``method="gd"``: the Adam step on the target gradient, unchanged.
* ``method="gre"``: one anchor, the gradient of the loss on all training nodes; closed
  form of eq. 4.
* ``method="gre+"``: the training nodes split at random (``seed``) into ``k`` chunks, one
  anchor each; the QP of eq. 5 with ridge ``lam``, solved by NNLS on its dual (eq. 6).

Anchors are taken at the start of each edit and kept for its steps ("store the anchor
gradient", paper §4).

What is projected (``project``):

* ``"gradient"`` (the paper): the target gradient is projected, then handed to Adam.
  Adam's per-coordinate scaling turns it into a step that no longer satisfies ``G u ≥ 0``.
* ``"update"`` (default): Adam's actual update ``u = θ_before − θ_after`` for the raw target
  gradient is projected with the same QP (``u`` in place of ``g``), and
  ``θ ← θ_before − u'``. The step the parameters take then keeps every anchor loss from
  rising to first order. It gave the lower drawdown in ``benchmarks/editing.py`` (see
  ``docs/gnn.md``).

Modes: ``independent`` (each target edited alone, from the original model), ``sequential``
(targets one after another on the same model; anchors re-taken before each edit) and
``batch`` (targets in groups of ``batch_size`` edited jointly, each group from the original
model). The input model is never changed.

Sequential edits that stay fixed (``protect``, GRE/GRE+): the targets of earlier
successful edits (the *edited nodes*) join the constraint set of every later edit, one
anchor row ``∇θ CE(f_θ[v], y_v)`` each (the same cone ``G u ≥ 0`` as the training anchors;
beyond ``max_anchors`` rows they are grouped into chunks), and an edit does not stop while
one of them is wrong: an edited node that a step flips joins the target loss until it is
right again (within the same ``max_steps``).

Sequential locality restore (``locality_steps > 0``): after each edit, up to that many
projected gradient steps pull every other node's prediction back toward the original
model's (KL to its outputs, no label read) while every edited node stays right
(:mod:`rewire.gnn.locality`); the time is counted in the edit's.

Every forward pass runs on a receptive field (``subgraph=True``, default): the
(L + 1)-hop subgraph of the nodes whose outputs it needs (:mod:`rewire.gnn.receptive`),
which gives the full-graph values at a cost independent of the graph's size;
``subgraph=False`` runs the whole graph (the reference). On large graphs ``k`` chunks of
``anchor_sample`` training nodes (drawn with ``seed``) keep the anchors and the QP bounded.
"""

from __future__ import annotations

import copy
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Data

from rewire.gnn.anchors import (anchor_chunks, anchor_gradients, editable_parameters,
                                field_for, projector as _projector, receptive_field, view)
from rewire.gnn.config import METHODS, MODES, PROJECTIONS, EditConfig, EditOutcome, EditRecord
from rewire.gnn.locality import restore
from rewire.gnn.projection import flatten, unflatten
from rewire.gnn.receptive import ReceptiveField, message_passing_layers

__all__ = ["METHODS", "MODES", "PROJECTIONS", "EditConfig", "EditOutcome", "EditRecord",
           "anchor_chunks", "anchor_gradients", "edit", "editable_parameters", "misclassified",
           "receptive_field", "field_for"]


def _margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Logit margins ``z_y − max_{c≠y} z_c`` of (T, C) ``logits`` for ``labels`` (T,);
    > 0 where the label is predicted."""
    own = logits.gather(1, labels.view(-1, 1)).flatten()
    others = logits.scatter(1, labels.view(-1, 1), float("-inf"))
    return own - others.max(dim=1).values


def _edit_once(model, params, data, nodes, labels, config, projector, field=None,
               guards=None, settle=None) -> EditOutcome:
    """Up to ``max_steps`` rewired Adam steps on one target set; stops when all are right
    (and, with ``guards`` = (nodes, labels) of earlier edits, all of those too: a wrong
    one joins the loss)."""
    opt = torch.optim.Adam(params, lr=config.lr)
    t = nodes.numel()
    if guards is not None and guards[0].numel():
        every, every_y = torch.cat([nodes, guards[0]]), torch.cat([labels, guards[1]])
    else:
        every, every_y = nodes, labels
    x, edge_index, index = view(data, every, field)
    losses, steps = [], 0
    while True:
        logits = model(x, edge_index)[index]
        right = logits.argmax(dim=1) == every_y
        losses.append(float(F.cross_entropy(logits[:t].detach(), labels)))
        short = _margins(logits[:t].detach(), labels) < config.margin  # right, but barely
        if (bool(right.all()) and not bool(short.any())) or steps == config.max_steps:
            break
        if config.lr_backtrack and len(losses) > 1 and losses[-1] > losses[-2]:
            for group in opt.param_groups:
                group["lr"] *= 0.5
        active = torch.cat([torch.ones(t, dtype=torch.bool), ~right[t:]])
        loss = F.cross_entropy(logits[active], every_y[active])
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        g = flatten(grads, params)
        if projector is not None and config.project == "gradient":
            g = projector(g)
        for p, gp in zip(params, unflatten(g, params)):
            p.grad = gp
        if projector is not None and config.project == "update":
            with torch.no_grad():
                before = flatten(params, params)
                opt.step()
                update = before - flatten(params, params)
                for p, new in zip(params, unflatten(before - projector(update), params)):
                    p.copy_(new)
        else:
            opt.step()
        steps += 1
        if settle is not None and steps % config.locality_every == 0:
            settle(nodes, labels)  # a restore inside a long edit
    correct = int(right[:t].sum())
    return EditOutcome(nodes.tolist(), correct == t, steps, losses, 0.0, correct=correct,
                       guarded=every.numel() - t, kept=int(right[t:].sum()))


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat`` that gives an empty int64 tensor for no parts."""
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def misclassified(model: nn.Module, data: Data, n: int = 50, seed: int = 42,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` nodes of ``mask`` (default ``data.val_mask``) that ``model`` gets wrong, drawn
    at random with ``seed``, in drawn order (the protocol's targets: 50 misclassified
    validation nodes, seed 42). Shape (min(n, #wrong),), int64.

    Raises:
        ValueError: if the model gets no node of ``mask`` wrong.
    """
    mask = data.val_mask if mask is None else mask
    with torch.no_grad():
        pred = model.eval()(data.x, data.edge_index).argmax(dim=1)
    wrong = (mask & (pred != data.y)).nonzero().flatten()
    if wrong.numel() == 0:
        raise ValueError("the model predicts every node of the mask right: nothing to edit")
    order = torch.randperm(wrong.numel(), generator=torch.Generator().manual_seed(seed))
    return wrong[order[:n]]


def _check_targets(data: Data, targets, labels, num_classes: int):
    targets = torch.as_tensor(targets, dtype=torch.long).flatten()
    if targets.numel() == 0:
        raise ValueError("targets: give at least one node index")
    if int(targets.min()) < 0 or int(targets.max()) >= data.num_nodes:
        raise ValueError(f"targets: node indices must lie in [0, {data.num_nodes - 1}]")
    if targets.unique().numel() != targets.numel():
        raise ValueError("targets: node indices must be distinct")
    labels = data.y[targets] if labels is None else torch.as_tensor(labels, dtype=torch.long).flatten()
    if labels.shape != targets.shape:
        raise ValueError(f"labels: {labels.numel()} labels for {targets.numel()} targets")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"labels: classes must lie in [0, {num_classes - 1}]")
    return targets, labels


def edit(model: nn.Module, data: Data, targets, labels=None,
         config: EditConfig = EditConfig(),
         on_edit: Callable[[nn.Module, EditOutcome], None] | None = None,
         field: ReceptiveField | None = None) -> tuple[nn.Module, EditRecord]:
    """Edit a copy of ``model`` so that ``targets`` are predicted as ``labels``.

    Args:
        model: a trained PyG node classifier ``model(x, edge_index) -> (N, C)`` logits
            (e.g. :class:`~rewire.gnn.models.GCN`, ``SAGE`` or ``EGNN``); not modified.
        data: the graph (``x``, ``edge_index``, ``y``, ``train_mask``: the anchors' nodes).
        targets: node indices, shape (T,), distinct, in ``[0, N)``.
        labels: their correct classes (T,); default ``data.y[targets]``.
        config: method, mode and hyper-parameters (:class:`EditConfig`).
        on_edit: called after each edit with the edited model and the outcome (e.g. to
            measure test accuracy); in independent and batch mode the model is reset
            to the original afterwards.
        field: a prebuilt :func:`field_for` ``(model, data)`` index, to share one between
            calls on a large graph (its build is O(E log E)); default: built per call
            (``record.setup_seconds``). Ignored with ``config.subgraph=False``.

    Returns:
        ``(edited, record)``: for ``sequential`` the model after all edits; for
        ``independent`` / ``batch`` the model after the last edit (each edit started from
        the original). ``record`` holds steps, success and losses of every edit.

    Raises:
        ValueError: bad targets or labels (out of range, repeated, wrong count), more
            anchor chunks than training nodes, ``k=None`` with more training nodes than
            ``max_anchors``, or a ``field`` built for another graph or depth.

    Example:
        >>> from rewire.gnn.data import toy_graph
        >>> from rewire.gnn.models import GCN, train_model, predict
        >>> g = toy_graph(nodes=60, seed=1)
        >>> _ = torch.manual_seed(0)
        >>> m = train_model(GCN(16, 3), g, epochs=30)
        >>> wrong = (predict(m, g) != g.y).nonzero().flatten()[:2]
        >>> edited, rec = edit(m, g, wrong, config=EditConfig(k=4, max_steps=50))
        >>> rec.success_rate
        1.0
    """
    was_training = model.training
    work = copy.deepcopy(model).eval()
    targets = torch.as_tensor(targets, dtype=torch.long).flatten()
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= data.num_nodes):
        raise ValueError(f"targets: node indices must lie in [0, {data.num_nodes - 1}]")
    setup = time.perf_counter()
    if not config.subgraph:
        field = None
    elif field is None:
        field = field_for(work, data)
    else:
        hops = message_passing_layers(work) + 1
        if (field.num_nodes, field.num_edges, field.hops) != (
                data.num_nodes, data.edge_index.shape[1], hops):
            raise ValueError(f"field: built for {field.num_nodes} nodes, {field.num_edges} "
                             f"edges and {field.hops} hops; this graph has {data.num_nodes} "
                             f"nodes and {data.edge_index.shape[1]} edges and the model "
                             f"needs {hops} hops: build it with field_for(model, data)")
    setup = time.perf_counter() - setup
    with torch.no_grad():
        x, edge_index, index = view(data, targets[:1], field)
        num_classes = int(work(x, edge_index).shape[1]) if targets.numel() else 0
    targets, labels = _check_targets(data, targets, labels, num_classes)
    if (config.anchors or 0) > int(data.train_mask.sum()):
        raise ValueError(f"k={config.anchors} anchor chunks but only "
                         f"{int(data.train_mask.sum())} training nodes")
    params = editable_parameters(work)
    record = EditRecord(config, setup_seconds=setup)
    size = config.batch_size if config.mode == "batch" else 1
    groups = list(torch.arange(targets.numel()).split(size))
    fresh = config.mode != "sequential"
    guarding = config.mode == "sequential" and config.protect and config.method != "gd"
    original = copy.deepcopy(work.state_dict()) if fresh else None
    projector = None
    views: dict = {}  # receptive fields of anchor chunks, built once per call
    done_nodes, done_labels = [], []
    reference, level = None, 0.0  # level: L_loc where the last restore ended
    previous = getattr(work, "project_first", None)  # SAGE: mean over projected features
    if config.mode == "sequential" and config.locality_steps and previous is not None:
        work.set_project_first(True)  # (same outputs, a fraction of the time: SAGE.forward)
    if config.mode == "sequential" and config.locality_steps:
        with torch.no_grad():  # the original model's predictions, the locality targets
            reference = F.log_softmax(work(data.x, data.edge_index), dim=1)
    for i, group in enumerate(groups):
        nodes, ys = targets[group], labels[group]
        guards = None
        if guarding and done_nodes:
            guards = (torch.cat(done_nodes), torch.cat(done_labels))
        start, cpu_start = time.perf_counter(), time.process_time()
        if fresh and i > 0:
            work.load_state_dict(original)
        if i == 0 or not fresh:  # anchors of the model this edit starts from
            projector = _projector(work, data, params, config, field, guards, cache=views)
        settle = None
        if reference is not None and config.locality_every:
            def settle(pending, pending_y, i=i):
                restore(work, params, data, reference, _cat(done_nodes), _cat(done_labels),
                        config.locality_steps, config.locality_lr, config.locality_sample,
                        config.seed + i, field, views, pending=(pending, pending_y))
        outcome = _edit_once(work, params, data, nodes, ys, config, projector, field, guards,
                             settle)
        if outcome.success:
            done_nodes.append(nodes)
            done_labels.append(ys)
        if reference is not None and done_nodes:  # pull the rest of the graph back
            outcome.restored, outcome.locality_before, outcome.locality = restore(
                work, params, data, reference, torch.cat(done_nodes), torch.cat(done_labels),
                config.locality_steps, config.locality_lr, config.locality_sample,
                config.seed + i, field, views, extra=config.locality_extra,
                bound=config.locality_rise * level)
            level = outcome.locality
        outcome.seconds = time.perf_counter() - start
        outcome.cpu_seconds = time.process_time() - cpu_start
        outcome.anchors = getattr(projector, "k", 1 if projector is not None else 0)
        record.edits.append(outcome)
        if on_edit is not None:
            on_edit(work, outcome)
    if config.mode == "sequential":
        with torch.no_grad():
            x, edge_index, index = view(data, targets, field)
            pred = work(x, edge_index)[index].argmax(dim=1)
        record.final_correct = float((pred == labels).float().mean())
    if previous is not None:
        work.set_project_first(previous)  # as it came
    work.train(was_training)
    return work, record
