r"""Counting connected synapses, fan-in and fan-out of a GradR model, and the projection onto
a budget (the safety net applied once at the end of training).

The counting convention is in :mod:`rewire.training.budget`: a *synapse* is one entry of a
prunable weight tensor, connected iff its :math:`\theta > 0` (Chen et al., IJCAI 2021,
arXiv 2105.04916, Sec. 3: ``w = s relu(theta)``); a row of :math:`\theta` is one
post-synaptic neuron's inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from rewire.training.gradr import hidden_params, neuron_groups

__all__ = ["prunable_synapses", "connected_synapses", "fan_in_counts", "max_fan_in",
           "max_fan_out", "within_budget", "cap_neurons", "project_to_budget"]


def prunable_synapses(model: nn.Module) -> int:
    """Synapses of every GradR layer, connected or not (the dense count), see module docs.

    Raises:
        ValueError: the model has no GradR layer (call :func:`apply_gradr` first).
    """
    thetas = hidden_params(model)
    if not thetas:
        raise ValueError("model has no GradR layer: call apply_gradr first")
    return sum(t.numel() for t in thetas)


def _fan_out_matrices(model: nn.Module, skip_last: bool) -> list[nn.Parameter]:
    """The :math:`\theta` whose columns are neurons of the chip (all but the first module's
    input matrix, and the last module's when ``skip_last``), each ``(out, in)``."""
    groups = neuron_groups(model)
    mats = [t for g in groups for t in g]
    skip = {id(groups[0][0])}
    if skip_last:
        skip.add(id(groups[-1][0]))
    return [t for t in mats if id(t) not in skip]


def connected_synapses(model: nn.Module) -> int:
    """Number of connected synapses (``theta > 0``) over all GradR layers."""
    return sum(int((t > 0).sum()) for t in hidden_params(model))


def fan_in_counts(model: nn.Module) -> list[torch.Tensor]:
    """Connected synapses into each neuron: int64 ``(neurons,)`` per layer of
    :func:`neuron_groups` (a recurrent cell's input and recurrent rows summed)."""
    return [sum((t > 0).flatten(1).sum(1) for t in group) for group in neuron_groups(model)]


def max_fan_in(model: nn.Module) -> int:
    """Largest number of connected synapses into one neuron (see :func:`fan_in_counts`).

    For a convolution a row is one output channel's kernel (``in_channels * kh * kw`` entries),
    see the module's counting convention.
    """
    return max(int(c.max()) for c in fan_in_counts(model))


def max_fan_out(model: nn.Module, skip_last: bool = False) -> int:
    """Largest number of connected synapses out of one neuron into one weight matrix (the
    columns of every matrix fed by chip neurons, see
    :attr:`rewire.training.budget.SynapseBudget.max_fan_out`);
    0 when no matrix is fed by chip neurons."""
    return max([int((t > 0).sum(0).max()) for t in _fan_out_matrices(model, skip_last)
                if t.dim() == 2], default=0)


def within_budget(model: nn.Module, budget) -> bool:
    """True when the model's connected synapses, fan-in and fan-out respect ``budget`` (a
    :class:`rewire.training.budget.SynapseBudget`)."""
    ok = connected_synapses(model) <= budget.max_synapses
    ok = ok and (budget.max_fan_in == 0 or max_fan_in(model) <= budget.max_fan_in)
    return ok and (budget.max_fan_out == 0
                   or max_fan_out(model, budget.fan_out_skip_last) <= budget.max_fan_out)


@torch.no_grad()
def cap_neurons(mats: list[torch.Tensor], k: int, dim: int = 0) -> int:
    r"""Keep at most ``k`` connected synapses per neuron; return how many were disconnected.

    The neurons lie on axis ``dim`` of every matrix of ``mats`` (``0``: post-synaptic neurons,
    the fan-in of rows, e.g. a recurrent cell's ``[W | W_rec]``; ``1``: pre-synaptic neurons,
    the fan-out of columns of 2-D matrices). Over a neuron's entries in all of ``mats`` the
    ``k`` largest :math:`\theta` stay; every other positive one is set to 0 (disconnected,
    sign kept, free to regrow). Neurons already within ``k`` are left untouched.

    Raises:
        ValueError: ``k < 0`` or ``dim`` not 0 or 1 (1 only for 2-D matrices).
    """
    if k < 0 or dim not in (0, 1) or (dim == 1 and any(m.dim() != 2 for m in mats)):
        raise ValueError(f"cap_neurons: need k >= 0 and dim 0, or dim 1 for 2-D matrices; "
                         f"got k={k}, dim={dim}")
    views = [m.flatten(1) if dim == 0 else m.t() for m in mats]
    counts = sum((v > 0).sum(1) for v in views)
    over = (counts > k).nonzero().squeeze(1)
    if over.numel() == 0:
        return 0
    sub = torch.cat([v[over] for v in views], 1)
    keep = torch.zeros_like(sub, dtype=torch.bool)
    keep.scatter_(1, sub.topk(k, dim=1).indices, True)
    drop = ~keep & (sub > 0)
    offset = 0
    for v in views:
        n = v.shape[1]
        block = v[over]
        block[drop[:, offset:offset + n]] = 0.0
        v[over] = block
        offset += n
    return int(drop.sum())


@torch.no_grad()
def project_to_budget(model: nn.Module, budget) -> int:
    r"""Disconnect the weakest synapses until ``model`` fits ``budget`` (a
    :class:`rewire.training.budget.SynapseBudget`); return how many.

    Per neuron, only the ``max_fan_in`` largest :math:`\theta` of its inputs stay
    (:func:`cap_neurons` over each layer of :func:`neuron_groups`), then only the
    ``max_fan_out`` largest of its outputs into each matrix; then, over the whole network,
    only the ``max_synapses`` largest positive :math:`\theta` stay (ties broken by position,
    so the count is exact). Disconnected synapses get :math:`\theta = 0`, which keeps their
    sign and lets GradR regrow them if training continues.

    Shapes:
        every hidden :math:`\theta` is ``(out, in, ...)``: rows are the post-synaptic neurons
        (output channels of a convolution, whose row is the flattened kernel).
    """
    thetas = hidden_params(model)
    before = connected_synapses(model)
    if budget.max_fan_in > 0:
        for group in neuron_groups(model):
            cap_neurons(group, budget.max_fan_in, 0)
    if budget.max_fan_out > 0:
        for theta in _fan_out_matrices(model, budget.fan_out_skip_last):
            cap_neurons([theta], budget.max_fan_out, 1)
    flat = torch.cat([t.detach().flatten() for t in thetas])
    if int((flat > 0).sum()) > budget.max_synapses:
        keep = torch.zeros_like(flat, dtype=torch.bool)
        keep[flat.topk(budget.max_synapses).indices] = True
        offset = 0
        for theta in thetas:
            n = theta.numel()
            theta.view(-1).masked_fill_(~keep[offset:offset + n] & (theta.view(-1) > 0), 0.0)
            offset += n
    return before - connected_synapses(model)
