r"""Gradient Rewiring (GradR): the synapse parametrization and the optimizer.

Chen, Yu, Tian & Huang, "Pruning of Deep Spiking Neural Networks through Gradient
Rewiring", IJCAI 2021 (arXiv 2105.04916), Section 3.

Each synapse has a fixed sign :math:`s` and a hidden parameter :math:`\theta`; the weight is

.. math::  w = s \cdot \mathrm{ReLU}(\theta) \qquad \text{(paper Eq. 5)}

and the synapse is connected iff :math:`\theta > 0`. The gradient is *redefined* so that it
reaches pruned synapses too (paper Eq. 7, no Heaviside factor), which lets them regrow:

.. math::  \frac{\partial L}{\partial \theta} := s \, \frac{\partial L}{\partial w}

A Laplace prior :math:`p(\theta) \propto \exp(-\alpha|\theta - \mu|)` with target sparsity
:math:`p = P(\theta < 0)` gives :math:`\mu = \ln(2(1-p)) / \alpha` (paper Eq. 11) and adds
:math:`\alpha\,\mathrm{sign}(\theta - \mu)` to the gradient.

The sign and the redefined gradient live in :class:`SignedReLU`, a
``torch.nn.utils.parametrize`` parametrization; the prior lives in :class:`GradR`, a
``torch.optim.Adam`` whose step adds the bias-corrected prior pull, exactly as the
reference implementation (``Yanqi-Chen/Gradient-Rewiring``, ``gradrewire.py``) does.
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)


def _recurrent_cell() -> type:
    from norse.torch import LIFRecurrentCell

    return LIFRecurrentCell


#: module type -> the names of its synaptic weight tensors that GradR parametrizes (every
#: synapse the IR will hold: Norse's ``LIFRecurrentCell`` keeps its synapses in two raw
#: ``nn.Parameter`` matrices, not in ``nn.Linear`` modules).
PRUNABLE_WEIGHTS: dict[type, tuple[str, ...]] = {
    **{t: ("weight",) for t in PRUNABLE_TYPES},
    _recurrent_cell(): ("input_weights", "recurrent_weights"),
}


class _SignedReLUFn(torch.autograd.Function):
    """``w = s * relu(theta)`` forward; ``dL/dtheta = s * dL/dw`` backward (GradR Eq. 7)."""

    @staticmethod
    def forward(ctx, theta: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(sign)
        return sign * theta.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_w: torch.Tensor):
        (sign,) = ctx.saved_tensors
        return grad_w * sign, None


class SignedReLU(nn.Module):
    r"""Parametrization ``w = s * relu(theta)`` with GradR's straight-through gradient.

    Register it with :func:`torch.nn.utils.parametrize.register_parametrization`; the stored
    parameter (``module.parametrizations.weight.original``) is then :math:`\theta` and
    ``module.weight`` is :math:`w`. :meth:`right_inverse` maps an initial weight
    :math:`w_0` to :math:`\theta_0 = |w_0|` (reference code, ``state['strength']``).

    Args:
        sign: tensor of +1/-1 with the weight's shape; a zero initial weight gets +1 (the
            reference gives it sign 0, which would leave the synapse dead forever).

    Shapes:
        theta: any shape, equal to ``sign``'s; output: the same shape.

    Source: Chen et al., IJCAI 2021, Eq. 5 (parametrization) and Eq. 7 (gradient).
    """

    def __init__(self, sign: torch.Tensor) -> None:
        super().__init__()
        if not torch.all((sign == 1) | (sign == -1)):
            raise ValueError("sign must contain only +1 and -1")
        self.register_buffer("sign", sign.clone())

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return _SignedReLUFn.apply(theta, self.sign)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.abs()


def fixed_sign(weight: torch.Tensor) -> torch.Tensor:
    """Sign used for GradR: ``sign(w)`` with +1 for zeros. Shape and dtype of ``weight``."""
    return torch.where(weight < 0, -torch.ones_like(weight), torch.ones_like(weight))


def _weight_names(module: nn.Module, types) -> tuple[str, ...]:
    for cls in type(module).__mro__:
        if cls in PRUNABLE_WEIGHTS and issubclass(cls, tuple(types)):
            return PRUNABLE_WEIGHTS[cls]
    return ()


def apply_gradr(model: nn.Module,
                types: tuple[type[nn.Module], ...] = tuple(PRUNABLE_WEIGHTS),
                strict: bool = True) -> list[nn.Parameter]:
    """Parametrize every synaptic weight of ``model`` as ``s * relu(theta)``.

    The weights are those of :data:`PRUNABLE_WEIGHTS` (``Linear``/``Conv`` ``weight``, Norse
    ``LIFRecurrentCell`` ``input_weights`` and ``recurrent_weights``; a recurrent cell without
    autapses keeps its diagonal at 0: the gradient of those entries is masked, as Norse masks
    it). Biases and normalisation layers are left alone (paper Sec. 4: they are not pruned).
    The model is changed in place; calling it twice is an error.

    Args:
        model: a torch module (for example :class:`rewire.training.model.SpikingMLP`, or a
            Norse ``SequentialState``).
        types: module classes whose weights are prunable (default: all of
            :data:`PRUNABLE_WEIGHTS`).
        strict: refuse a model with a weight matrix (a parameter of 2 or more dimensions)
            that GradR would leave dense, so that the budget counts every synapse.

    Returns:
        The hidden parameters :math:`\theta`, one per prunable weight, in module order.

    Raises:
        ValueError: the model has no prunable weight, one is already parametrized, or
            (``strict``) a weight matrix GradR does not know (named, with the fix).
    """
    thetas = []
    for name, module in model.named_modules():
        if "parametrizations" in name.split("."):
            continue
        for pname in _weight_names(module, types):
            if parametrize.is_parametrized(module, pname):
                raise ValueError(f"layer {name!r} is already parametrized")
            sign = fixed_sign(getattr(module, pname).detach())
            parametrize.register_parametrization(module, pname, SignedReLU(sign))
            theta = module.parametrizations[pname].original
            if pname == "recurrent_weights" and not getattr(module, "autapses", True):
                theta.register_hook(lambda g: g.clone().fill_diagonal_(0.0))
            thetas.append(theta)
    if not thetas:
        raise ValueError(f"model has no prunable layer of types {[t.__name__ for t in types]}")
    if strict:
        for pname, param in model.named_parameters():
            if param.dim() >= 2 and ".parametrizations." not in f".{pname}" \
                    and not pname.startswith("parametrizations."):
                raise ValueError(
                    f"parameter {pname} {tuple(param.shape)} is a weight matrix GradR does not "
                    f"know, so it would stay dense and outside the budget; keep synapses in "
                    f"nn.Linear/nn.Conv2d/LIFRecurrentCell, or register the module type in "
                    f"rewire.training.gradr.PRUNABLE_WEIGHTS")
    return thetas


def prunable_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Yield ``(name, module)`` for every module with a weight parametrized by
    :func:`apply_gradr`."""
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module) and any(
                isinstance(plist[0], SignedReLU) for plist in module.parametrizations.values()):
            yield name, module


def remove_gradr(model: nn.Module) -> nn.Module:
    r"""Turn a GradR-trained model back into a plain one, in place: every weight
    parametrized by :func:`apply_gradr` becomes an ordinary parameter holding
    :math:`w = s \cdot \mathrm{ReLU}(\theta)` (GradR Eq. 5), and the parametrization is
    removed (``torch.nn.utils.parametrize.remove_parametrizations`` with
    ``leave_parametrized=True``).

    A disconnected synapse (:math:`\theta \le 0`) is exactly ``0.0`` (never ``-0.0``), a
    connected one keeps its value, so the model computes what it computed before; it pickles
    (``torch.save(model)``), its ``state_dict`` has the plain names (``weight``,
    ``input_weights``, ...) that Norse and other libraries load, and ``rewire.compile`` lowers
    it as before. The tensor objects are kept (an optimizer holding them now holds the
    weights). Other parametrizations of the model are left alone.

    Args:
        model: a model passed through :func:`apply_gradr` (for example by
            :func:`rewire.training.train.train`).

    Returns:
        ``model`` itself.

    Raises:
        ValueError: the model has no GradR weight (nothing to remove).

    Example:
        >>> net = torch.nn.Linear(4, 3, bias=False)
        >>> theta = apply_gradr(net)[0]
        >>> with torch.no_grad():
        ...     theta[0] = -1.0
        >>> remove_gradr(net).weight[0].tolist()
        [0.0, 0.0, 0.0, 0.0]
        >>> parametrize.is_parametrized(net)
        False
    """
    layers = list(prunable_layers(model))
    if not layers:
        raise ValueError("model has no GradR weight to remove (apply_gradr was not called, "
                         "or remove_gradr already ran)")
    for _, module in layers:
        for pname in [n for n, plist in module.parametrizations.items()
                      if isinstance(plist[0], SignedReLU)]:
            if len(module.parametrizations[pname]) != 1:
                raise ValueError(f"{type(module).__name__}.{pname} has other "
                                 f"parametrizations stacked on GradR's; remove them first")
            parametrize.remove_parametrizations(module, pname, leave_parametrized=True)
            with torch.no_grad():
                getattr(module, pname).add_(0.0)  # -0.0 (s = -1, theta <= 0) -> +0.0
    return model


def neuron_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    r"""The GradR :math:`\theta` of each layer of neurons: one list per prunable module.

    Every tensor of a list has the module's neurons on its first axis: a Norse
    ``LIFRecurrentCell``'s ``input_weights`` ``(H, I)`` and ``recurrent_weights`` ``(H, H)``
    both feed its ``H`` neurons, so a neuron's fan-in is its connected entries in both (the
    chip's ``[W | W_rec]`` row).
    """
    return [[plist.original for plist in m.parametrizations.values()
             if isinstance(plist[0], SignedReLU)] for _, m in prunable_layers(model)]


def hidden_params(model: nn.Module) -> list[nn.Parameter]:
    """The hidden :math:`\theta` of every GradR weight, in module order."""
    return [theta for group in neuron_groups(model) for theta in group]


def connectivity(model: nn.Module) -> float:
    """Connected synapses (``theta > 0``) over all prunable synapses, in [0, 1].

    Raises:
        ValueError: the model has no GradR layer.
    """
    thetas = hidden_params(model)
    if not thetas:
        raise ValueError("model has no GradR layer: call apply_gradr first")
    total = sum(t.numel() for t in thetas)
    return sum(int((t > 0).sum()) for t in thetas) / total


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
        ValueError: ``alpha < 0`` or ``sparsity`` outside [0.5, 1), or Adam's own checks.

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
    """Give every param group without its own ``alpha``/``sparsity`` the defaults; check all."""
    for group in optimizer.param_groups:
        group.setdefault("alpha", alpha)
        group.setdefault("sparsity", sparsity)
        _check_prior(group["alpha"], group["sparsity"])


def _check_prior(alpha: float, sparsity: float) -> None:
    if not alpha >= 0.0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if not 0.5 <= sparsity < 1.0:
        raise ValueError(f"sparsity (target p) must be in [0.5, 1), got {sparsity}")
