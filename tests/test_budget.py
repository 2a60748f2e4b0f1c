"""Budgets: derived from the profile, infeasible ones refused, projection always meets them."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, strategies as st

from rewire.training.budget import (BudgetController, BudgetError, SynapseBudget,
                                    connected_synapses, make_budget, max_fan_in,
                                    project_to_budget, within_budget)
from rewire.training.gradr import GradR, apply_gradr
from rewire.training.model import SpikingMLP


def test_smallest_limit_binds(loihi2):
    b = make_budget(loihi2, (64, 256, 10), connectivity=0.1, max_synapses=5000)
    assert b.max_synapses == 1895 and b.source == "--connectivity 0.1"
    b = make_budget(loihi2, (64, 256, 10), connectivity=None, max_synapses=500)
    assert b.max_synapses == 500
    b = make_budget(loihi2, (64, 256, 10), connectivity=None)
    assert b.max_synapses == 18944  # whole chip: not binding for a tiny net


@pytest.mark.parametrize("kwargs, match", [
    ({"cores": 0}, "--cores"), ({"cores": 999}, "--cores"),
    ({"connectivity": 0.0}, "--connectivity"), ({"connectivity": 1.5}, "--connectivity"),
    ({"max_synapses": 5}, "output neurons"), ({"max_fan_in": 0}, "--max-fan-in"),
])
def test_infeasible_budgets(loihi2, kwargs, match):
    with pytest.raises(BudgetError, match=match):
        make_budget(loihi2, (64, 256, 10), **kwargs)


def test_neurons_must_fit_cores(loihi2):
    with pytest.raises(BudgetError, match="neurons_per_core"):
        make_budget(loihi2, (64, 9000, 10), cores=1)


@given(seed=st.integers(0, 10_000), n_in=st.integers(1, 30), n_hid=st.integers(1, 30),
       n_out=st.integers(1, 10), frac=st.floats(0.0, 1.0), fan=st.integers(0, 8))
def test_projection_always_meets_the_budget(seed, n_in, n_hid, n_out, frac, fan):
    """Property: for any model and any feasible budget, projection ends inside it, keeps the
    largest theta, and never disconnects more than needed."""
    torch.manual_seed(seed)
    model = SpikingMLP((n_in, n_hid, n_out), steps=2)
    apply_gradr(model)
    total = n_in * n_hid + n_hid * n_out
    budget = SynapseBudget(max_synapses=max(1, int(frac * total)), max_fan_in=fan,
                           total_synapses=total, source="test")
    before = connected_synapses(model)
    removed = project_to_budget(model, budget)
    assert within_budget(model, budget)
    assert connected_synapses(model) == before - removed
    if fan == 0:
        assert connected_synapses(model) == min(before, budget.max_synapses)
    else:
        assert max_fan_in(model) <= fan


def test_controller_reaches_budget_without_projection():
    """A short GradR run on random data: the controller steers alpha up until the budget."""
    torch.manual_seed(0)
    model = SpikingMLP((10, 40, 4), steps=4)
    opt = GradR(apply_gradr(model), lr=0.01, alpha=0.1)
    budget = SynapseBudget(max_synapses=120, max_fan_in=0, total_synapses=560, source="test")
    ctl = BudgetController(opt, model, budget, total_steps=300, ramp=0.6)
    x, y = torch.rand(64, 10), torch.randint(0, 4, (64,))
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x).sum(0), y).backward()
        opt.step()
        ctl.step()
    assert connected_synapses(model) <= budget.max_synapses
    assert ctl.alpha > 0.1  # it had to push harder than the initial alpha
