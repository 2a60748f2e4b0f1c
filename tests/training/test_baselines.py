"""Baselines: Deep R keeps exactly K active synapses and regrows, magnitude pruning follows
Zhu & Gupta's cubic schedule and ends at exactly the target connectivity."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from rewire.training.baselines import DeepR, MagnitudePruner, cubic_sparsity, init_deep_r
from rewire.training.gradr import connectivity


def _net(seed, n_in=12, n_hid=20, n_out=4):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, n_hid), nn.Tanh(), nn.Linear(n_hid, n_out))


def _loss(net, gen):
    x = torch.randn(16, net[0].in_features, generator=gen)
    return nn.functional.cross_entropy(net(x), torch.randint(0, net[2].out_features, (16,),
                                                             generator=gen))


@settings(max_examples=20)  # training steps per example: keep the file fast
@given(seed=st.integers(0, 1000), conn=st.floats(0.02, 0.9), steps=st.integers(1, 8),
       lr=st.floats(1e-3, 0.3))
def test_deep_r_keeps_exactly_k_active(seed, conn, steps, lr):
    """Property: after any number of steps the number of active synapses is exactly
    K = round(c * total); biases are untouched by the rewiring."""
    net = _net(seed)
    gen = torch.Generator().manual_seed(seed)
    thetas = init_deep_r(net, conn, gen)
    total = sum(t.numel() for t in thetas)
    k = max(1, round(conn * total))
    opt = DeepR([{"params": thetas}, {"params": [net[0].bias, net[2].bias], "rewire": False}],
                lr=lr, alpha=1e-3, temperature=1e-6, generator=gen)
    for _ in range(steps):
        opt.zero_grad()
        _loss(net, gen).backward()
        opt.step()
        assert sum(int((t > 0).sum()) for t in thetas) == k
    assert connectivity(net) == pytest.approx(k / total)


def test_deep_r_update_and_rewiring_by_hand():
    """One step with zero gradient and no noise: active theta drop by lr*alpha; the one that
    crosses 0 goes dormant and exactly one dormant synapse is re-activated at 0+ (Bellec et
    al. 2018, Algorithm 1), with fresh Adam moments; dormant theta do not move."""
    theta = nn.Parameter(torch.tensor([0.5, 0.05, -0.3, -0.2, -0.1]))
    opt = DeepR([theta], lr=0.1, alpha=1.0, temperature=0.0,
                generator=torch.Generator().manual_seed(0))
    theta.grad = torch.zeros(5)
    opt.step()
    t = theta.detach()
    assert t[0] == pytest.approx(0.4)  # 0.5 - lr * alpha
    assert int((t > 0).sum()) == 2  # 0.05 - 0.1 < 0 went dormant, one dormant woke up
    woke = [i for i in (2, 3, 4) if t[i] > 0]
    assert len(woke) == 1 and t[woke[0]] == torch.finfo(torch.float32).tiny
    assert t[1] == pytest.approx(-0.05)
    asleep = [i for i in (2, 3, 4) if i != woke[0]]
    assert torch.equal(t[asleep], torch.tensor([-0.3, -0.2, -0.1])[[i - 2 for i in asleep]])
    assert opt.state[theta]["exp_avg"][woke[0]] == 0


def test_reactivated_synapses_learn():
    """Unlike the reference repo's hard mode, a re-activated synapse gets gradient updates:
    a task that needs a currently dormant input makes Deep R grow it."""
    torch.manual_seed(0)
    net = nn.Linear(4, 1, bias=False)
    gen = torch.Generator().manual_seed(1)
    (theta,) = init_deep_r(net, 0.5, gen)
    with torch.no_grad():  # inputs 0, 1 active and useless; inputs 2, 3 dormant
        theta.copy_(torch.tensor([[0.01, 0.01, -1.0, -1.0]]))
    sign = net.parametrizations.weight[0].sign
    target_w = torch.tensor([0.0, 0.0, 1.0, 1.0]) * sign[0]
    opt = DeepR([theta], lr=0.1, alpha=0.0, temperature=0.0, generator=gen)
    for _ in range(150):
        x = torch.randn(32, 4, generator=gen)
        opt.zero_grad()
        (net(x).squeeze(1) - x @ target_w).pow(2).mean().backward()
        opt.step()
    assert int((theta > 0).sum()) == 2
    assert bool((theta[0, 2:] > 0.3).all())


def test_cubic_schedule_values():
    """Zhu & Gupta Eq. 1 at the ends and the middle."""
    assert cubic_sparsity(0, 0.9, 10, 110) == 0.0
    assert cubic_sparsity(60, 0.9, 10, 110) == pytest.approx(0.9 - 0.9 * 0.5 ** 3)
    assert cubic_sparsity(500, 0.9, 10, 110) == 0.9


@settings(max_examples=20)
@given(seed=st.integers(0, 1000), conn=st.floats(0.01, 1.0), steps=st.integers(4, 20))
def test_magnitude_pruning_reaches_exact_connectivity(seed, conn, steps):
    """Property: the pruner ends with exactly round(c * total) connected synapses, the kept
    ones are the largest |w| at the last pruning, and the count never rises."""
    net = _net(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    pruner = MagnitudePruner(net, conn, steps, frequency=3)
    counts = []
    for _ in range(steps):
        opt.zero_grad()
        _loss(net, gen).backward()
        opt.step()
        pruner.step()
        counts.append(pruner.connected())
    assert counts[-1] == max(1, round(conn * pruner.total))
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    assert net[0].bias.abs().sum() > 0  # biases are not pruned


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.1, math.nan])
def test_bad_connectivity(bad):
    with pytest.raises(ValueError, match="connectivity"):
        init_deep_r(_net(0), bad)
    with pytest.raises(ValueError, match="connectivity"):
        MagnitudePruner(_net(0), bad, 10)
