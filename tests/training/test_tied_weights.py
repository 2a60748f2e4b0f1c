"""Tied weights under GradR (issue 23, item 2): two layers sharing one ``Parameter`` get one
theta and one sign, the shared tensor is updated once per step by the gradient summed over
its uses, the budget counts it once per layer (as the chip stores it) and training once."""

from __future__ import annotations

import pytest
import torch
from norse.torch import LIFCell, SequentialState
from torch import nn
from torch.utils.data import TensorDataset

import rewire
from rewire.training.budget import model_budget
from rewire.training.counting import (connected_synapses, keep_strongest, project_to_budget,
                                      prunable_synapses)
from rewire.training.data import load_digits_split
from rewire.training import gradr
from rewire.training.gradr import (GradR, GradRSGD, apply_gradr, connectivity, hidden_params,
                                   remove_gradr)
from rewire.training.train import TrainConfig, train


def tied_model(n: int = 6, seed: int = 0):
    """``fc1 -> LIF -> fc2 -> LIF -> out -> LIF`` with ``fc2.weight is fc1.weight``."""
    torch.manual_seed(seed)
    fc1, fc2 = nn.Linear(n, n, bias=False), nn.Linear(n, n, bias=False)
    fc2.weight = fc1.weight
    with torch.no_grad():
        fc1.weight.mul_(8.0)
    model = SequentialState(fc1, LIFCell(), fc2, LIFCell(), nn.Linear(n, 3, bias=False),
                            LIFCell())
    return model, fc1.weight.detach().clone()


def test_one_theta_and_one_sign_for_the_shared_tensor():
    model, w0 = tied_model()
    thetas = apply_gradr(model)
    assert len(thetas) == 2 and gradr.synapse_uses(model) == [2, 1]
    assert torch.equal(model[0].weight, w0) and torch.equal(model[2].weight, w0)
    assert (w0 < 0).any()  # the signs are there to lose
    p1, p2 = model[0].parametrizations.weight, model[2].parametrizations.weight
    assert p1.original is p2.original and p1[0] is p2[0]
    assert hidden_params(model) == thetas


@pytest.mark.parametrize("make", [lambda ps: GradR(ps, lr=0.1),
                                  lambda ps: GradRSGD(ps, lr=0.1, momentum=0.9)])
def test_the_shared_theta_moves_once_per_step_by_the_summed_gradient(make):
    """One step equals the same optimizer's step on a copy of theta whose gradient is
    ``s * (dL/dw_fc1 + dL/dw_fc2)`` (what autograd accumulates into a tied plain weight)."""
    model, w0 = tied_model()
    x = torch.rand(4, 5, 6)
    plain, _ = tied_model()
    out = torch.stack([z for z in _run(plain, x)]).sum()
    out.backward()
    summed = plain[0].weight.grad  # autograd's sum over both uses
    thetas = apply_gradr(model)
    opt = make(thetas)
    torch.stack(_run(model, x)).sum().backward()
    sign = torch.where(w0 < 0, -1.0, 1.0)
    torch.testing.assert_close(thetas[0].grad, sign * summed)
    ref = thetas[0].detach().clone().requires_grad_(True)
    ref.grad = thetas[0].grad.clone()
    ref_opt = make([ref])
    opt.step()
    ref_opt.step()
    torch.testing.assert_close(thetas[0], ref)
    assert float(opt.state[thetas[0]].get("step", torch.tensor(1.0))) == 1.0


def _run(model, x):
    state, out = None, []
    for x_t in x:
        z, state = model(x_t, state)
        out.append(z)
    return out


def test_an_optimizer_given_a_tensor_twice_is_refused():
    model, _ = tied_model()
    theta = apply_gradr(model)[0]
    for make in (GradR, GradRSGD):
        with pytest.warns(UserWarning), pytest.raises(ValueError, match="listed twice"):
            make([theta, theta], lr=0.1)


def test_the_budget_counts_the_tie_per_layer_and_training_once():
    model, _ = tied_model()
    apply_gradr(model)
    assert prunable_synapses(model) == 2 * 36 + 18
    assert sum(t.numel() for t in hidden_params(model)) == 36 + 18
    budget = model_budget(model, connectivity=0.4)
    assert budget.total_synapses == 90 and budget.max_synapses == 36
    with torch.no_grad():
        hidden_params(model)[0].fill_(1.0)  # every tied entry connected: 72 chip synapses
    readout = int((hidden_params(model)[1] > 0).sum())
    assert connected_synapses(model) == 72 + readout  # the chip: once per layer
    assert connectivity(model) == pytest.approx((36 + readout) / 54)  # training: once
    project_to_budget(model, budget)
    assert connected_synapses(model) <= 36
    net = rewire.compile(model, "loihi2", steps=4, encoding="current", input_gain=4.0)
    assert net.synapses == connected_synapses(model)


def test_keep_strongest_counts_a_tied_entry_once_per_layer():
    model, _ = tied_model()
    apply_gradr(model)
    with torch.no_grad():
        for t in hidden_params(model):
            t.abs_().add_(0.1)
    keep_strongest(model, 30)
    assert connected_synapses(model) <= 30


def test_remove_gradr_keeps_the_tie_and_the_signs():
    model, w0 = tied_model()
    theta = apply_gradr(model)[0]
    with torch.no_grad():
        theta[0, :3] = -1.0  # three synapses pruned
    expected = torch.where(theta > 0, w0, torch.zeros_like(w0))
    remove_gradr(model)
    assert model[0].weight is model[2].weight
    assert torch.equal(model[0].weight, expected)
    assert not torch.signbit(model[0].weight[0, :3]).any()


@pytest.mark.slow
def test_a_tied_model_trains_inside_its_budget_and_stays_tied():
    split = load_digits_split()
    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(64, 64, bias=False), nn.Linear(64, 64, bias=False)
    fc2.weight = fc1.weight
    model = SequentialState(fc1, LIFCell(), fc2, LIFCell(), nn.Linear(64, 10, bias=False),
                            LIFCell())
    apply_gradr(model)
    budget = model_budget(model, rewire.load_profile("loihi2"), connectivity=0.3)
    res = train(model, TensorDataset(split.x_train[:512], split.y_train[:512]), budget,
                TrainConfig(epochs=2, lr=5e-3, progress=False),
                test_data=TensorDataset(split.x_test, split.y_test), steps=8)
    assert model[0].parametrizations.weight.original is model[2].parametrizations.weight.original
    assert res.synapses == connected_synapses(model) <= budget.max_synapses
    net = rewire.compile(model, "loihi2", input_max_value=16)
    assert sum(layer.float_synapses for layer in net.layers) == res.synapses
    assert (net.layers[0].weight == net.layers[1].weight).all()  # one matrix, stored twice
