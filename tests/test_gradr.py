"""GradR: parametrization, redefined gradient, prior and the optimizer's step."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, strategies as st
from torch import nn

from torch.nn.utils import parametrize

from rewire.training.gradr import (GradR, SignedReLU, apply_gradr, connectivity, hidden_params,
                                   prior_mean, prunable_layers)


def _linear(seed, n_in=6, n_out=4):
    torch.manual_seed(seed)
    return nn.Linear(n_in, n_out, bias=False)


@given(seed=st.integers(0, 2**16), alpha=st.floats(0.0, 5.0), steps=st.integers(1, 30),
       lr=st.floats(1e-3, 0.5))
def test_weight_is_signed_relu_of_theta_and_sign_never_flips(seed, alpha, steps, lr):
    """Property: after any number of GradR steps, every weight equals s * relu(theta) and no
    weight ever takes the opposite sign of its initial weight."""
    net = _linear(seed)
    sign0 = torch.where(net.weight.detach() < 0, -1.0, 1.0)
    opt = GradR(apply_gradr(net), lr=lr, alpha=alpha)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        opt.zero_grad()
        net(torch.randn(3, 6, generator=gen)).pow(2).sum().backward()
        opt.step()
        theta = net.parametrizations.weight.original.detach()
        w = net.weight.detach()
        assert torch.equal(w, sign0 * theta.clamp(min=0))
        assert torch.all(w * sign0 >= 0)
        assert torch.equal(w != 0, theta > 0)  # mask matches weights


def test_gradient_reaches_pruned_synapses():
    """dL/dtheta = s * dL/dw for every synapse, pruned (theta <= 0) ones included."""
    net = _linear(0)
    (theta,) = apply_gradr(net)
    with torch.no_grad():
        theta[0, :3] = -0.5  # prune some
    x = torch.randn(5, 6)
    w = net.weight.detach().clone().requires_grad_(True)
    (x @ w.T).pow(2).sum().backward()
    net(x).pow(2).sum().backward()
    sign = net.parametrizations.weight[0].sign
    assert torch.allclose(theta.grad, sign * w.grad)
    assert torch.all(theta.grad[0, :3] != 0)


def test_pruned_synapse_regrows():
    """A pruned synapse whose gradient pulls it back is reconnected by GradR (alpha = 0)."""
    net = _linear(1, 1, 1)
    (theta,) = apply_gradr(net)
    sign = net.parametrizations.weight[0].sign
    with torch.no_grad():
        theta.fill_(-0.01)
    opt = GradR([theta], lr=0.05, alpha=0.0)
    target = 2.0 * sign.item()  # wants a large weight of the fixed sign
    for _ in range(20):
        opt.zero_grad()
        (net(torch.ones(1, 1)) - target).pow(2).sum().backward()
        opt.step()
    assert theta.item() > 0 and connectivity(net) == 1.0


def test_step_matches_hand_computation():
    """One step: theta - lr/(1-b1) * m_hat/(sqrt(v_hat)+eps) - lr/(1-b1) * alpha * sign(theta-mu)."""
    theta0 = torch.tensor([0.3, -0.2, 1e-3])
    grad = torch.tensor([0.5, -1.0, 0.0])
    theta = nn.Parameter(theta0.clone())
    lr, alpha, p, b1, b2, eps = 0.1, 0.5, 0.95, 0.9, 0.999, 1e-8
    opt = GradR([theta], lr=lr, alpha=alpha, sparsity=p, betas=(b1, b2), eps=eps)
    theta.grad = grad.clone()
    opt.step()
    m, v = (1 - b1) * grad, (1 - b2) * grad**2
    denom = (v.sqrt() / math.sqrt(1 - b2)) + eps
    k = lr / (1 - b1)
    mu = math.log(2 * (1 - p)) / alpha
    expected = theta0 - k * m / denom - k * alpha * torch.sign(theta0 - mu)
    assert torch.allclose(theta.detach(), expected, atol=1e-7)


@given(alpha=st.floats(0.01, 10), p=st.floats(0.5, 0.999))
def test_prior_pulls_towards_mu(alpha, p):
    """Property: with zero gradient the prior moves theta towards mu (down when above it)."""
    mu = prior_mean(alpha, p)
    theta = nn.Parameter(torch.tensor([mu + 1.0, mu - 1.0]))
    opt = GradR([theta], lr=1e-3, alpha=alpha, sparsity=p)
    theta.grad = torch.zeros(2)
    opt.step()
    assert theta[0] < mu + 1.0 and theta[1] > mu - 1.0


def test_state_dict_round_trip():
    net = _linear(2)
    opt = GradR(apply_gradr(net), lr=0.01, alpha=0.2, sparsity=0.9)
    net(torch.ones(1, 6)).sum().backward()
    opt.step()
    opt2 = GradR(hidden_params(net), lr=0.5)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.param_groups[0]["alpha"] == 0.2 and opt2.param_groups[0]["sparsity"] == 0.9


@pytest.mark.parametrize("kwargs, match", [
    ({"alpha": -1.0}, "alpha"), ({"sparsity": 0.3}, "sparsity"), ({"sparsity": 1.0}, "sparsity"),
])
def test_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradR([nn.Parameter(torch.zeros(1))], **kwargs)


def test_signed_relu_rejects_zero_sign():
    with pytest.raises(ValueError, match=r"\+1 and -1"):
        SignedReLU(torch.zeros(2))


def test_apply_gradr_twice_is_an_error():
    net = _linear(0)
    apply_gradr(net)
    with pytest.raises(ValueError, match="already parametrized"):
        apply_gradr(net)


def _conv_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Tanh(),
                         nn.Flatten(), nn.Linear(3 * 5 * 5, 4), nn.LayerNorm(4))


def test_conv_and_linear_parametrized_biases_and_norms_not():
    """apply_gradr covers Conv2d and Linear weights only; biases and norms stay plain."""
    net = _conv_net()
    thetas = apply_gradr(net)
    conv, bn, lin, ln = net[0], net[1], net[4], net[5]
    assert [t.shape for t in thetas] == [conv.weight.shape, lin.weight.shape]
    assert [n for n, _ in prunable_layers(net)] == ["0", "4"]
    assert [t.data_ptr() for t in hidden_params(net)] == [t.data_ptr() for t in thetas]
    for m in (bn, ln):
        assert not parametrize.is_parametrized(m)
    assert isinstance(conv.bias, nn.Parameter) and isinstance(lin.bias, nn.Parameter)
    names = {n for n, _ in net.named_parameters()}
    assert names == {"0.bias", "0.parametrizations.weight.original", "1.weight", "1.bias",
                     "4.bias", "4.parametrizations.weight.original", "5.weight", "5.bias"}
    with torch.no_grad():
        thetas[0][0] = -1.0  # prune output channel 0's kernel: 18 synapses
    assert connectivity(net) == pytest.approx((54 - 18 + 300) / (54 + 300))


def test_gradr_trains_a_conv_net_and_keeps_signs():
    """GradR steps on a conv net: w = s * relu(theta) in both layers, gradient to pruned ones."""
    net = _conv_net(1)
    thetas = apply_gradr(net)
    signs = [m.parametrizations.weight[0].sign.clone() for _, m in prunable_layers(net)]
    opt = GradR([{"params": thetas, "alpha": 0.2},
                 {"params": [p for n, p in net.named_parameters() if "original" not in n],
                  "alpha": 0.0}], lr=0.01)
    x, y = torch.randn(8, 2, 5, 5), torch.randint(0, 4, (8,))
    c0 = connectivity(net)
    for _ in range(20):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    for theta in thetas:  # the gradient reaches pruned synapses in both layers
        assert (theta <= 0).any() and (theta.grad[theta <= 0] != 0).any()
    for (_, m), s in zip(prunable_layers(net), signs):
        theta = m.parametrizations.weight.original.detach()
        assert torch.equal(m.weight.detach(), s * theta.clamp(min=0))
    assert connectivity(net) < c0
