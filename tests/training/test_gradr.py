"""GradR: parametrization, redefined gradient, prior and the optimizer's step."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, strategies as st
from torch import nn

from torch.nn.utils import parametrize

from rewire.training.gradr import (GradR, GradRSGD, SignedReLU, apply_gradr, connectivity,
                                   hidden_params, prior_mean, prunable_layers)


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


def _train_steps(net, opt, steps, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        opt.zero_grad()
        net(torch.randn(4, 6, generator=gen)).pow(2).sum().backward()
        opt.step()


@pytest.mark.parametrize("make", [
    lambda ps: GradR(ps, lr=0.01, alpha=0.2, sparsity=0.9),
    lambda ps: GradRSGD(ps, lr=0.05, alpha=0.2, sparsity=0.9, momentum=0.9, nesterov=True),
])
def test_state_dict_round_trip(make):
    """Saving after 3 steps and loading into a fresh optimizer (with other defaults) continues
    bit-identically to the uninterrupted run, alpha and sparsity included."""
    ref = _linear(2)
    opt = make(apply_gradr(ref))
    _train_steps(ref, opt, 3)
    saved_theta = [t.detach().clone() for t in hidden_params(ref)]
    saved = copy.deepcopy(opt.state_dict())  # state_dict shares the live tensors
    _train_steps(ref, opt, 4, seed=1)

    net = _linear(2)
    apply_gradr(net)
    with torch.no_grad():
        for t, v in zip(hidden_params(net), saved_theta):
            t.copy_(v)
    opt2 = type(opt)(hidden_params(net), lr=0.5)
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["alpha"] == 0.2 and opt2.param_groups[0]["sparsity"] == 0.9
    _train_steps(net, opt2, 4, seed=1)
    assert torch.equal(hidden_params(net)[0], hidden_params(ref)[0])


def test_sgd_step_matches_hand_computation():
    """GradRSGD, two steps with momentum 0.9: b1 = g1, b2 = 0.9 b1 + g2;
    theta_t = theta_{t-1} - lr b_t - lr alpha sign(theta_{t-1} - mu)."""
    theta0 = torch.tensor([0.3, -0.2, 1e-3, -5.0])
    g1, g2 = torch.tensor([0.5, -1.0, 0.0, 0.2]), torch.tensor([0.1, 0.3, -0.4, 0.0])
    lr, alpha, p = 0.1, 0.5, 0.95
    mu = math.log(2 * (1 - p)) / alpha  # -4.605: theta = -5 lies below it
    theta = nn.Parameter(theta0.clone())
    opt = GradRSGD([theta], lr=lr, alpha=alpha, sparsity=p, momentum=0.9)
    theta.grad = g1.clone()
    opt.step()
    t1 = theta0 - lr * g1 - lr * alpha * torch.sign(theta0 - mu)
    assert torch.allclose(theta.detach(), t1, atol=1e-7)
    assert torch.allclose(t1, torch.tensor([0.2, -0.15, -0.049, -4.97]), atol=1e-6)
    theta.grad = g2.clone()
    opt.step()
    t2 = t1 - lr * (0.9 * g1 + g2) - lr * alpha * torch.sign(t1 - mu)
    assert torch.allclose(theta.detach(), t2, atol=1e-7)


def test_param_groups_have_their_own_alpha_and_sparsity():
    """Two groups, two steps of GradR by hand: each group is pulled by its own alpha towards
    its own mu; a group with alpha = 0 (biases) gets plain Adam."""
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    specs = [(0.5, 0.95), (2.0, 0.6), (0.0, 0.95)]
    theta0 = [torch.tensor([0.3, -4.7]), torch.tensor([0.05, -0.2]), torch.tensor([0.1, -0.1])]
    grads = [[torch.tensor([0.2, -0.1]), torch.tensor([-0.3, 0.05])]] * 3
    params = [nn.Parameter(t.clone()) for t in theta0]
    opt = GradR([{"params": [q], "alpha": a, "sparsity": s}
                 for q, (a, s) in zip(params, specs)], lr=lr)
    expected = [t.clone() for t in theta0]
    ms = [torch.zeros(2) for _ in specs]
    vs = [torch.zeros(2) for _ in specs]
    for step in (1, 2):
        for q, g in zip(params, grads):
            q.grad = g[step - 1].clone()
        opt.step()
        for i, (alpha, p) in enumerate(specs):
            g = grads[i][step - 1]
            ms[i] = b1 * ms[i] + (1 - b1) * g
            vs[i] = b2 * vs[i] + (1 - b2) * g * g
            k = lr / (1 - b1 ** step)
            d = ms[i] / ((vs[i] / (1 - b2 ** step)).sqrt() + eps)
            pull = alpha * torch.sign(expected[i] - math.log(2 * (1 - p)) / alpha) if alpha else 0
            expected[i] = expected[i] - k * d - k * pull
    for q, e in zip(params, expected):
        assert torch.allclose(q.detach(), e, atol=1e-7)
    # group 0: mu = -4.605, so -4.7 is pulled up; group 1: mu = ln(0.8)/2 = -0.112
    assert params[0][1] > -4.7 - 2 * lr


@pytest.mark.parametrize("kwargs, match", [
    ({"alpha": -1.0}, "alpha"), ({"sparsity": 0.3}, "sparsity"), ({"sparsity": 1.0}, "sparsity"),
])
@pytest.mark.parametrize("cls", [GradR, GradRSGD])
def test_bad_hyper_parameters(kwargs, match, cls):
    with pytest.raises(ValueError, match=match):
        cls([nn.Parameter(torch.zeros(1))], **kwargs)


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


def test_recurrent_cell_weights_are_parametrized_and_counted():
    """Every synapse the IR will hold is a GradR synapse: LIFRecurrentCell's raw
    input_weights / recurrent_weights included (25,856 of 25,856 for 64-128 recurrent + 10,
    not the 1,280 of the Linear alone); autapses stay pruned through training."""
    from norse.torch import LIFCell, LIFRecurrentCell, SequentialState

    from rewire.training.budget import model_budget, prunable_synapses
    from rewire.training.gradr import GradR

    torch.manual_seed(0)
    model = SequentialState(LIFRecurrentCell(64, 128), nn.Linear(128, 10, bias=False),
                            LIFCell())
    thetas = apply_gradr(model)
    assert [tuple(t.shape) for t in thetas] == [(128, 64), (128, 128), (10, 128)]
    assert prunable_synapses(model) == 64 * 128 + 128 * 128 + 1280 == 25856
    assert model_budget(model, connectivity=0.1).total_synapses == 25856
    opt = GradR(thetas, lr=1e-2, alpha=0.0)
    x = (torch.rand(8, 4, 64) < 0.5).float()
    for _ in range(3):
        state, out = None, 0
        for x_t in x:
            z, state = model(x_t, state)
            out = out + z.sum()
        opt.zero_grad()
        (-out).backward()
        opt.step()
    assert not torch.any(torch.diagonal(model[0].recurrent_weights))


def test_a_weight_matrix_gradr_does_not_know_is_refused():
    class Raw(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4, bias=False)
            self.w_fb = nn.Parameter(torch.ones(4, 4))

    with pytest.raises(ValueError, match=r"parameter w_fb \(4, 4\) is a weight matrix"):
        apply_gradr(Raw())
