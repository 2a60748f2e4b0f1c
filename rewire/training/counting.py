r"""Counting connected synapses, fan-in and fan-out of a GradR model, and the projection onto
a budget (the safety net applied once at the end of training).

The counting convention is in :mod:`rewire.training.budget`: a *synapse* is one entry of a
prunable weight tensor, connected iff its :math:`\theta > 0` (Chen et al., IJCAI 2021,
arXiv 2105.04916, Sec. 3: ``w = s relu(theta)``); a row of :math:`\theta` is one
post-synaptic neuron's inputs.

**Tied weights** (one tensor used by several layers, see
:func:`~rewire.training.gradr.apply_gradr`) are counted *as the chip stores them*, once per
layer, by everything the budget reads here (:func:`prunable_synapses`,
:func:`connected_synapses`, fan-in and fan-out, the projection and :func:`keep_strongest`'s
count): the compiled network holds one weight matrix per layer. Training sees the tensor once
(:func:`~rewire.training.gradr.hidden_params`, :func:`~rewire.training.gradr.connectivity`):
one :math:`\theta`, one update per step.

**Identity shortcuts** (a residual block's ``fc(z) + z``, He et al., CVPR 2016, eq. 1) have
no weight tensor, but the chip holds their synapses: the compiler writes each as an identity
skip matrix of ``n`` connected synapses (:func:`rewire.compiler.skips.split_skips`, counted
by :attr:`rewire.ir.compiled_layers.CompiledDense.synapses`). :func:`record_fixed_synapses`
counts them when training lowers the model (:mod:`rewire.training.lowering`), and
:func:`connected_synapses`, :func:`keep_strongest` and :func:`project_to_budget` count them
as always connected, so that training ends inside the budget as the compiler counts it.
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from torch import nn

from rewire.errors import BudgetError

from rewire.training.gradr import hidden_params, neuron_groups, synapse_uses

__all__ = ["record_fixed_synapses", "fixed_synapses", "check_fixed_synapses",
           "prunable_synapses", "connected_synapses", "fan_in_counts", "max_fan_in",
           "max_fan_out", "within_budget", "cap_neurons", "project_to_budget",
           "readout_floor", "keep_strongest"]

#: The model attribute holding its fixed synapses (:func:`record_fixed_synapses`).
FIXED_SYNAPSES = "_rewire_fixed_synapses"


@torch.no_grad()
def record_fixed_synapses(model: nn.Module, network, lower_again: Callable) -> int:
    """Count and record on ``model`` the synapses the chip holds that no weight tensor of
    the model holds: its identity shortcuts (module docs).

    A skip of the lowered ``network`` comes from a shortcut ``Linear`` (its weight) or from
    an identity shortcut (``eye(n)``). The model is lowered again with every weight matrix
    (every parameter of 2 or more dimensions, GradR's :math:`\theta` included) set to 0, on
    a copy: the projections' skips are then all zero and the identity shortcuts' are not, so
    their connected entries are the fixed synapses. Nothing is lowered again without skips.

    Args:
        model: the model training is about to train (not changed but for the record).
        network: the IR :class:`~rewire.ir.network.Network` lowered from it.
        lower_again: ``lower_again(module) -> Network``, the lowering that gave ``network``.

    Returns:
        The fixed synapses (0 without identity shortcuts).
    """
    fixed = 0
    if network.skips:
        probe = copy.deepcopy(model)
        for p in probe.parameters():
            if p.dim() >= 2:
                p.zero_()
        fixed = sum(int(np.count_nonzero(s.weight)) for s in lower_again(probe).skips)
    model.__dict__[FIXED_SYNAPSES] = fixed
    return fixed


def fixed_synapses(model: nn.Module) -> int:
    """The synapses :func:`record_fixed_synapses` recorded on ``model`` (0 if none)."""
    return int(model.__dict__.get(FIXED_SYNAPSES, 0))


def check_fixed_synapses(model: nn.Module, budget) -> None:
    """Refuse a budget (:class:`rewire.training.budget.SynapseBudget`) that the model's
    fixed synapses alone fill.

    Raises:
        BudgetError: ``fixed_synapses(model) >= budget.max_synapses``, naming both and the
            fix.
    """
    fixed = fixed_synapses(model)
    if fixed and fixed >= budget.max_synapses:
        raise BudgetError(f"the model's identity shortcuts hold {fixed} synapses on the chip, "
                          f"and the budget allows {budget.max_synapses} in all "
                          f"({budget.source}): raise the budget above {fixed} or pass the "
                          f"shortcuts through prunable Linear layers")


def prunable_synapses(model: nn.Module) -> int:
    """Synapses of every GradR layer, connected or not (the dense count), as the chip stores
    them (a tied tensor once per layer), see module docs.

    Raises:
        ValueError: the model has no GradR layer (call :func:`apply_gradr` first).
    """
    groups = neuron_groups(model)
    if not groups:
        raise ValueError("model has no GradR layer: call apply_gradr first")
    return sum(t.numel() for g in groups for t in g)


def _fan_out_matrices(model: nn.Module, skip_last: bool) -> list[nn.Parameter]:
    """The :math:`\theta` whose columns are neurons of the chip (all but the first module's
    input matrix, and the last module's when ``skip_last``), each ``(out, in)``; a tied
    tensor once per layer that is fed by chip neurons."""
    groups = neuron_groups(model)
    skip = {(0, 0)} | ({(len(groups) - 1, 0)} if skip_last else set())
    return [t for gi, g in enumerate(groups) for mi, t in enumerate(g) if (gi, mi) not in skip]


def connected_synapses(model: nn.Module) -> int:
    """Number of connected synapses (``theta > 0``) over all GradR layers, as the chip stores
    them (a tied tensor once per layer that uses it), plus the :func:`fixed_synapses` of its
    identity shortcuts."""
    return sum(int((t > 0).sum()) for g in neuron_groups(model) for t in g) + \
        fixed_synapses(model)


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
def readout_floor(model: nn.Module, k: int, revive: float = 1e-2) -> tuple[torch.Tensor, int]:
    r"""A floor under the neurons the loss reads: every output neuron keeps ``k`` inputs.

    The output neurons are the rows of the last GradR layer's first matrix ``(out, in, ...)``
    (:func:`neuron_groups`); its ``k`` largest :math:`\theta` per row are the floor. A floor
    synapse that is disconnected (:math:`\theta \le 0`) is reconnected at
    :math:`\theta = ` ``revive`` (a weak synapse the gradient can grow), so no output neuron is
    left without inputs (the cause of silent readouts in short runs: a silent output layer
    gives the loss :math:`\ln C` and no class). Where the last layer's inputs are the rows of
    the layer before (a dense stack), each hidden neuron a floor synapse reads also keeps its
    strongest input (reconnected the same way), so the floor does not read a dead neuron.

    Args:
        model: a GradR model.
        k: synapses kept per output neuron (``0``: no floor).
        revive: :math:`\theta` given to a reconnected floor synapse.

    Returns:
        ``(mask, revived)``: the floor as one bool tensor over :func:`hidden_params` flattened
        and concatenated (``True`` = must stay connected), and how many synapses it reconnected.

    Raises:
        ValueError: ``k < 0`` or ``revive <= 0``.
    """
    if k < 0 or not revive > 0:
        raise ValueError(f"readout_floor: need k >= 0 and revive > 0, got {k}, {revive}")
    groups = neuron_groups(model)
    thetas = hidden_params(model)
    masks = [torch.zeros_like(t, dtype=torch.bool) for t in thetas]
    index = {id(t): i for i, t in enumerate(thetas)}
    last = groups[-1][0]
    k = min(k, last[0].numel())
    if k == 0:
        return torch.cat([m.flatten() for m in masks]), 0
    rows = last.flatten(1)
    floor = masks[index[id(last)]].view(rows.shape)
    floor.scatter_(1, rows.topk(k, dim=1).indices, True)
    if len(groups) > 1 and last.dim() == 2 and groups[-2][0].shape[0] == last.shape[1]:
        prev = groups[-2][0]
        used = floor.any(0).nonzero().squeeze(1)
        pflat = prev.flatten(1)
        pmask = masks[index[id(prev)]].view(pflat.shape)
        pmask[used, pflat[used].argmax(1)] = True
    revived = 0
    for theta, mask in zip(thetas, masks):
        dead = mask & (theta <= 0)
        revived += int(dead.sum())
        theta.masked_fill_(dead, revive)
    return torch.cat([m.flatten() for m in masks]), revived


@torch.no_grad()
def keep_strongest(model: nn.Module, count: int, protect: torch.Tensor | None = None,
                   rescale: bool = False) -> int:
    r"""Disconnect all but ``count`` synapses, each matrix keeping its share; return how many.

    Matrix :math:`i` of :func:`hidden_params` (``n_i`` synapses of ``N``) keeps its
    :math:`\lfloor \text{count}\, n_i / N \rfloor` largest :math:`\theta` (the first matrix
    also the remainder, so exactly ``count`` places in all), the ``protect`` ones first; its
    other connected synapses get :math:`\theta = 0` (sign kept, free to regrow). A layer-wise
    share, as gradual magnitude pruning prunes every layer to the same sparsity (Zhu & Gupta
    2017, arXiv 1710.01878, Sec. 3), keeps a layer of small initial weights (the readout) from
    losing every synapse to a global ranking.

    Args:
        model: a GradR model.
        count: places for connected synapses in all (``0 <= count``), as the chip counts
            them (a tied tensor's entry takes one place per layer using it; the model's
            :func:`fixed_synapses` take theirs first).
        protect: bool over :func:`hidden_params` flattened and concatenated (as
            :func:`readout_floor` returns); protected synapses are kept first.
        rescale: scale each neuron's kept :math:`\theta` (a row, see :func:`cap_neurons`) so
            that their sum is the sum of its connected :math:`\theta` before the cut: the
            neuron's summed input weight is kept, so a neuron left with a tenth of its inputs
            is not silenced by the cut.

    Raises:
        ValueError: ``count < 0``.
    """
    if count < 0:
        raise ValueError(f"keep_strongest: count must be >= 0, got {count}")
    count = max(count - fixed_synapses(model), 0)
    thetas, uses = hidden_params(model), synapse_uses(model)
    total = sum(t.numel() * u for t, u in zip(thetas, uses))
    shares = [count * t.numel() * u // total for t, u in zip(thetas, uses)]
    shares[0] += count - sum(shares)
    shares = [share // u for share, u in zip(shares, uses)]  # a tied entry costs u synapses
    removed = offset = 0
    for theta, share in zip(thetas, shares):
        flat = theta.view(-1)
        score = flat.clone()
        if protect is not None:
            score[protect[offset:offset + flat.numel()]] = float("inf")
        offset += flat.numel()
        if int((flat > 0).sum()) <= share:
            continue
        keep = torch.zeros_like(flat, dtype=torch.bool)
        keep[score.topk(min(share, flat.numel())).indices] = True
        drop = ~keep & (flat > 0)
        removed += int(drop.sum())
        if rescale:
            rows = theta.flatten(1)
            before = rows.clamp(min=0).sum(1)
            flat.masked_fill_(drop, 0.0)
            after = rows.clamp(min=0).sum(1)
            gain = torch.where(after > 0, before / after.clamp(min=1e-12), torch.ones_like(after))
            rows.mul_(torch.where(rows > 0, gain[:, None], torch.ones_like(rows)))
        else:
            flat.masked_fill_(drop, 0.0)
    return removed


@torch.no_grad()
def project_to_budget(model: nn.Module, budget) -> int:
    r"""Disconnect the weakest synapses until ``model`` fits ``budget`` (a
    :class:`rewire.training.budget.SynapseBudget`); return how many.

    Per neuron, only the ``max_fan_in`` largest :math:`\theta` of its inputs stay
    (:func:`cap_neurons` over each layer of :func:`neuron_groups`), then only the
    ``max_fan_out`` largest of its outputs into each matrix; then, over the whole network,
    only the ``max_synapses`` largest positive :math:`\theta` stay, less the model's
    :func:`fixed_synapses` (ties broken by position,
    so the count is exact; an entry of a tied tensor costs one synapse per layer using it,
    and the largest entries stay while their cost fits). Disconnected synapses get :math:`\theta = 0`, which keeps their
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
    uses = synapse_uses(model)
    places = max(budget.max_synapses - fixed_synapses(model), 0)  # identity shortcuts
    if any(u > 1 for u in uses):  # tied tensors: an entry costs one synapse per layer
        cost = torch.cat([torch.full((t.numel(),), u, dtype=torch.long, device=flat.device)
                          for t, u in zip(thetas, uses)])
        order = flat.argsort(descending=True, stable=True)
        fits = (flat[order] > 0) & (cost[order].cumsum(0) <= places)
        keep = torch.zeros_like(flat, dtype=torch.bool)
        keep[order[fits]] = True
    elif int((flat > 0).sum()) > places:
        keep = torch.zeros_like(flat, dtype=torch.bool)
        keep[flat.topk(places).indices] = True
    else:
        keep = None
    if keep is not None:
        offset = 0
        for theta in thetas:
            n = theta.numel()
            theta.view(-1).masked_fill_(~keep[offset:offset + n] & (theta.view(-1) > 0), 0.0)
            offset += n
    return before - connected_synapses(model)
