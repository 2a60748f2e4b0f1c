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
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Data
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import k_hop_subgraph

from rewire.gnn.projection import AnchorProjector, flatten, gre_project, unflatten

__all__ = ["METHODS", "MODES", "PROJECTIONS", "EditConfig", "EditOutcome", "EditRecord",
           "anchor_chunks", "anchor_gradients", "edit", "editable_parameters", "misclassified",
           "receptive_field"]

METHODS = ("gd", "gre", "gre+")
MODES = ("independent", "sequential", "batch")
PROJECTIONS = ("update", "gradient")


@dataclass(frozen=True)
class EditConfig:
    """Hyper-parameters of an edit.

    Attributes:
        method: ``"gd"``, ``"gre"`` or ``"gre+"``.
        mode: ``"independent"``, ``"sequential"`` or ``"batch"``.
        k: anchor chunks K of GRE+ (``gre`` always uses 1, ``gd`` none); ``None``
            (default) = one chunk per training node, the finest split.
        lam: ridge λ ≥ 0 of GRE+ (eq. 5); the step is divided by ``1 + λ``.
        project: ``"update"`` (project Adam's update, default) or ``"gradient"`` (the paper).
        lr: Adam learning rate (paper: 0.01).
        max_steps: step limit per edit (paper: 10; default 20, which the finer anchor set
            needs for SR ≥ 0.98, see docs/gnn.md).
        batch_size: targets per edit in ``batch`` mode (paper: 20; the last group may be
            smaller).
        seed: seed of the random split of the training nodes into anchor chunks.

    Raises:
        ValueError: a field out of range (the message names it and the allowed values).
    """

    method: str = "gre+"
    mode: str = "independent"
    k: int | None = None
    lam: float = 0.0
    project: str = "update"
    lr: float = 0.01
    max_steps: int = 20
    batch_size: int = 20
    seed: int = 0

    def __post_init__(self):
        for name, allowed in (("method", METHODS), ("mode", MODES), ("project", PROJECTIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not one of {list(allowed)}")
        for name in ("k", "max_steps", "batch_size"):
            if name == "k" and self.k is None:
                continue
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not (self.lam >= 0 and self.lam < float("inf")):
            raise ValueError(f"lam (λ) must be a finite number >= 0, got {self.lam}")
        if not (self.lr > 0 and self.lr < float("inf")):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")

    @property
    def anchors(self) -> int | None:
        """Number of anchor gradients K this method uses (0 for GD, None: one per training
        node)."""
        return {"gd": 0, "gre": 1, "gre+": self.k}[self.method]

    @property
    def label(self) -> str:
        """Short name, e.g. ``"gre+ K=10 λ=0 (update)"``."""
        if self.method == "gd":
            return "gd"
        k = "train" if self.k is None else self.k
        extra = f" K={k} λ={self.lam:g}" if self.method == "gre+" else ""
        return f"{self.method}{extra} ({self.project})"


@dataclass
class EditOutcome:
    """One edit: the target ``nodes``, ``success`` (all right at the end), ``correct``
    (how many are right at the end), Adam ``steps`` taken, target ``losses`` (one per forward pass, first = before editing), wall-clock
    ``seconds`` and ``cpu_seconds`` (this process's CPU time; anchors included in both)."""

    nodes: list[int]
    success: bool
    steps: int
    losses: list[float]
    seconds: float
    cpu_seconds: float = 0.0
    correct: int = 0


@dataclass
class EditRecord:
    """All edits of one :func:`edit` call.

    ``final_correct``: in sequential mode, the fraction of all targets the returned model
    predicts right (earlier edits can be undone by later ones); ``None`` otherwise.
    """

    config: EditConfig
    edits: list[EditOutcome] = field(default_factory=list)
    final_correct: float | None = None

    @property
    def success_rate(self) -> float:
        """SR: targets right at the end of their own edit / targets (in batch mode a
        target counts even if others of its group are still wrong)."""
        total = sum(len(e.nodes) for e in self.edits)
        return sum(e.correct for e in self.edits) / max(total, 1)

    @property
    def steps(self) -> list[int]:
        """Adam steps per edit."""
        return [e.steps for e in self.edits]

    @property
    def seconds_per_edit(self) -> float:
        """Mean wall-clock seconds per edit."""
        return sum(e.seconds for e in self.edits) / max(len(self.edits), 1)

    @property
    def cpu_seconds_per_edit(self) -> float:
        """Mean CPU seconds per edit (close to wall-clock time on an idle machine)."""
        return sum(e.cpu_seconds for e in self.edits) / max(len(self.edits), 1)

    def to_dict(self) -> dict:
        """JSON-ready dict: config, per-edit outcomes and the summary figures."""
        return {"config": asdict(self.config), "success_rate": self.success_rate,
                "final_correct": self.final_correct, "seconds_per_edit": self.seconds_per_edit,
                "cpu_seconds_per_edit": self.cpu_seconds_per_edit,
                "edits": [asdict(e) for e in self.edits]}


def editable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an edit changes: ``model.editable_parameters()`` if the model
    defines it (EGNN: the MLP only), else every parameter with ``requires_grad``."""
    if hasattr(model, "editable_parameters"):
        return [p for _, p in model.editable_parameters()]
    return [p for p in model.parameters() if p.requires_grad]


def anchor_chunks(data: Data, k: int | None, seed: int = 0) -> list[torch.Tensor]:
    """Split the training nodes at random into ``k`` near-equal chunks (GRE+, §4.2);
    ``k=None``: one chunk per training node.

    Raises:
        ValueError: if there are fewer than ``k`` training nodes.

    Example:
        >>> from rewire.gnn.data import toy_graph
        >>> [len(c) for c in anchor_chunks(toy_graph(nodes=60), 5)]
        [3, 3, 2, 2, 2]
    """
    train = data.train_mask.nonzero().flatten()
    k = train.numel() if k is None else k
    if k > train.numel():
        raise ValueError(f"k={k} anchor chunks but only {train.numel()} training nodes; "
                         f"choose k <= {train.numel()}")
    perm = torch.randperm(train.numel(), generator=torch.Generator().manual_seed(seed))
    return list(torch.tensor_split(train[perm], k))


def anchor_gradients(model: nn.Module, data: Data, chunks: Sequence[torch.Tensor],
                     params: Sequence[nn.Parameter]) -> torch.Tensor:
    """Anchor matrix ``G`` (K, P), float64: row k = ∇θ CE(f_θ(X, A)[chunk_k], y[chunk_k])
    over ``params`` (eval mode). Each row is computed on the chunk's
    :func:`receptive_field` only, which gives the same value at a fraction of the cost."""
    rows = []
    for nodes in chunks:
        x, edge_index, index = receptive_field(model, data, nodes)
        loss = F.cross_entropy(model(x, edge_index)[index], data.y[nodes])
        rows.append(flatten(torch.autograd.grad(loss, params, allow_unused=True), params))
    return torch.stack(rows)


def _projector(model: nn.Module, data: Data, params, config: EditConfig):
    """The map g ↦ g' for ``config.method`` (None for GD)."""
    if config.method == "gd":
        return None
    chunks = anchor_chunks(data, config.anchors, config.seed)
    anchors = anchor_gradients(model, data, chunks, params)
    if config.method == "gre":
        return lambda g: gre_project(g, anchors[0])
    return AnchorProjector(anchors, config.lam)


def receptive_field(model: nn.Module, data: Data, nodes: torch.Tensor):
    """The part of the graph that decides the outputs of ``nodes``: ``(x, edge_index, index)``
    with ``model(x, edge_index)[index] == model(data.x, data.edge_index)[nodes]``.

    A model with L message-passing layers (PyG ``MessagePassing`` modules) sees L hops; one
    hop more keeps every degree that a normalisation (GCN's ``D^-½``, SAGE's mean) reads
    exact. A model without such layers gets the whole graph.

    Shapes: ``nodes`` (T,); returns x (N', F), edge_index (2, E'), index (T,).
    """
    layers = sum(isinstance(m, MessagePassing) for m in model.modules())
    if layers == 0:
        return data.x, data.edge_index, nodes
    subset, edge_index, index, _ = k_hop_subgraph(nodes, layers + 1, data.edge_index,
                                                  relabel_nodes=True, num_nodes=data.num_nodes)
    return data.x[subset], edge_index, index


def _edit_once(model, params, data, nodes, labels, config, projector) -> EditOutcome:
    """Up to ``max_steps`` rewired Adam steps on one target set; stops when all are right."""
    opt = torch.optim.Adam(params, lr=config.lr)
    x, edge_index, index = receptive_field(model, data, nodes)
    losses, steps = [], 0
    while True:
        logits = model(x, edge_index)[index]
        loss = F.cross_entropy(logits, labels)
        losses.append(float(loss))
        if bool((logits.argmax(dim=1) == labels).all()) or steps == config.max_steps:
            break
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
    right = int((logits.argmax(dim=1) == labels).sum())
    return EditOutcome(nodes.tolist(), right == labels.numel(), steps, losses, 0.0,
                       correct=right)


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
         on_edit: Callable[[nn.Module, EditOutcome], None] | None = None
         ) -> tuple[nn.Module, EditRecord]:
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

    Returns:
        ``(edited, record)``: for ``sequential`` the model after all edits; for
        ``independent`` / ``batch`` the model after the last edit (each edit started from
        the original). ``record`` holds steps, success and losses of every edit.

    Raises:
        ValueError: bad targets or labels (out of range, repeated, wrong count), or more
            anchor chunks than training nodes.

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
    with torch.no_grad():
        num_classes = int(work(data.x, data.edge_index).shape[1])
    targets, labels = _check_targets(data, targets, labels, num_classes)
    if (config.anchors or 0) > int(data.train_mask.sum()):
        raise ValueError(f"k={config.anchors} anchor chunks but only "
                         f"{int(data.train_mask.sum())} training nodes")
    params = editable_parameters(work)
    record = EditRecord(config)
    size = config.batch_size if config.mode == "batch" else 1
    groups = list(torch.arange(targets.numel()).split(size))
    fresh = config.mode != "sequential"
    original = copy.deepcopy(work.state_dict()) if fresh else None
    projector = None
    for i, group in enumerate(groups):
        nodes, ys = targets[group], labels[group]
        start, cpu_start = time.perf_counter(), time.process_time()
        if fresh and i > 0:
            work.load_state_dict(original)
        if i == 0 or not fresh:  # anchors of the model this edit starts from
            projector = _projector(work, data, params, config)
        outcome = _edit_once(work, params, data, nodes, ys, config, projector)
        outcome.seconds = time.perf_counter() - start
        outcome.cpu_seconds = time.process_time() - cpu_start
        record.edits.append(outcome)
        if on_edit is not None:
            on_edit(work, outcome)
    if config.mode == "sequential":
        with torch.no_grad():
            pred = work(data.x, data.edge_index)[targets].argmax(dim=1)
        record.final_correct = float((pred == labels).float().mean())
    work.train(was_training)
    return work, record
