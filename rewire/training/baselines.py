r"""Baselines GradR is compared with at equal connectivity: Deep R and gradual magnitude pruning.

* :class:`DeepR` — Bellec, Kappel, Maass & Legenstein, "Deep Rewiring: Training very sparse
  deep networks", ICLR 2018, Algorithm 1 (hard DEEP R). The network keeps *exactly* ``K``
  active synapses the whole run. Each synapse has a fixed sign :math:`s` and a parameter
  :math:`\theta`; it is active iff :math:`\theta > 0` and then :math:`w = s\,\theta`
  (the same :class:`rewire.training.gradr.SignedReLU` parametrization GradR uses). Per step,
  only the active synapses move (paper Eq. 3, with Adam's direction in place of the raw
  gradient as in the paper's experiments):

  .. math::  \theta_k \leftarrow \theta_k - \eta\,\hat d_k - \eta\alpha + \sqrt{2\eta T}\,\nu_k,
             \qquad \nu_k \sim \mathcal N(0, 1)

  A synapse whose :math:`\theta` falls to 0 or below becomes dormant (its weight is 0 and it
  gets no further update); then as many dormant synapses as went dormant, drawn uniformly
  over the whole network, are re-activated with :math:`\theta = 0^+` (the paper's
  :math:`\theta = 0`, stored as the smallest positive float so that it counts as connected)
  and fresh Adam moments, so they start learning at once. (The reference repository's "hard"
  mode zeroes re-activated entries so they never learn again — not copied here.)

* :class:`MagnitudePruner` — Zhu & Gupta, "To prune, or not to prune", 2017, Eq. 1: every
  ``frequency`` steps between ``begin`` and ``end`` the smallest-magnitude weights are masked
  so that the sparsity follows

  .. math::  s_t = s_f + (s_i - s_f)\left(1 - \frac{t - t_0}{n\,\Delta t}\right)^3,

  and masked weights stay zero for the rest of the run (no regrowth). The final step prunes to
  exactly ``round(connectivity * total)`` connected synapses (ties broken by position).

Both act on every ``nn.Linear``/``nn.Conv1d``/``nn.Conv2d`` weight (biases and norms are not
pruned) and rank synapses globally over the network, like GradR.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from rewire.training.gradr import PRUNABLE_TYPES, apply_gradr


def _check_connectivity(connectivity: float) -> None:
    if not 0.0 < connectivity <= 1.0:
        raise ValueError(f"connectivity must be in (0, 1], got {connectivity}")


def init_deep_r(model: nn.Module, connectivity: float,
                generator: torch.Generator | None = None) -> list[nn.Parameter]:
    r"""Parametrize ``model`` for Deep R and activate ``K = round(connectivity * total)`` synapses.

    Every prunable weight becomes ``s * relu(theta)`` (:func:`apply_gradr`); ``K`` synapses
    drawn uniformly over the network stay active with :math:`\theta = |w_0| / \sqrt{c}` (the
    dense initialisation rescaled so a neuron's input variance matches the dense network's);
    the others are dormant with :math:`\theta = -|w_0|`.

    Args:
        model: a fresh model (not yet parametrized).
        connectivity: target connectivity :math:`c = K / \text{total}` in (0, 1].
        generator: random source for the initial active set.

    Returns:
        The hidden parameters, one per prunable layer (pass them to :class:`DeepR`).

    Raises:
        ValueError: ``connectivity`` outside (0, 1], or as :func:`apply_gradr`.
    """
    _check_connectivity(connectivity)
    thetas = apply_gradr(model)
    total = sum(t.numel() for t in thetas)
    k = max(1, round(connectivity * total))
    active = torch.zeros(total, dtype=torch.bool)
    active[torch.randperm(total, generator=generator)[:k]] = True
    offset = 0
    with torch.no_grad():
        for theta in thetas:
            mask = active[offset:offset + theta.numel()].view_as(theta).to(theta.device)
            mag = theta.abs().clamp(min=torch.finfo(theta.dtype).tiny)
            theta.copy_(torch.where(mask, mag / math.sqrt(connectivity), -mag))
            offset += theta.numel()
    return thetas


class DeepR(torch.optim.Optimizer):
    r"""Hard DEEP R (Bellec et al., ICLR 2018, Algorithm 1) with Adam directions.

    Keeps the number of active synapses (:math:`\theta > 0`) over all its parameters fixed at
    the count it finds at the first step (use :func:`init_deep_r` to set it). See the module
    docstring for the update. Parameters whose group has ``rewire=False`` (biases, norms)
    get plain Adam and are never pruned.

    Args:
        params: the hidden :math:`\theta` (from :func:`init_deep_r`) or param groups.
        lr: learning rate :math:`\eta` (default 1e-3).
        alpha: L1 penalty :math:`\alpha \ge 0` (default 1e-4).
        temperature: noise temperature :math:`T \ge 0` (default 1e-10; 0 = no noise).
        betas, eps: as in :class:`torch.optim.Adam`.
        generator: random source for the noise and the re-activations (CPU generator).

    Raises:
        ValueError: negative ``lr``, ``alpha`` or ``temperature``.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, alpha: float = 1e-4,
                 temperature: float = 1e-10, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, generator: torch.Generator | None = None) -> None:
        for name, value in (("lr", lr), ("alpha", alpha), ("temperature", temperature)):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        super().__init__(params, dict(lr=lr, alpha=alpha, temperature=temperature,
                                      betas=betas, eps=eps, rewire=True))
        self.generator = generator
        self.active_count: int | None = None

    def _rewired(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups if g["rewire"] for p in g["params"]]

    @torch.no_grad()
    def step(self, closure=None):
        """One Deep R step: update active synapses, then re-activate as many as went dormant."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.active_count is None:
            self.active_count = sum(int((p > 0).sum()) for p in self._rewired())
        for group in self.param_groups:
            lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                grad = p.grad
                active = p > 0 if group["rewire"] else None
                if active is not None:
                    grad = grad * active
                m.lerp_(grad, 1 - b1)
                v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                denom = (v / (1 - b2 ** t)).sqrt_().add_(eps)
                update = (m / denom).mul_(lr / (1 - b1 ** t))
                if active is not None:
                    update.add_(lr * group["alpha"])
                    update.mul_(active)
                    if group["temperature"] > 0:  # noise on the active synapses only
                        where = active.view(-1).nonzero().squeeze(1)
                        noise = torch.randn(len(where), generator=self.generator).to(p.device)
                        update.view(-1).index_add_(
                            0, where, noise, alpha=-math.sqrt(2 * lr * group["temperature"]))
                p.sub_(update)
        self._rewire()
        return loss

    def _rewire(self) -> None:
        params = self._rewired()
        theta = torch.cat([p.detach().view(-1).cpu() for p in params])
        dormant = theta <= 0
        missing = self.active_count - (len(theta) - int(dormant.sum()))
        if missing <= 0:
            return
        chosen = _uniform_subset(dormant, missing, self.generator)
        offset = 0
        for p in params:
            n = p.numel()
            local = chosen[(chosen >= offset) & (chosen < offset + n)] - offset
            if len(local):
                local = local.to(p.device)
                p.view(-1)[local] = torch.finfo(p.dtype).tiny
                state = self.state[p]
                if state:
                    state["exp_avg"].view(-1)[local] = 0
                    state["exp_avg_sq"].view(-1)[local] = 0
            offset += n


def _uniform_subset(pool: torch.Tensor, k: int,
                    generator: torch.Generator | None) -> torch.Tensor:
    """Positions of ``k`` distinct ``True`` entries of the 1-D bool ``pool``, uniformly drawn.

    Draws positions uniformly with replacement, keeps those in the pool, drops repeats, until
    ``k`` are found (rejection sampling: cheap while the pool is most of the tensor, Deep R's
    usual case); falls back to a permutation of the pool when it is small.
    """
    n_pool = int(pool.sum())
    k = min(k, n_pool)
    if 4 * k > n_pool or 2 * n_pool < len(pool):
        items = pool.nonzero().squeeze(1)
        return items[torch.randperm(len(items), generator=generator)[:k]]
    picked = torch.empty(0, dtype=torch.long)
    while len(picked) < k:
        draw = torch.randint(len(pool), (2 * (k - len(picked)) + 8,), generator=generator)
        picked = torch.cat([picked, draw[pool[draw]]])
        picked = picked[_first_occurrence(picked)]
    return picked[:k]


def _first_occurrence(x: torch.Tensor) -> torch.Tensor:
    """Sorted positions of the first occurrence of each value in 1-D ``x``."""
    _, inverse = torch.unique(x, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(x), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(x)), reduce="amin")
    return first.sort().values


def cubic_sparsity(step: int, final_sparsity: float, begin: int, end: int,
                   initial_sparsity: float = 0.0) -> float:
    r"""Zhu & Gupta (2017) Eq. 1: :math:`s_f + (s_i - s_f)(1 - (t - t_0)/(t_1 - t_0))^3`.

    Args:
        step: optimizer step :math:`t`.
        final_sparsity: :math:`s_f` in [0, 1).
        begin, end: first and last pruning step :math:`t_0 < t_1`.
        initial_sparsity: :math:`s_i` (default 0).

    Returns:
        The sparsity (fraction of pruned synapses) at ``step``; :math:`s_i` before ``begin``,
        :math:`s_f` from ``end`` on.

    Example:
        >>> round(cubic_sparsity(50, 0.9, 0, 100), 4)
        0.7875
    """
    frac = min(1.0, max(0.0, (step - begin) / max(1, end - begin)))
    return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - frac) ** 3


class MagnitudePruner:
    r"""Gradual magnitude pruning (Zhu & Gupta 2017) to an exact final connectivity.

    Call :meth:`step` after every optimizer step. Every ``frequency`` steps in
    ``[begin, end]`` the globally smallest :math:`|w|` among the still-connected synapses are
    masked until the connectivity is ``1 - cubic_sparsity(t)``; at every call the mask is
    re-applied (``w *= mask``) so masked weights stay zero whatever the optimizer does.

    Args:
        model: the model (plain weights; no GradR parametrization).
        connectivity: final connectivity in (0, 1]; the last pruning keeps exactly
            ``round(connectivity * total)`` synapses.
        total_steps: optimizer steps of the run.
        begin, end: fractions of the run where pruning starts and ends (defaults 0, 0.75).
        frequency: prune every this many steps (default 100; ``end`` always prunes).

    Raises:
        ValueError: ``connectivity`` outside (0, 1], ``total_steps < 1`` or ``begin >= end``.
    """

    def __init__(self, model: nn.Module, connectivity: float, total_steps: int,
                 begin: float = 0.0, end: float = 0.75, frequency: int = 100) -> None:
        _check_connectivity(connectivity)
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if not 0 <= begin < end <= 1:
            raise ValueError(f"need 0 <= begin < end <= 1, got {begin}, {end}")
        self.weights = [m.weight for m in model.modules() if isinstance(m, PRUNABLE_TYPES)]
        if not self.weights:
            raise ValueError("model has no nn.Linear/nn.Conv1d/nn.Conv2d layer to prune")
        self.masks = [torch.ones_like(w, dtype=torch.bool) for w in self.weights]
        self.total = sum(w.numel() for w in self.weights)
        self.final = max(1, round(connectivity * self.total))
        self.begin, self.end = round(begin * total_steps), max(1, round(end * total_steps))
        self.frequency, self.t = max(1, frequency), 0

    def connected(self) -> int:
        """Synapses still connected (mask set and weight non-zero)."""
        return sum(int((m & (w != 0)).sum()) for m, w in zip(self.masks, self.weights))

    @torch.no_grad()
    def step(self) -> None:
        """Advance one optimizer step: prune on schedule, then apply the masks."""
        self.t += 1
        due = (self.t >= self.begin and (self.t - self.begin) % self.frequency == 0
               and self.t < self.end) or self.t == self.end
        if due:
            sparsity = cubic_sparsity(self.t, 1 - self.final / self.total, self.begin, self.end)
            keep = self.final if self.t >= self.end else max(
                self.final, round((1 - sparsity) * self.total))
            scores = torch.cat([(w.abs() * m).flatten().cpu()
                                for w, m in zip(self.weights, self.masks)])
            kept = torch.zeros_like(scores, dtype=torch.bool)
            kept[scores.topk(keep).indices] = True
            offset = 0
            for i, w in enumerate(self.weights):
                self.masks[i] &= kept[offset:offset + w.numel()].view_as(w).to(w.device)
                offset += w.numel()
        for w, m in zip(self.weights, self.masks):
            w.mul_(m)

