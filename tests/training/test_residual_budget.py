"""Training counts a residual block's identity shortcut as the chip holds it: the compiler
writes ``fc2(z1) + z1`` as an identity skip of ``n`` synapses
(:func:`rewire.compiler.skips.split_skips`), so training ends inside the budget counted the
compiler's way (:mod:`rewire.training.counting`, identity shortcuts)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.data import TensorDataset

import rewire
from rewire.errors import BudgetError
from rewire.training.counting import connected_synapses, fixed_synapses
from rewire.training.gradr import hidden_params
from rewire.training.train import TrainConfig, train

from norse_models import ResidualNet


def _model():
    """:class:`ResidualNet`: an identity shortcut of 32 and a projection from the input."""
    torch.manual_seed(0)
    model = ResidualNet()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)
    return model


def _data(seed, n=64, steps=8):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    rates = 0.1 + 0.5 * (torch.arange(16)[None, :] % 4 == y[:, None]).float()
    return TensorDataset((torch.rand(n, steps, 16, generator=g) < rates[:, None]).float(), y)


def _budget(connectivity):
    probe = ResidualNet()
    rewire.apply_gradr(probe)
    return rewire.model_budget(probe, connectivity=connectivity)


@pytest.mark.parametrize("method", ["gradr", "deep-r"])
def test_training_counts_the_identity_shortcut_as_the_compiler_does(method):
    """The count training reads (:func:`connected_synapses`: the GradR synapses, the
    projection's among them, plus the identity shortcut's 32) equals the compiled network's
    count, and both are within the budget; the weight tensors alone hold 32 fewer (the old
    count, which ended 32 over: 637 synapses compiled for a budget of 605)."""
    model, budget = _model(), _budget(0.3)
    res = train(model, _data(0), budget, TrainConfig(epochs=1, batch_size=32, method=method,
                                                     progress=False), test_data=_data(1))
    assert fixed_synapses(model) == 32
    counted = connected_synapses(model)
    assert res.synapses == counted <= budget.max_synapses
    assert sum(int((t > 0).sum()) for t in hidden_params(model)) == counted - 32
    compiled = rewire.compile(model, "loihi2", example_input=torch.zeros(8, 1, 16),
                              encoding="rate")
    assert [s.weight_int.shape for s in compiled.layers[1].skips] == [(32, 32)]
    assert sum(l.float_synapses for l in compiled.layers) == counted
    assert sum(l.synapses for l in compiled.layers) <= budget.max_synapses
    if method == "deep-r":  # Deep R keeps exactly the budget's synapses: the shortcut binds
        assert counted == budget.max_synapses


def test_a_budget_the_shortcuts_fill_is_refused_before_training():
    """A budget of 20 synapses cannot hold the shortcut's 32: refused by name, no epoch."""
    model = _model()
    budget = dataclasses.replace(_budget(0.3), max_synapses=20)
    with pytest.raises(BudgetError, match="identity shortcuts hold 32 synapses"):
        train(model, _data(0), budget, TrainConfig(epochs=1, progress=False),
              test_data=_data(1))
