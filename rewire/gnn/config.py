"""What an edit is asked to do and what it did: :class:`EditConfig` (method, mode and
hyper-parameters), :class:`EditOutcome` (one edit) and :class:`EditRecord` (one
:func:`rewire.gnn.editor.edit` call). Methods: GD, GRE and GRE+ (Jiang et al., NeurIPS 2024,
arXiv 2410.15556, eqs. 3-6); see :mod:`rewire.gnn.editor` for what each does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["METHODS", "MODES", "PROJECTIONS", "EditConfig", "EditOutcome", "EditRecord"]

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
        locality_steps: sequential mode: after each edit, at most this many steps that
            pull the other nodes' predictions back to the original model's while every
            edited node stays right (:mod:`rewire.gnn.locality`); 0 = none.
        locality_lr: first step size η of those steps (backtracking: doubled after a
            kept step, quartered on a refused try).
        locality_sample: locality nodes per restore, drawn afresh per edit (None: every
            node not edited).
        locality_extra: sequential mode: at most this many restore steps more after
            ``locality_steps`` while the restore's loss ``L_loc`` is still above
            ``locality_rise`` times its level before the edit (the ``L_loc`` the previous
            restore ended at): an edit that moved the graph far gets a longer restore;
            0 = none.
        locality_rise: that factor (> 1 lets the level creep; >= 1).
        locality_every: sequential mode with ``locality_steps``: inside an edit, after
            every this many of its Adam steps (an edit goes on while a target is wrong),
            a restore of ``locality_steps`` steps in which the edit's targets' loss
            stays within 1 % of its value at the restore's start (they need not be
            right yet; :func:`rewire.gnn.locality.restore` ``pending``); 0 = none.
        margin: an edit goes on (within ``max_steps``) until each of its targets leads
            by at least this logit margin ``z_y − max_{c≠y} z_c`` (0: until it is
            right), which leaves a locality restore room to move without flipping it.
        lr_backtrack: halve Adam's learning rate for the rest of an edit each time a step
            raised the edit's target loss (Adam's momentum overshooting; default off: the
            paper's fixed ``lr``).

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
    locality_steps: int = 0
    locality_lr: float = 10.0
    locality_sample: int | None = None
    locality_extra: int = 0
    locality_rise: float = 1.5
    locality_every: int = 0
    margin: float = 0.0
    lr_backtrack: bool = False

    def __post_init__(self):
        for name, allowed in (("method", METHODS), ("mode", MODES), ("project", PROJECTIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not one of {list(allowed)}")
        if not isinstance(self.lr_backtrack, bool):
            raise ValueError(f"lr_backtrack must be True or False, got {self.lr_backtrack!r}")
        for name in ("locality_steps", "locality_extra", "locality_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be an integer >= 0, got "
                                 f"{getattr(self, name)!r}")
        if not (self.margin >= 0 and self.margin < float("inf")):
            raise ValueError(f"margin must be a finite number >= 0, got {self.margin}")
        if not (self.locality_rise >= 1 and self.locality_rise < float("inf")):
            raise ValueError(f"locality_rise must be a finite number >= 1, got "
                             f"{self.locality_rise}")
        for name in ("k", "max_steps", "batch_size", "max_anchors", "anchor_sample",
                     "locality_sample"):
            if name in ("k", "anchor_sample", "locality_sample") and getattr(self, name) is None:
                continue
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not (self.lam >= 0 and self.lam < float("inf")):
            raise ValueError(f"lam (λ) must be a finite number >= 0, got {self.lam}")
        for name in ("lr", "locality_lr"):
            if not (getattr(self, name) > 0 and getattr(self, name) < float("inf")):
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)}")
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
    right at the end of this edit, and ``anchors`` rows of the QP; with ``locality_steps``:
    ``restored`` steps of the locality restore kept after the edit and its loss
    ``L_loc`` (mean KL to the original model's outputs) before (``locality_before``) and
    after (``locality``) them."""

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
    restored: int = 0
    locality_before: float = 0.0
    locality: float = 0.0


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

