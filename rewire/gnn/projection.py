"""Gradient rewiring projections for GNN editing (GRE and GRE+, Jiang et al., NeurIPS 2024).

An edit step has a *target* direction ``g`` (the target-loss gradient, or the optimizer's
update, see :class:`rewire.gnn.editor.EditConfig` ``project``) and K *anchor* gradients of
the training loss, the rows of ``G`` (shape (K, P)). A parameter step ``θ ← θ − η g'``
changes the training loss of anchor chunk k, to first order, by ``−η G[k]·g'``; the
projections below choose the ``g'`` closest to ``g`` that lowers none of them:

GRE (one anchor ``g_tr``, paper eq. 3 and its closed form, eq. 4)::

    min_g' ½‖g' − g‖²   s.t.  g_trᵀ g' ≥ 0
    g' = g + v g_tr,   v = max(0, −g_trᵀ g / ‖g_tr‖²)

GRE+ (K anchors, ridge λ, paper eq. 5 and its dual, eq. 6)::

    min_g' ½‖g' − g‖² + (λ/2)‖g'‖²   s.t.  G g' ≥ 0
    g' = (Gᵀ v + g) / (1 + λ),   v = argmin_{v ≥ 0} ½ vᵀ (G Gᵀ) v + vᵀ (G g)

The dual is ``argmin_{v≥0} ½‖Gᵀ v + g‖²``, a non-negative least-squares problem. With the
eigen-decomposition of the K×K Gram matrix ``G Gᵀ = V Λ Vᵀ`` it becomes the small problem
``argmin_{v≥0} ‖R v − b‖`` with ``R = Λ^½ Vᵀ`` and ``b = −Λ^-½ Vᵀ (G g)`` (directions with
Λ ≈ 0 dropped; ``G g`` has no component there), solved by :func:`scipy.optimize.nnls`
(Lawson–Hanson). The factorisation depends only on the anchors, so it is done once per
edit and each step costs one product ``G g`` plus a K×K NNLS. λ does not change ``v``; it
only shrinks the step.

Vectors are flat ``torch.float64`` tensors; see :func:`flatten` / :func:`unflatten`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.optimize import nnls

__all__ = ["AnchorProjector", "flatten", "gre_project", "unflatten"]


def flatten(tensors: Sequence[torch.Tensor | None], like: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one flat float64 vector (``None`` counts as zeros like ``like``).

    Shapes: each ``tensors[i]`` has ``like[i].shape``; output (P,), P = Σ numel.

    Example:
        >>> flatten([torch.ones(2, 2), None], [torch.ones(2, 2), torch.ones(3)]).tolist()
        [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    """
    return torch.cat([(torch.zeros_like(r) if t is None else t).reshape(-1).double()
                      for t, r in zip(tensors, like)])


def unflatten(vector: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split a flat vector (P,) back into tensors shaped and typed like ``like``.

    Raises:
        ValueError: if ``vector`` does not have Σ numel(like) entries.

    Example:
        >>> [t.shape for t in unflatten(torch.arange(5.), [torch.ones(2), torch.ones(3)])]
        [torch.Size([2]), torch.Size([3])]
    """
    sizes = [t.numel() for t in like]
    if vector.numel() != sum(sizes):
        raise ValueError(f"vector has {vector.numel()} entries, parameters need {sum(sizes)}")
    return [part.reshape(t.shape).to(t.dtype) for part, t in zip(vector.split(sizes), like)]


def gre_project(g: torch.Tensor, g_tr: torch.Tensor) -> torch.Tensor:
    """GRE closed form (Jiang et al. 2024, eq. 4): ``g + max(0, −g_trᵀg/‖g_tr‖²) g_tr``.

    The result ``g'`` is the point nearest ``g`` with ``g_trᵀ g' ≥ 0``; if ``g`` already
    satisfies the constraint (or ``g_tr`` is zero) it is returned unchanged. ``g_tr`` is first
    scaled to a largest entry of 1 (the same constraint), so tiny anchors do not underflow.

    Shapes: ``g`` and ``g_tr`` (P,); output (P,).

    Example:
        >>> gre_project(torch.tensor([1., -1.]), torch.tensor([0., 1.])).tolist()
        [1.0, 0.0]
    """
    scale = g_tr.abs().max() if g_tr.numel() else g_tr.new_zeros(())
    if scale <= 0:
        return g.clone()
    u = g_tr / scale  # same direction; ‖g_tr‖² of a 1e-191 anchor would underflow to 0
    v = torch.clamp(-torch.dot(u, g) / torch.dot(u, u), min=0.0)
    return g + v * u


class AnchorProjector:
    """GRE+ projection onto ``{g' : G g' ≥ 0}`` with ridge λ (Jiang et al. 2024, eqs. 5–6).

    Args:
        anchors: ``G``, shape (K, P), one training-loss gradient per anchor chunk (any
            float dtype; used in float64).
        lam: ridge weight λ ≥ 0 of eq. 5; the returned step is divided by ``1 + λ``.

    Raises:
        ValueError: if ``anchors`` is not 2-D or λ is negative or not finite.

    Example:
        >>> p = AnchorProjector(torch.tensor([[0., 1.], [1., 1.]]), lam=0.0)
        >>> [round(x, 6) + 0.0 for x in p(torch.tensor([1., -2.])).tolist()]
        [1.0, 0.0]
    """

    def __init__(self, anchors: torch.Tensor, lam: float = 0.0):
        if anchors.dim() != 2:
            raise ValueError(f"anchors must have shape (K, P), got {tuple(anchors.shape)}")
        if not np.isfinite(lam) or lam < 0:
            raise ValueError(f"lam (λ) must be a finite number >= 0, got {lam}")
        self.anchors = anchors.double()
        self.lam = float(lam)
        # Scaling a row of G by a positive number leaves the cone {g' : G g' >= 0}, and so the
        # projection, unchanged; unit rows keep G Gᵀ well scaled (rows of 1e-246 would
        # underflow in it and be dropped although they constrain the step). The max-abs
        # pre-scaling keeps the norm itself from underflowing; zero rows constrain nothing.
        # (one (K, P) temporary: P is large, K x P copies dominate the set-up time)
        peak = torch.maximum(self.anchors.amax(dim=1, keepdim=True),
                             -self.anchors.amin(dim=1, keepdim=True))  # no (K, P) |G| copy
        scaled = self.anchors / torch.where(peak > 0, peak, torch.ones_like(peak))
        norm = torch.linalg.vector_norm(scaled, dim=1, keepdim=True)
        self._unit = scaled.div_(torch.where(norm > 0, norm, torch.ones_like(norm)))
        self._row_scale = (peak * norm).squeeze(1)  # ‖G_i‖, 0 for zero rows
        # G Gᵀ = V Λ Vᵀ; ‖Gᵀv + g‖² = ‖Λ^½Vᵀv + Λ^-½Vᵀ G g‖² + const: a K×K NNLS per step.
        eigval, eigvec = torch.linalg.eigh(self._unit @ self._unit.T)
        eps = torch.finfo(torch.float64).eps
        keep = eigval > max(float(eigval.max()), 0.0) * self.k * eps
        if float(eigval.max()) <= 0:
            keep = torch.zeros_like(keep)
        root = eigval[keep].sqrt()
        self._basis = eigvec[:, keep] / root  # (K, r): b = −basisᵀ (G g)
        self._r = (root[:, None] * eigvec[:, keep].T).numpy()  # (r, K)

    @property
    def k(self) -> int:
        """Number of anchors K."""
        return self.anchors.shape[0]

    def multipliers(self, g: torch.Tensor) -> np.ndarray:
        """The dual solution ``v ≥ 0`` of eq. 6 for direction ``g`` (P,); shape (K,)."""
        v = self._unit_multipliers(g)
        scale = self._row_scale.numpy()
        return np.divide(v, scale, out=np.zeros_like(v), where=scale > 0)

    def _unit_multipliers(self, g: torch.Tensor) -> np.ndarray:
        """Dual solution for the rows of G scaled to unit norm; shape (K,)."""
        if self._r.shape[0] == 0:  # all anchors zero: no constraint
            return np.zeros(self.k)
        products = self._unit @ g.double()
        if bool((products >= 0).all()):  # g already in the cone: v = 0 meets the KKT
            return np.zeros(self.k)       # conditions (G g ≥ 0), no NNLS needed
        b = -(self._basis.T @ products).numpy()
        v, _ = nnls(self._r, b, maxiter=max(50, 10 * self.k))
        return v

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        """Return ``g' = (Gᵀ v + g) / (1 + λ)`` (float64, shape (P,)) for ``g`` (P,)."""
        v = torch.from_numpy(self._unit_multipliers(g))
        out = (self._unit.T @ v + g.double()) / (1.0 + self.lam)
        # x = 0 is always feasible (G 0 = 0): where nearly opposite anchor rows leave the NNLS
        # ill-conditioned and its answer costs more than the zero step, the zero step is the
        # better point of the QP (found by hypothesis: rows (1e-5, -10, 0), (0, 1, 0))
        g64 = g.double()
        cost = 0.5 * float((out - g64) @ (out - g64)) + 0.5 * self.lam * float(out @ out)
        return torch.zeros_like(out) if cost > 0.5 * float(g64 @ g64) else out
