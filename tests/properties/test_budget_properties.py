"""Properties of synapse budgets: how they are combined, the projection that enforces them,
the controller that steers GradR towards them, and that training and compilation never end
outside them."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, strategies as st
from torch import nn

from rewire import compile as compile_network
from rewire.training.budget import (BudgetController, BudgetError, SynapseBudget,
                                    cap_neurons, connected_synapses, make_budget, max_fan_in,
                                    project_to_budget, within_budget)
from rewire.training.data import Split
from rewire.training.gradr import GradR, apply_gradr, hidden_params
from rewire.training.model import SpikingMLP
from rewire.training.train import TrainConfig, train

from conftest import examples

sizes_st = st.lists(st.integers(1, 40), min_size=2, max_size=4).map(tuple)
maybe = st.none() | st.integers(-3, 3000)


@given(sizes=sizes_st, cores=st.none() | st.integers(-2, 200), max_synapses=maybe,
       conn=st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.floats(0, 1),
       fan=st.none() | st.integers(-2, 50))
def test_budget_is_the_smallest_limit_or_refused(loihi2, sizes, cores, max_synapses, conn,
                                                 fan):
    """Any combination of options either raises :class:`BudgetError` (nothing else) or gives
    a budget no larger than the dense network, ``--max-synapses`` and
    ``ceil(connectivity * total)`` and the fan-in capacity (neurons x fan-in), equal to the
    smallest of them (the chip is not binding for these small networks), with room for every output neuron; the fan-in budget is the
    smallest positive fan-in limit (0 = none)."""
    total = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    try:
        b = make_budget(loihi2, sizes, cores=cores, max_synapses=max_synapses,
                        connectivity=conn, max_fan_in=fan)
    except BudgetError as exc:
        assert str(exc)
        return
    fan_in = min([f for f in (loihi2.limits.fan_in, fan or 0) if f > 0], default=0)
    by_fan_in = sum(b * min(fan_in, a) for a, b in zip(sizes[:-1], sizes[1:])) if fan_in \
        else total
    limits = [total, by_fan_in] + ([max_synapses] if max_synapses is not None else []) \
        + ([math.ceil(conn * total)] if conn is not None else [])
    assert b.max_synapses == min(limits)
    assert b.limits[0] == (b.max_synapses, b.source)
    assert sizes[-1] <= b.max_synapses <= total == b.total_synapses
    assert 0 < b.connectivity <= 1
    assert b.max_fan_in == min([f for f in (loihi2.limits.fan_in, fan or 0) if f > 0],
                               default=0)


class _ConvNet(nn.Module):
    def __init__(self, c, k, n):
        super().__init__()
        self.conv = nn.Conv2d(1, c, k, bias=False)
        self.fc = nn.Linear(c, n, bias=False)


def _gradr_model(kind, seed, a, b, c):
    torch.manual_seed(seed)
    model = SpikingMLP((a, b, c), steps=2) if kind == "mlp" else _ConvNet(b, 1 + a % 3, c)
    apply_gradr(model)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # some synapses already pruned, some exactly at zero
        for t in hidden_params(model):
            t.sub_(torch.rand(t.shape, generator=gen) * t.abs().max() * 0.6)
            t.mul_(torch.rand(t.shape, generator=gen) > 0.1)
    return model


models = st.builds(_gradr_model, st.sampled_from(["mlp", "conv"]), st.integers(0, 10_000),
                   st.integers(1, 20), st.integers(1, 20), st.integers(1, 8))


@given(model=models, frac=st.floats(0.0, 1.0), fan=st.integers(0, 10))
def test_projection_keeps_the_strongest_and_is_idempotent(model, frac, fan):
    """Projection only ever sets positive ``theta`` of the weakest synapses to exactly 0
    (signs, pruned and kept synapses untouched, so they can regrow); every kept ``theta`` is
    at least every removed one (per neuron under a fan-in limit, else globally); the result
    is within budget, and projecting again removes nothing."""
    thetas0 = [t.detach().clone() for t in hidden_params(model)]
    signs0 = [m.parametrizations.weight[0].sign.clone()
              for m in model.modules() if hasattr(m, "parametrizations")]
    total = sum(t.numel() for t in thetas0)
    budget = SynapseBudget(max(1, int(frac * total)), fan, total, "test")
    removed = project_to_budget(model, budget)
    assert within_budget(model, budget)
    kept_min, removed_max = math.inf, -math.inf
    for t0, t in zip(thetas0, hidden_params(model)):
        t = t.detach()
        changed = t != t0
        assert torch.all(t0[changed] > 0) and torch.all(t[changed] == 0)
        assert int(changed.sum()) <= removed
        if fan == 0 and changed.any():
            removed_max = max(removed_max, float(t0[changed].max()))
        if fan == 0 and (t > 0).any():
            kept_min = min(kept_min, float(t[t > 0].min()))
        if fan > 0:
            rows0, rows = t0.flatten(1), t.flatten(1)
            for r0, r in zip(rows0, rows):
                gone = r0[(r != r0)]
                if len(gone) and (r > 0).any():
                    assert float(r[r > 0].min()) >= float(gone.max())
    assert kept_min >= removed_max
    assert sum(int((t0 > 0).sum()) for t0 in thetas0) - removed == connected_synapses(model)
    signs = [m.parametrizations.weight[0].sign for m in model.modules()
             if hasattr(m, "parametrizations")]
    assert all(torch.equal(a, b) for a, b in zip(signs, signs0))
    assert project_to_budget(model, budget) == 0


@given(seed=st.integers(0, 1000), conn_lo=st.floats(0.05, 0.9), gap=st.floats(0.01, 0.5),
       steps=st.integers(1, 30))
def test_controller_alpha_bounded_and_monotone_in_connectivity(seed, conn_lo, gap, steps):
    """The budget controller's ``alpha`` always stays in ``[alpha_min, alpha_max]`` and is
    monotone in the measured connectivity: a run that stays more connected gets an ``alpha``
    at least as large, step by step (too many connections pull harder)."""
    budget = SynapseBudget(20, 0, 100, "test")
    alphas = []
    for conn in (conn_lo, min(1.0, conn_lo + gap)):
        theta = nn.Parameter(torch.full((100,), -1.0))
        with torch.no_grad():
            theta[:round(conn * 100)] = 1.0
        opt = GradR([theta], lr=1e-3, alpha=0.1)
        ctl = BudgetController(opt, _FixedTheta(theta), budget, total_steps=40)
        ctl.start = 1.0
        alphas.append([ctl.step() for _ in range(steps)])
    for lo, hi in zip(*alphas):
        assert 1e-3 <= lo <= hi <= 2.0


class _FixedTheta(nn.Module):
    """A stand-in model whose only GradR layer has the given ``theta`` (connectivity fixed)."""

    def __init__(self, theta):
        super().__init__()
        self.fc = nn.Linear(theta.numel(), 1, bias=False)
        apply_gradr(self.fc)
        with torch.no_grad():
            self.fc.parametrizations.weight.original.copy_(theta.view(1, -1))


def _tiny_split(seed, n_in, classes, n=48):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 5, (n, n_in), generator=gen).float() / 4
    y = torch.randint(0, classes, (n,), generator=gen)
    return Split("tiny", x[:32], y[:32], x[32:], y[32:], max_value=4, num_classes=classes)


@examples(5)
@given(seed=st.integers(0, 1000), hidden=st.integers(4, 16), frac=st.floats(0.05, 0.6),
       fan=st.integers(0, 6))
def test_training_then_compiling_never_exceeds_the_budget(loihi2, seed, hidden, frac, fan):
    """After GradR training (any seed, any feasible budget) the model is within budget, and
    the compiled chip network has no more synapses and no larger fan-in than the budget
    allows (quantization never adds a synapse)."""
    sizes = (6, hidden, 3)
    split = _tiny_split(seed, 6, 3)
    total = 6 * hidden + hidden * 3
    budget = SynapseBudget(max(3, int(frac * total)), fan, total, "test")
    torch.manual_seed(seed)
    model = SpikingMLP(sizes, steps=4)
    with torch.no_grad():
        for lin in model.linears:
            lin.weight.mul_(6.0)
    result = train(model, split, budget, TrainConfig(epochs=2, batch_size=16, lr=5e-3,
                                                     alpha=0.3, seed=seed, progress=False))
    assert within_budget(model, budget)
    assert result.synapses == connected_synapses(model) <= budget.max_synapses
    if fan:
        assert max_fan_in(model) <= fan
    try:
        net = compile_network(model, loihi2, split.max_value,
                              calibration=split.x_train.numpy())
    except ValueError as exc:  # a layer pruned to nothing is refused, never exported
        assert "every synapse is pruned" in str(exc)
        return
    assert net.synapses <= budget.max_synapses
    if fan:
        assert max(layer.max_fan_in for layer in net.layers) <= fan
    assert all(np.count_nonzero(l.weight_int) <= np.count_nonzero(l.weight) for l in net.layers)



@given(seed=st.integers(0, 10_000), rows=st.integers(1, 12), cols=st.lists(
    st.integers(1, 15), min_size=1, max_size=3), k=st.integers(0, 20), dim=st.sampled_from([0, 1]))
def test_cap_neurons_holds_every_neuron_to_k_and_keeps_the_strongest(seed, rows, cols, k, dim):
    """After :func:`cap_neurons` no neuron (row over all matrices, or column of one matrix)
    has more than ``k`` connected synapses; a neuron within ``k`` is untouched; every removed
    theta is at most every kept positive theta of its neuron; removed ones become 0."""
    gen = torch.Generator().manual_seed(seed)
    if dim == 1:
        cols = cols[:1]
    mats = [torch.randn(rows, c, generator=gen) for c in cols]
    before = [m.clone() for m in mats]
    removed = cap_neurons(mats, k, dim)
    joined = torch.cat(mats, 1) if dim == 0 else mats[0].t()
    joined0 = torch.cat(before, 1) if dim == 0 else before[0].t()
    assert ((joined > 0).sum(1) <= k).all()
    assert removed == int((joined0 > 0).sum() - (joined > 0).sum())
    for r, r0 in zip(joined, joined0):
        gone = r0[(r0 > 0) & (r == 0)]
        if int((r0 > 0).sum()) <= k:
            assert torch.equal(r, r0)
        elif len(gone) and (r > 0).any():
            assert float(gone.max()) <= float(r[r > 0].min())
        assert torch.equal(r[r0 <= 0], r0[r0 <= 0])
