r"""Gradient Rewiring (GradR), the optimizer: Adam (or SGD) on the hidden :math:`\theta` plus
the Laplace prior's pull.

Chen, Yu, Tian & Huang, "Pruning of Deep Spiking Neural Networks through Gradient
Rewiring", IJCAI 2021 (arXiv 2105.04916), Section 3: the prior
:math:`p(\theta) \propto \exp(-\alpha|\theta - \mu|)` with target sparsity
:math:`p = P(\theta < 0)` gives :math:`\mu = \ln(2(1-p)) / \alpha` (paper Eq. 11) and adds
:math:`\alpha\,\mathrm{sign}(\theta - \mu)` to the gradient, as the reference implementation
(``Yanqi-Chen/Gradient-Rewiring``, ``gradrewire.py``) does. The parametrization
:math:`w = s\,\mathrm{ReLU}(\theta)` is in :mod:`rewire.training.gradr`.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

__all__ = ["prior_mean", "GradR", "GradRSGD"]


def prior_mean(alpha: float, sparsity: float) -> float:
    r"""Laplace prior centre :math:`\mu = \ln(2(1-p)) / \alpha` (GradR Eq. 11).

    Args:
        alpha: prior penalty :math:`\alpha > 0`.
        sparsity: target sparsity :math:`p \in [0.5, 1)`.
    """
    return math.log(2.0 * (1.0 - sparsity)) / alpha


class GradR(torch.optim.Adam):
    r"""Gradient Rewiring optimizer: Adam on :math:`\theta` plus the Laplace prior pull.

    .. math::
        \theta_{t} = \theta_{t-1} - k_t\, \hat d_t - k_t\, \alpha\,
                     \mathrm{sign}(\theta_{t-1} - \mu), \qquad k_t = \frac{\eta}{1-\beta_1^t}

    where :math:`\hat d_t = m_t / (\sqrt{v_t / (1-\beta_2^t)} + \epsilon)` is Adam's direction of
    the redefined gradient :math:`s\,\partial L/\partial w` (provided by :class:`SignedReLU`)
    and :math:`\mu` is :func:`prior_mean`. This is the reference implementation's update
    (``gradrewire.py``: the prior step uses the same bias-corrected step size); there is no
    noise term. Parameters whose group has ``alpha == 0`` (biases, norms) get plain Adam.

    Example with numbers (one step from :math:`\theta_0 = 0.3`, gradient 0.5, :math:`\eta` =
    0.1, :math:`\alpha` = 0.5, :math:`p` = 0.95, default betas): :math:`m_1 = 0.05`,
    :math:`v_1 = 2.5\cdot10^{-4}`, :math:`\hat d_1 = 1`, :math:`k_1 = 1`,
    :math:`\mu = \ln 0.1 / 0.5 = -4.605`, so :math:`\theta_1 = 0.3 - 1 - 0.5 = -1.2` (pruned).

    The step is written out (not delegated to ``torch.optim.Adam.step``) so that the prior pull
    costs two extra element-wise passes: its state (``step``, ``exp_avg``, ``exp_avg_sq``) and
    its ``state_dict`` are Adam's, plus each group's ``alpha`` and ``sparsity``.

    Args:
        params: iterable of parameters or param groups; a group may set its own ``alpha`` and
            ``sparsity``.
        lr: learning rate :math:`\eta` (default 1e-3).
        alpha: prior penalty :math:`\alpha \ge 0` (default 0: no pruning pressure).
        sparsity: target sparsity :math:`p \in [0.5, 1)` (default 0.95).
        betas, eps, weight_decay: as in :class:`torch.optim.Adam` (L2 weight decay added to
            the gradient, as Adam does).

    Raises:
        ValueError: ``alpha < 0`` or ``sparsity`` outside [0.5, 1), a tensor listed twice in
            a group (tied weights: give each once), or Adam's own checks.

    Example:
        >>> from rewire.training.gradr import GradR, apply_gradr
        >>> net = torch.nn.Linear(4, 3, bias=False)
        >>> opt = GradR(apply_gradr(net), lr=1e-2, alpha=0.1)
        >>> net(torch.ones(2, 4)).sum().backward(); opt.step()
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, alpha: float = 0.0,
                 sparsity: float = 0.95, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        _check_prior(alpha, sparsity)
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         foreach=False)
        _prior_defaults(self, alpha, sparsity)

    @torch.no_grad()
    def step(self, closure=None):
        """One GradR step (Adam step plus the prior pull taken at ``theta_{t-1}``).

        Returns:
            The closure's loss, or ``None``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            alpha = group["alpha"]
            _check_prior(alpha, group["sparsity"])
            mu = prior_mean(alpha, group["sparsity"]) if alpha > 0 else 0.0
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for theta in group["params"]:
                if theta.grad is None:
                    continue
                grad = theta.grad
                if grad.is_sparse:
                    raise RuntimeError("GradR does not support sparse gradients")
                if group["weight_decay"] != 0:
                    grad = grad.add(theta, alpha=group["weight_decay"])
                state = self.state[theta]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(theta, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(theta,
                                                           memory_format=torch.preserve_format)
                state["step"] += 1
                t = float(state["step"])
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                k = lr / (1 - beta1 ** t)
                root2 = math.sqrt(1 - beta2 ** t)
                buf = None
                if alpha > 0:
                    # The prior's sign is taken at theta_{t-1} (reference); both steps are
                    # additive, so the prior step goes first and its buffer is reused below.
                    buf = torch.sub(theta, mu).sign_()
                    theta.add_(buf, alpha=-k * alpha)
                # m / (sqrt(v / c2) + eps) == root2 * m / (sqrt(v) + eps * root2): one pass less
                denom = torch.sqrt(exp_avg_sq, out=buf).add_(eps * root2)
                theta.addcdiv_(exp_avg, denom, value=-k * root2)
        return loss


class GradRSGD(torch.optim.SGD):
    r"""Gradient Rewiring with SGD (momentum, dampening, Nesterov as :class:`torch.optim.SGD`).

    .. math::
        \theta_{t} = \theta_{t-1} - \eta\, b_t - \eta\, \alpha\,
                     \mathrm{sign}(\theta_{t-1} - \mu)

    with :math:`b_t` SGD's (momentum) direction of the redefined gradient
    :math:`s\,\partial L/\partial w` and :math:`\mu` from :func:`prior_mean`: the same prior as
    :class:`GradR`, at SGD's step size :math:`\eta` (SGD has no bias correction, so the prior
    step is not scaled). This is the paper's Eq. 12 with a plain gradient step (Chen et al.,
    IJCAI 2021, Sec. 3.3, Algorithm 1 before the reference code's switch to Adam).

    Example with numbers: :math:`\theta_0 = 0.3`, gradient 0.5, :math:`\eta` = 0.1,
    :math:`\alpha` = 0.5, no momentum: :math:`\theta_1 = 0.3 - 0.05 - 0.05 = 0.2`.

    Args:
        params: parameters or param groups (a group may set ``alpha`` and ``sparsity``).
        lr: learning rate :math:`\eta` (default 1e-2).
        alpha, sparsity: as in :class:`GradR`.
        momentum, dampening, weight_decay, nesterov: as in :class:`torch.optim.SGD`.

    Raises:
        ValueError: as :class:`GradR`, or SGD's own checks.

    Example:
        >>> from rewire.training.gradr import apply_gradr
        >>> net = torch.nn.Linear(4, 3, bias=False)
        >>> opt = GradRSGD(apply_gradr(net), lr=0.1, alpha=0.1, momentum=0.9)
        >>> net(torch.ones(2, 4)).sum().backward(); opt.step()
    """

    def __init__(self, params: Iterable, lr: float = 1e-2, alpha: float = 0.0,
                 sparsity: float = 0.95, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        _check_prior(alpha, sparsity)
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=nesterov, foreach=False)
        _prior_defaults(self, alpha, sparsity)

    @torch.no_grad()
    def step(self, closure=None):
        """One SGD step, then the prior pull taken at ``theta_{t-1}``. Returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        pulls = []
        for group in self.param_groups:
            _check_prior(group["alpha"], group["sparsity"])
            if group["alpha"] > 0:
                mu = prior_mean(group["alpha"], group["sparsity"])
                pulls += [(theta, -group["lr"] * group["alpha"], torch.sub(theta, mu).sign_())
                          for theta in group["params"] if theta.grad is not None]
        super().step()
        for theta, scale, pull in pulls:
            theta.add_(pull, alpha=scale)
        return loss


def _prior_defaults(optimizer: torch.optim.Optimizer, alpha: float, sparsity: float) -> None:
    """Give every param group without its own ``alpha``/``sparsity`` the defaults; check all,
    and refuse a tensor listed twice (a weight tied between layers would be updated twice per
    step, its prior pull taken twice)."""
    for group in optimizer.param_groups:
        if len({id(p) for p in group["params"]}) != len(group["params"]):
            raise ValueError(f"{type(optimizer).__name__}: a tensor is listed twice in params "
                             f"(a weight tied between layers?); give each tensor once "
                             f"(apply_gradr and hidden_params return a tied theta once), else "
                             f"every step would update it twice")
        group.setdefault("alpha", alpha)
        group.setdefault("sparsity", sparsity)
        _check_prior(group["alpha"], group["sparsity"])


def _check_prior(alpha: float, sparsity: float) -> None:
    if not alpha >= 0.0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if not 0.5 <= sparsity < 1.0:
        raise ValueError(f"sparsity (target p) must be in [0.5, 1), got {sparsity}")
