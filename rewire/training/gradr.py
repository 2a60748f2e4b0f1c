r"""Gradient Rewiring (GradR): the synapse parametrization (the optimizer is in
:mod:`rewire.training.gradr_optim`; :class:`GradR` and :class:`GradRSGD` are importable here).

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

from typing import Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

from rewire.training.gradr_optim import GradR, GradRSGD, prior_mean

__all__ = ["PRUNABLE_TYPES", "PRUNABLE_WEIGHTS", "SignedReLU", "apply_gradr", "remove_gradr",
           "prunable_layers", "neuron_groups", "hidden_params", "synapse_uses", "connectivity",
           "GradR", "GradRSGD", "prior_mean"]

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

    **Tied weights** (one ``nn.Parameter`` held by several layers, e.g.
    ``fc2.weight = fc1.weight``) stay tied: every layer gets the same parametrization, so the
    shared tensor has one :math:`\theta` and one sign (read from the weight before any
    layer is parametrized); its gradient sums every use and the optimizer updates it once
    per step. It is returned once.

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
        The hidden parameters :math:`\theta`, one per prunable weight tensor (a tied one
        once), in module order.

    Raises:
        ValueError: the model has no prunable weight, one is already parametrized, or
            (``strict``) a weight matrix GradR does not know (named, with the fix).
    """
    thetas = []
    tied: dict[int, SignedReLU] = {}  # id of a weight tensor -> the parametrization it got
    masked: set[int] = set()
    for name, module in model.named_modules():
        if "parametrizations" in name.split("."):
            continue
        for pname in _weight_names(module, types):
            if parametrize.is_parametrized(module, pname):
                raise ValueError(f"layer {name!r} is already parametrized")
            weight = getattr(module, pname)
            first = id(weight) not in tied
            if first:  # the sign is read before the parametrization turns w into |w|
                tied[id(weight)] = SignedReLU(fixed_sign(weight.detach()))
            # a tensor shared by several layers gets the same parametrization in each: one
            # theta, one sign, one gradient summing every use
            parametrize.register_parametrization(module, pname, tied[id(weight)])
            theta = module.parametrizations[pname].original
            if pname == "recurrent_weights" and not getattr(module, "autapses", True) and \
                    id(theta) not in masked:
                masked.add(id(theta))
                theta.register_hook(lambda g: g.clone().fill_diagonal_(0.0))
            if first:
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
    uses = [(module, pname) for _, module in layers
            for pname, plist in module.parametrizations.items()
            if isinstance(plist[0], SignedReLU)]
    count: dict[int, int] = {}
    for module, pname in uses:
        theta = module.parametrizations[pname].original
        count[id(theta)] = count.get(id(theta), 0) + 1
    tied: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(theta) -> (theta, w)
    for module, pname in uses:
        if len(module.parametrizations[pname]) != 1:
            raise ValueError(f"{type(module).__name__}.{pname} has other "
                             f"parametrizations stacked on GradR's; remove them first")
        theta = module.parametrizations[pname].original
        if count[id(theta)] == 1:
            parametrize.remove_parametrizations(module, pname, leave_parametrized=True)
            with torch.no_grad():
                getattr(module, pname).add_(0.0)  # -0.0 (s = -1, theta <= 0) -> +0.0
            continue
        # a tied tensor: w once, every layer back on the one tensor, then theta <- w
        if id(theta) not in tied:
            with torch.no_grad():
                tied[id(theta)] = (theta, getattr(module, pname).detach().clone())
        parametrize.remove_parametrizations(module, pname, leave_parametrized=False)
    with torch.no_grad():
        for theta, w in tied.values():
            theta.copy_(w).add_(0.0)
    return model


def neuron_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    r"""The GradR :math:`\theta` of each layer of neurons: one list per prunable module.

    Every tensor of a list has the module's neurons on its first axis: a Norse
    ``LIFRecurrentCell``'s ``input_weights`` ``(H, I)`` and ``recurrent_weights`` ``(H, H)``
    both feed its ``H`` neurons, so a neuron's fan-in is its connected entries in both (the
    chip's ``[W | W_rec]`` row). A tied tensor is in the list of every layer that uses it
    (the chip stores it once per layer).
    """
    return [[plist.original for plist in m.parametrizations.values()
             if isinstance(plist[0], SignedReLU)] for _, m in prunable_layers(model)]


def hidden_params(model: nn.Module) -> list[nn.Parameter]:
    """The hidden :math:`\theta` of every GradR weight tensor, in module order; a tensor
    tied between layers once (what training updates)."""
    return list({id(t): t for group in neuron_groups(model) for t in group}.values())


def synapse_uses(model: nn.Module) -> list[int]:
    """For each tensor of :func:`hidden_params`, how many layers use it: 1, or the number
    of layers a tied tensor is stored in on the chip."""
    count: dict[int, int] = {}
    for group in neuron_groups(model):
        for t in group:
            count[id(t)] = count.get(id(t), 0) + 1
    return [count[id(t)] for t in hidden_params(model)]


def connectivity(model: nn.Module) -> float:
    """Connected synapses (``theta > 0``) over all prunable synapses, in [0, 1], counted as
    training sees them: a tied tensor once (the budget's counts,
    :func:`rewire.training.counting.connected_synapses`, count it once per layer).

    Raises:
        ValueError: the model has no GradR layer.
    """
    thetas = hidden_params(model)
    if not thetas:
        raise ValueError("model has no GradR layer: call apply_gradr first")
    total = sum(t.numel() for t in thetas)
    return sum(int((t > 0).sum()) for t in thetas) / total
