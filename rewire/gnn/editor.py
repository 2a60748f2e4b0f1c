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

Every forward pass runs on a receptive field (``subgraph=True``, default): the
(L + 1)-hop subgraph of the nodes whose outputs it needs (:mod:`rewire.gnn.receptive`),
which gives the full-graph values at a cost independent of the graph's size;
``subgraph=False`` runs the whole graph (the reference). On large graphs ``k`` chunks of
``anchor_sample`` training nodes (drawn with ``seed``) keep the anchors and the QP bounded.
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

from rewire.gnn.projection import AnchorProjector, flatten, gre_project, unflatten
from rewire.gnn.receptive import ReceptiveField, message_passing_layers

__all__ = ["METHODS", "MODES", "PROJECTIONS", "EditConfig", "EditOutcome", "EditRecord",
           "anchor_chunks", "anchor_gradients", "edit", "editable_parameters", "misclassified",
           "receptive_field", "field_for"]

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
        protect: sequential mode, GRE/GRE+: earlier edited nodes join the constraints of
            later edits and are repaired if a step flips them (module docstring).
        max_anchors: bound on the QP's size: at most this many training chunks (``k=None``
            with more training nodes is refused), and the edited nodes of a sequential
            edit share ``max(1, max_anchors − K)`` rows (one each while they fit).
        subgraph: run every forward on the receptive field of the nodes it needs (default)
            or, ``False``, on the whole graph (the reference; same values up to rounding).
        anchor_sample: anchors from a random sample of this many training nodes (drawn
            with ``seed``, split into ``k`` chunks) instead of all; for large graphs.

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
    protect: bool = True
    max_anchors: int = 512
    subgraph: bool = True
    anchor_sample: int | None = None

    def __post_init__(self):
        for name, allowed in (("method", METHODS), ("mode", MODES), ("project", PROJECTIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not one of {list(allowed)}")
        for name in ("k", "max_steps", "batch_size", "max_anchors", "anchor_sample"):
            if name in ("k", "anchor_sample") and getattr(self, name) is None:
                continue
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not (self.lam >= 0 and self.lam < float("inf")):
            raise ValueError(f"lam (λ) must be a finite number >= 0, got {self.lam}")
        if not (self.lr > 0 and self.lr < float("inf")):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if self.k is not None and self.k > self.max_anchors:
            raise ValueError(f"k={self.k} anchor chunks exceed max_anchors={self.max_anchors}; "
                             f"lower k or raise max_anchors")
        if self.anchor_sample is not None and self.k is not None and self.k > self.anchor_sample:
            raise ValueError(f"k={self.k} chunks of anchor_sample={self.anchor_sample} nodes: "
                             f"choose k <= anchor_sample")

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
    ``seconds`` and ``cpu_seconds`` (this process's CPU time; anchors included in both);
    sequential mode with ``protect``: ``guarded`` earlier edited nodes, ``kept`` of them
    right at the end of this edit, and ``anchors`` rows of the QP."""

    nodes: list[int]
    success: bool
    steps: int
    losses: list[float]
    seconds: float
    cpu_seconds: float = 0.0
    correct: int = 0
    guarded: int = 0
    kept: int = 0
    anchors: int = 0


@dataclass
class EditRecord:
    """All edits of one :func:`edit` call.

    ``final_correct``: in sequential mode, the fraction of all targets the returned model
    predicts right (earlier edits can be undone by later ones); ``None`` otherwise.
    ``setup_seconds``: once per call, the receptive-field index (CSR) build.
    """

    config: EditConfig
    edits: list[EditOutcome] = field(default_factory=list)
    final_correct: float | None = None
    setup_seconds: float = 0.0

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
                "setup_seconds": self.setup_seconds,
                "edits": [asdict(e) for e in self.edits]}


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


def _view(data: Data, nodes: torch.Tensor, field: ReceptiveField | None):
    """``(x, edge_index, index)`` on which ``model(x, edge_index)[index]`` gives the
    outputs of ``nodes``: the receptive field, or the whole graph if ``field`` is None."""
    if field is None:
        return data.x, data.edge_index, nodes
    subset, edge_index, index = field.subgraph(nodes)
    return data.x[subset], edge_index, index


def anchor_gradients(model: nn.Module, data: Data, chunks: Sequence[torch.Tensor],
                     params: Sequence[nn.Parameter], field: ReceptiveField | None = None,
                     y: torch.Tensor | None = None) -> torch.Tensor:
    """Anchor matrix ``G`` (K, P), float64: row k = ∇θ CE(f_θ(X, A)[chunk_k], y[chunk_k])
    over ``params`` (eval mode); ``y`` (N,) defaults to ``data.y``. With a ``field``
    (:func:`field_for`) each row is computed on its chunk's receptive field only, which
    gives the same value at a fraction of the cost; without, on the whole graph."""
    y = data.y if y is None else y
    rows = torch.zeros(len(chunks), sum(p.numel() for p in params), dtype=torch.float64)
    for row, nodes in zip(rows, chunks):
        x, edge_index, index = _view(data, nodes, field)
        loss = F.cross_entropy(model(x, edge_index)[index], y[nodes])
        at = 0
        for p, grad in zip(params, torch.autograd.grad(loss, params, allow_unused=True)):
            if grad is not None:
                row[at:at + p.numel()] = grad.reshape(-1)
            at += p.numel()
    return rows


def _projector(model: nn.Module, data: Data, params, config: EditConfig,
               field: ReceptiveField | None = None, guards=None):
    """The map g ↦ g' for ``config.method`` (None for GD); ``guards`` = (nodes, labels)
    of earlier edited nodes, extra anchor rows (sequential ``protect``)."""
    if config.method == "gd":
        return None
    chunks = anchor_chunks(data, config.anchors, config.seed, config.anchor_sample)
    if len(chunks) > config.max_anchors:
        raise ValueError(f"k=None gives one anchor per training node ({len(chunks)}), more "
                         f"than max_anchors={config.max_anchors}: pass k <= "
                         f"{config.max_anchors} (or anchor_sample) or raise max_anchors")
    anchors = anchor_gradients(model, data, chunks, params, field)
    if guards is not None and guards[0].numel():
        nodes, labels = guards
        y = data.y.clone()
        y[nodes] = labels
        rows = min(nodes.numel(), max(1, config.max_anchors - len(chunks)))
        extra = anchor_gradients(model, data, list(torch.tensor_split(nodes, rows)), params,
                                 field, y)
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
    return _view(data, torch.as_tensor(nodes, dtype=torch.long).flatten(),
                 field_for(model, data))


def _edit_once(model, params, data, nodes, labels, config, projector, field=None,
               guards=None) -> EditOutcome:
    """Up to ``max_steps`` rewired Adam steps on one target set; stops when all are right
    (and, with ``guards`` = (nodes, labels) of earlier edits, all of those too: a wrong
    one joins the loss)."""
    opt = torch.optim.Adam(params, lr=config.lr)
    t = nodes.numel()
    if guards is not None and guards[0].numel():
        every, every_y = torch.cat([nodes, guards[0]]), torch.cat([labels, guards[1]])
    else:
        every, every_y = nodes, labels
    x, edge_index, index = _view(data, every, field)
    losses, steps = [], 0
    while True:
        logits = model(x, edge_index)[index]
        right = logits.argmax(dim=1) == every_y
        losses.append(float(F.cross_entropy(logits[:t].detach(), labels)))
        if bool(right.all()) or steps == config.max_steps:
            break
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
    correct = int(right[:t].sum())
    return EditOutcome(nodes.tolist(), correct == t, steps, losses, 0.0, correct=correct,
                       guarded=every.numel() - t, kept=int(right[t:].sum()))


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
        x, edge_index, index = _view(data, targets[:1], field)
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
    done_nodes, done_labels = [], []
    for i, group in enumerate(groups):
        nodes, ys = targets[group], labels[group]
        guards = None
        if guarding and done_nodes:
            guards = (torch.cat(done_nodes), torch.cat(done_labels))
        start, cpu_start = time.perf_counter(), time.process_time()
        if fresh and i > 0:
            work.load_state_dict(original)
        if i == 0 or not fresh:  # anchors of the model this edit starts from
            projector = _projector(work, data, params, config, field, guards)
        outcome = _edit_once(work, params, data, nodes, ys, config, projector, field, guards)
        outcome.seconds = time.perf_counter() - start
        outcome.cpu_seconds = time.process_time() - cpu_start
        outcome.anchors = getattr(projector, "k", 1 if projector is not None else 0)
        record.edits.append(outcome)
        if outcome.success:
            done_nodes.append(nodes)
            done_labels.append(ys)
        if on_edit is not None:
            on_edit(work, outcome)
    if config.mode == "sequential":
        with torch.no_grad():
            x, edge_index, index = _view(data, targets, field)
            pred = work(x, edge_index)[index].argmax(dim=1)
        record.final_correct = float((pred == labels).float().mean())
    work.train(was_training)
    return work, record
