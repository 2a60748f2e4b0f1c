"""Properties of GradR (Chen et al., IJCAI 2021): the parametrization ``w = s * relu(theta)``,
the redefined gradient, regrowth of pruned synapses and the Laplace prior's pull."""

from __future__ import annotations

import math

import torch
from hypothesis import given, strategies as st
from torch import nn

from rewire.training.gradr import (GradR, apply_gradr, connectivity, fixed_sign, hidden_params,
                                   prior_mean, prunable_layers)

from conftest import examples

seeds = st.integers(0, 2**16)


class _Mixed(nn.Module):
    """A conv layer, a linear layer and biases: every prunable type GradR handles."""

    def __init__(self, c_in, c_out, k, n_out, bias):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, bias=bias)
        self.fc = nn.Linear(c_out, n_out, bias=bias)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def _mixed(seed, c_in, c_out, k, n_out, bias, zero_frac=0.0):
    torch.manual_seed(seed)
    net = _Mixed(c_in, c_out, k, n_out, bias)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in (net.conv, net.fc):
            m.weight.mul_(torch.rand(m.weight.shape, generator=gen) >= zero_frac)
    return net


mixed_nets = st.builds(_mixed, seeds, st.integers(1, 3), st.integers(1, 4), st.integers(1, 3),
                       st.integers(1, 4), st.booleans(), st.floats(0.0, 0.9))


@given(net=mixed_nets)
def test_apply_gradr_keeps_the_function_and_hides_theta_abs_w(net):
    """Parametrizing a model changes none of its weights (zeros included): afterwards
    ``w`` is bit-identical, ``theta = |w0|``, ``s = sign(w0)`` (+1 for zeros), biases are
    untouched and not parametrized, and exactly the Linear/Conv weights become GradR layers."""
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    thetas = apply_gradr(net)
    assert [name for name, _ in prunable_layers(net)] == ["conv", "fc"]
    assert [t is h for t, h in zip(thetas, hidden_params(net))] == [True, True]
    for name in ("conv", "fc"):
        m = getattr(net, name)
        w0 = before[f"{name}.weight"]
        assert torch.equal(m.weight.detach(), w0)
        assert torch.equal(m.parametrizations.weight.original.detach(), w0.abs())
        assert torch.equal(m.parametrizations.weight[0].sign, fixed_sign(w0))
        if m.bias is not None:
            assert torch.equal(m.bias.detach(), before[f"{name}.bias"])
            assert not hasattr(m.parametrizations, "bias")


@examples(20)
@given(net=mixed_nets, prune=st.floats(0.0, 1.0), seed=seeds)
def test_gradient_to_theta_is_sign_times_gradient_to_w_for_every_synapse(net, prune, seed):
    """For any loss, ``dL/dtheta == s * dL/dw`` exactly for every synapse, connected or
    pruned (GradR Eq. 7: no Heaviside factor), so pruned synapses always get gradient."""
    apply_gradr(net)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in hidden_params(net):
            t.sub_(prune * t.abs().max() * torch.rand(t.shape, generator=gen) * 2)
    x = torch.randn(2, net.conv.in_channels, 5, 5, generator=gen)
    # reference: the same network with w as a plain leaf tensor
    ws = [m.weight.detach().clone().requires_grad_(True) for m in (net.conv, net.fc)]
    h = nn.functional.conv2d(x, ws[0], net.conv.bias).mean((2, 3))
    nn.functional.linear(h, ws[1], net.fc.bias).pow(2).sum().backward()
    net(x).pow(2).sum().backward()
    for m, w in zip((net.conv, net.fc), ws):
        theta = m.parametrizations.weight.original
        sign = m.parametrizations.weight[0].sign
        assert torch.allclose(theta.grad, sign * w.grad, rtol=1e-5, atol=1e-7)


@examples(20)
@given(net=mixed_nets, alpha=st.floats(0.0, 3.0), p=st.floats(0.5, 0.99),
       lr=st.floats(1e-3, 0.3), steps=st.integers(1, 8), seed=seeds)
def test_conv_and_linear_weights_stay_signed_relu_and_masks_match(net, alpha, p, lr, steps,
                                                                  seed):
    """After any number of GradR steps on conv and linear layers: ``w = s * relu(theta)``
    exactly, no weight ever has the opposite sign of its initial weight, the connection mask
    ``theta > 0`` equals ``w != 0``, and :func:`connectivity` is the fraction of that mask."""
    apply_gradr(net)
    signs = [m.parametrizations.weight[0].sign.clone() for _, m in prunable_layers(net)]
    opt = GradR(hidden_params(net), lr=lr, alpha=alpha, sparsity=p)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        opt.zero_grad()
        net(torch.randn(2, net.conv.in_channels, 4, 4, generator=gen)).pow(2).sum().backward()
        opt.step()
    connected = total = 0
    for (_, m), s in zip(prunable_layers(net), signs):
        theta, w = m.parametrizations.weight.original.detach(), m.weight.detach()
        assert torch.equal(w, s * theta.clamp(min=0))
        assert torch.all(w * s >= 0)
        assert torch.equal(w != 0, theta > 0)
        connected += int((w != 0).sum())
        total += w.numel()
    assert connectivity(net) == connected / total


@given(theta0=st.floats(-0.3, -1e-4), w_target=st.floats(0.5, 3.0), negative=st.booleans(),
       lr=st.floats(0.02, 0.1))
def test_pruned_synapse_regrows_when_the_loss_wants_it(theta0, w_target, negative, lr):
    """A pruned synapse (``theta < 0``, ``w = 0``) whose loss wants a weight of its own sign
    reconnects within ``ceil(2|theta0|/lr) + 5`` plain GradR steps (alpha 0), and its weight
    then has the fixed sign."""
    net = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(-1.0 if negative else 1.0)
    (theta,) = apply_gradr(net)
    with torch.no_grad():
        theta.fill_(theta0)
    sign = -1.0 if negative else 1.0
    opt = GradR([theta], lr=lr, alpha=0.0)
    for _ in range(math.ceil(2 * abs(theta0) / lr) + 5):
        opt.zero_grad()
        (net(torch.ones(1, 1)) - sign * w_target).pow(2).sum().backward()
        opt.step()
        if theta.item() > 0:
            break
    assert theta.item() > 0
    assert net.weight.item() * sign > 0


@given(alpha=st.floats(0.01, 5.0), p=st.floats(0.5, 0.999), lr=st.floats(1e-4, 0.1),
       offsets=st.lists(st.floats(-5, 5).filter(lambda v: v != 0), min_size=1, max_size=16))
def test_prior_pull_moves_theta_exactly_k_alpha_towards_mu(alpha, p, lr, offsets):
    """With zero data gradient, one GradR step moves every ``theta`` towards the prior centre
    ``mu`` by exactly ``k * alpha`` with ``k = lr / (1 - beta1)`` (reference update), and a
    ``theta`` sitting exactly at ``mu`` does not move."""
    mu = prior_mean(alpha, p)
    theta0 = torch.tensor([mu + o for o in offsets] + [mu], dtype=torch.float64)
    theta = nn.Parameter(theta0.clone())
    opt = GradR([theta], lr=lr, alpha=alpha, sparsity=p)
    theta.grad = torch.zeros_like(theta)
    opt.step()
    k = lr / (1 - 0.9)
    expected = theta0 - k * alpha * torch.sign(theta0 - mu)
    assert torch.allclose(theta.detach(), expected, rtol=0, atol=1e-12)
    moved = (theta.detach() - mu).abs() - (theta0 - mu).abs()
    assert torch.all(moved[:-1][(theta0[:-1] - mu).abs() > k * alpha] < 0)
    assert theta[-1].item() == mu


@given(alpha=st.floats(1e-3, 10.0), p=st.floats(0.5, 0.999))
def test_prior_centre_gives_the_target_sparsity(alpha, p):
    """``mu = ln(2(1-p))/alpha`` (GradR Eq. 11) puts exactly mass ``p`` of the Laplace prior
    ``Laplace(mu, 1/alpha)`` below zero (pruned): ``P(theta < 0) = 1 - exp(alpha mu)/2 = p``;
    ``mu <= 0`` and it falls as ``p`` rises."""
    mu = prior_mean(alpha, p)
    assert mu <= 0
    assert math.isclose(1 - 0.5 * math.exp(alpha * mu), p, rel_tol=1e-9)
    assert prior_mean(alpha, min(p + 1e-4, 0.9999)) <= mu


@given(seed=seeds, lr=st.floats(1e-4, 0.1), steps=st.integers(1, 6),
       wd=st.sampled_from([0.0, 1e-2]))
def test_gradr_without_prior_is_exactly_adam(seed, lr, steps, wd):
    """GradR with ``alpha = 0`` is plain ``torch.optim.Adam``: the same parameters after any
    number of steps, up to float32 rounding of its fused update (biases and alpha-0 groups are
    never pulled)."""
    torch.manual_seed(seed)
    a = nn.Parameter(torch.randn(5, 3))
    b = nn.Parameter(a.detach().clone())
    gradr = GradR([a], lr=lr, alpha=0.0, weight_decay=wd)
    adam = torch.optim.Adam([b], lr=lr, weight_decay=wd, foreach=False)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        g = torch.randn(5, 3, generator=gen)
        a.grad, b.grad = g.clone(), g.clone()
        gradr.step()
        adam.step()
    torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)
