r"""Synapse budgets from a hardware profile, the GradR budget controller and the projection.

GradR alone has no hard budget: its sparsity is an outcome of the prior penalty
:math:`\alpha`. rewire adds two things the paper lacks:

1. :class:`BudgetController` (:mod:`rewire.training.controller`) steers :math:`\alpha` during
   training so that the connectivity follows a cubic schedule (Zhu & Gupta 2017, Eq. 1) from
   the initial connectivity down to slightly under the budget by ``ramp`` of the training,
   then holds it there;
2. :func:`project_to_budget` (:mod:`rewire.training.counting`, with the counts) is the
   safety net applied once at the end: it keeps the synapses
   with the largest :math:`\theta` (first per neuron for the fan-in limit, then globally) and
   disconnects the rest (:math:`\theta \leftarrow 0`), so the budget holds for certain.

Counting convention (``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d``): a *synapse* is one entry of a
prunable weight tensor, connected iff its :math:`\theta > 0`. For a convolution that is one
kernel entry, shared by every output position (the chip stores the kernel once per output
channel, so the weight count, not ``weights x positions``, is what the budget constrains). The
*fan-in* of a post-synaptic neuron is the number of connected synapses in its row of
:math:`\theta`: for ``nn.Linear`` (``(out, in)``) the connected inputs of one neuron, for a
convolution (``(out_channels, in_channels, kh, kw)``) the connected entries of one output
channel's kernel, at most ``in_channels * kh * kw`` (``/ groups``); every neuron of that
output channel has this fan-in (fewer at a zero-padded border).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from rewire.errors import BudgetError
from rewire.hw_profiles.profile import HardwareProfile
from rewire.training.controller import BudgetController
from rewire.training.counting import (_fan_out_matrices, cap_neurons, connected_synapses,
                                      fan_in_counts, max_fan_in, max_fan_out, prunable_synapses,
                                      project_to_budget, within_budget)
from rewire.training.gradr import neuron_groups

__all__ = ["SynapseBudget", "make_budget", "model_budget", "BudgetController",
           "prunable_synapses", "connected_synapses", "fan_in_counts", "max_fan_in",
           "max_fan_out", "within_budget", "cap_neurons", "project_to_budget"]

@dataclass(frozen=True)
class SynapseBudget:
    """The synapse budget a training run must end inside.

    Attributes:
        max_synapses: most connected synapses in the whole network (count).
        max_fan_in: most connected synapses into one neuron (count); 0 = no limit.
        total_synapses: prunable synapses of the dense network (count).
        source: which limit binds, in words (e.g. ``"--connectivity 0.1"``).
        max_fan_out: most connected synapses out of one neuron into one weight matrix
            (count; 0 = no limit; Xylo's ``limits.fan_out`` 64). The sources of the first
            weight matrix are input channels, not neurons, so it has no fan-out limit.
        fan_out_skip_last: the last weight matrix feeds the chip's dedicated output neurons
            (``limits.output_neurons > 0``), whose inputs the fan-out limit does not cover
            (as :func:`rewire.compiler.packing.check_neuron_limits` checks it).
        limits: every synapse-count limit that was considered, ``(count, source)`` pairs,
            smallest first; ``max_synapses`` is the first (the binding one).
    """

    max_synapses: int
    max_fan_in: int
    total_synapses: int
    source: str
    max_fan_out: int = 0
    fan_out_skip_last: bool = False
    limits: tuple = ()

    @property
    def connectivity(self) -> float:
        """``max_synapses / total_synapses``: the largest allowed connectivity."""
        return self.max_synapses / self.total_synapses


def make_budget(profile: HardwareProfile, sizes: tuple[int, ...], cores: int | None = None,
                max_synapses: int | None = None, connectivity: float | None = None,
                max_fan_in: int | None = None) -> SynapseBudget:
    """Combine the profile's limits and the user's options into one :class:`SynapseBudget`.

    The synapse budget is the tightest synapse count that every limit allows, the smallest of:
    ``cores * synapses_per_core`` (the cores' synapse memory; ``cores`` defaults to the whole
    chip), ``max_synapses``, ``ceil(connectivity * total)``, the fan-in capacity
    ``sum over layers of neurons * min(fan_in, inputs)`` and the fan-out capacity (the same
    over source neurons, for every weight matrix but the first). The fan-in budget is the
    smaller of the profile's ``fan_in`` and ``max_fan_in`` (0 = none); the fan-out budget is
    the profile's ``fan_out``.

    Args:
        profile: the target chip.
        sizes: layer sizes of the fully connected network, input first.
        cores: cores allotted to the model (default: all cores of the chip).
        max_synapses: an explicit synapse budget.
        connectivity: an explicit connectivity budget in (0, 1].
        max_fan_in: an explicit per-neuron fan-in budget.

    Raises:
        BudgetError: an option is out of range, the neurons do not fit the allotted cores, or
            the budget leaves an output neuron without any synapse.

    Example (a 4-core chip with fan-in 32: the fan-in, not the synapse memory, binds):
        >>> from rewire.hw_profiles.profile import load_profile
        >>> b = make_budget(load_profile("loihi2"), (784, 128, 10), connectivity=0.2,
        ...                 max_fan_in=32)
        >>> b.max_synapses, b.source  # 128 * 32 + 10 * 32
        (4416, '--max-fan-in 32 x 138 neurons')
    """
    groups = [[(b, a)] for a, b in zip(sizes[:-1], sizes[1:])]
    return _combine(groups, sizes[-1], sum(sizes[1:]), profile, cores, max_synapses,
                    connectivity, max_fan_in)


def model_budget(model: nn.Module, profile: HardwareProfile | None = None,
                 cores: int | None = None, max_synapses: int | None = None,
                 connectivity: float | None = None,
                 max_fan_in: int | None = None) -> SynapseBudget:
    """:func:`make_budget` for any GradR model (linear, convolutional, recurrent layers).

    The dense synapse count is :func:`prunable_synapses` (kernel entries for convolutions,
    see the module's counting convention); the output neurons are the rows of the last GradR
    layer. With a ``profile`` its ``cores * synapses_per_core``, ``fan_in`` and ``fan_out``
    limits apply too; the neurons-per-core check is left to the core mapping, since a
    convolution's neuron count depends on the input size.

    Args:
        model: a model already passed through :func:`rewire.training.gradr.apply_gradr`.
        profile: the target chip, or ``None`` for a budget from the explicit options only.
        cores, max_synapses, connectivity, max_fan_in: as in :func:`make_budget`.

    Raises:
        BudgetError: as :func:`make_budget`; also when no option and no profile is given, or
            the profile has a fan-out limit and a convolution feeds from chip neurons (the
            fan-out of a shared kernel is not steered).
        ValueError: the model has no GradR layer.

    Example:
        >>> from rewire.training.gradr import apply_gradr
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
        >>> _ = apply_gradr(net)
        >>> model_budget(net, connectivity=0.1).max_synapses  # ceil(0.1 * (36 + 27040))
        2708
    """
    prunable_synapses(model)  # refuses a model without GradR layers
    if profile is None and max_synapses is None and connectivity is None:
        raise BudgetError("give a profile, max_synapses or connectivity for the budget")
    groups = neuron_groups(model)
    if profile is not None and profile.limits.fan_out:
        for theta in _fan_out_matrices(model, profile.limits.output_neurons > 0):
            if theta.dim() != 2:
                raise BudgetError(
                    f"profile {profile.name!r} limits fan-out (limits.fan_out = "
                    f"{profile.limits.fan_out}) but a convolution {tuple(theta.shape)} is fed "
                    f"by chip neurons; rewire steers fan-out for dense layers only: use "
                    f"dense layers after the first, or a profile without limits.fan_out")
    shapes = [[(t.shape[0], t[0].numel()) for t in g] for g in groups]
    return _combine(shapes, groups[-1][0].shape[0], None, profile, cores, max_synapses,
                    connectivity, max_fan_in)


def _fan_capacity(groups: list[list[tuple[int, int]]], fan_in: int, fan_out: int,
                  skip_last: bool) -> tuple[int, int, int]:
    """Most synapses that ``fan_in`` alone, ``fan_out`` alone and both together allow.

    ``groups``: per layer of neurons, the ``(neurons, inputs)`` of each of its matrices; the
    first matrix of the first layer (input channels) and, with ``skip_last``, the last
    layer's matrices have no fan-out limit. Each figure is an upper bound on the connected
    synapses (exact for one limit alone); 0 = no limit = the dense count.
    """
    cap_in = cap_out = cap_both = 0
    for gi, group in enumerate(groups):
        rows = group[0][0]
        dense = sum(r * e for r, e in group)
        by_in = rows * min(fan_in, sum(e for _, e in group)) if fan_in else dense
        by_out = 0
        for mi, (r, e) in enumerate(group):
            free = (gi == 0 and mi == 0) or (skip_last and gi == len(groups) - 1 and mi == 0)
            by_out += r * e if free or not fan_out else e * min(fan_out, r)
        cap_in, cap_out = cap_in + by_in, cap_out + by_out
        cap_both += min(dense, by_in, by_out)
    return cap_in, cap_out, cap_both


def _combine(groups: list[list[tuple[int, int]]], n_out: int, neurons: int | None,
             profile: HardwareProfile | None, cores: int | None, max_synapses: int | None,
             connectivity: float | None, max_fan_in: int | None) -> SynapseBudget:
    """The smallest of the profile's and the user's limits (see :func:`make_budget`)."""
    total = sum(r * e for g in groups for r, e in g)
    candidates = []
    profile_fan_in = profile_fan_out = 0
    skip_last = False
    if profile is not None:
        lim = profile.limits
        profile_fan_in, profile_fan_out = lim.fan_in, lim.fan_out
        skip_last = lim.output_neurons > 0
        if cores is None:
            cores = lim.cores
        if not 1 <= cores <= lim.cores:
            raise BudgetError(f"cores must be in [1, {lim.cores}] for profile "
                              f"{profile.name!r}, got {cores}")
        if neurons is not None and neurons > profile.neuron_capacity(cores):
            raise BudgetError(f"the network has {neurons} neurons but {cores} core(s) of "
                              f"{profile.name!r} hold {profile.neuron_capacity(cores)} "
                              f"(limits.neurons_per_core = {lim.neurons_per_core}); raise "
                              f"cores or shrink the hidden layers")
        candidates.append((profile.synapse_capacity(cores),  # per-core figures, memory bits
                           f"{cores} core(s) x limits.synapses_per_core "
                           f"{lim.synapses_per_core}"))
    if max_synapses is not None:
        if max_synapses < 1:
            raise BudgetError(f"max_synapses must be >= 1, got {max_synapses}")
        candidates.append((max_synapses, f"--max-synapses {max_synapses}"))
    if connectivity is not None:
        if not 0.0 < connectivity <= 1.0:
            raise BudgetError(f"connectivity must be in (0, 1], got {connectivity}")
        candidates.append((math.ceil(connectivity * total), f"--connectivity {connectivity}"))
    if max_fan_in is not None and max_fan_in < 1:
        raise BudgetError(f"max_fan_in must be >= 1, got {max_fan_in}")
    fan_in = min([f for f in (profile_fan_in, max_fan_in or 0) if f > 0], default=0)
    cap_in, cap_out, cap_both = _fan_capacity(groups, fan_in, profile_fan_out, skip_last)
    rows = sum(g[0][0] for g in groups)
    if fan_in and cap_in < total:
        name = (f"limits.fan_in {fan_in}" if fan_in == profile_fan_in
                else f"--max-fan-in {fan_in}")
        candidates.append((cap_in, f"{name} x {rows} neurons"))
    if profile_fan_out and cap_out < total:
        candidates.append((cap_out, f"limits.fan_out {profile_fan_out} per source neuron"))
    if fan_in and profile_fan_out and cap_both < min(cap_in, cap_out):
        candidates.append((cap_both, f"fan-in {fan_in} and limits.fan_out {profile_fan_out} "
                                     f"together"))
    candidates.append((total, "the dense network"))
    candidates.sort(key=lambda c: c[0])
    budget, source = candidates[0]
    if budget < n_out:
        raise BudgetError(f"a budget of {budget} synapses ({source}) cannot give each of the "
                          f"{n_out} output neurons a synapse; allow at least {n_out}")
    return SynapseBudget(max_synapses=budget, max_fan_in=fan_in, total_synapses=total,
                         source=source, max_fan_out=profile_fan_out,
                         fan_out_skip_last=skip_last, limits=tuple(candidates))
