"""Issue 22 item 4: ``rewire.train`` refuses, before the first step, a model whose lowering
fuses two layers (GradR and the budget cannot count the product the chip holds while they
train the factors), naming the pair; the module the hint names trains and compiles."""

from __future__ import annotations

import pytest
import torch
from norse.torch import LIFCell, LIFRecurrentCell, SequentialState
from torch import nn
from torch.utils.data import TensorDataset

import rewire
from rewire.errors import LoweringError
from rewire.frontends.pooling import SumPool2d
from rewire.training.train import TrainConfig, train


def _data(shape, n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand(n, *shape, generator=g), torch.arange(n) % 10)


def _train(model, shape):
    budget = rewire.model_budget(model, rewire.load_profile("loihi2"), connectivity=0.5)
    return train(model, _data(shape), budget, TrainConfig(epochs=1, batch_size=16,
                                                          progress=False),
                 test_data=_data(shape, seed=1), steps=4, input_shape=shape)


def _lin(n_in, n_out):
    return nn.Linear(n_in, n_out, bias=False)


def _conv(c_in, c_out, k, **kw):
    return nn.Conv2d(c_in, c_out, k, bias=False, **kw)


@pytest.mark.parametrize("make, shape, piece, hint", [
    (lambda: SequentialState(_lin(64, 32), LIFRecurrentCell(32, 24), _lin(24, 10), LIFCell()),
     (64,), "1", "LIFRecurrentCell(64, 24)"),
    (lambda: SequentialState(_lin(64, 32), _lin(32, 10), LIFCell()), (64,), "1",
     "nn.Linear(64, 10)"),
    (lambda: SequentialState(_conv(1, 4, 3, padding=1), LIFCell(), SumPool2d(4, 2, 1.0),
                             _conv(4, 6, 3, padding=1), LIFCell(), nn.Flatten(),
                             _lin(6 * 4 * 4, 10), LIFCell()), (1, 8, 8), "3",
     "nn.Conv2d(4, 6, (6, 6), stride=(2, 2), padding=(2, 2))"),
])
def test_a_fused_chain_is_refused_before_the_first_step_and_the_hint_trains(make, shape,
                                                                            piece, hint):
    torch.manual_seed(0)
    model = make()
    rewire.apply_gradr(model)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(LoweringError, match="have no neuron between them") as err:
        _train(model, shape)
    assert err.value.piece == piece and hint in str(err.value)
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))
    # the hint's module (the product as one layer) trains and compiles (bias-free: the
    # compiler's bias path is issue 22 item 1's compiler side)
    fixed = {"LIFRecurrentCell(64, 24)": lambda: SequentialState(
                 LIFRecurrentCell(64, 24), _lin(24, 10), LIFCell()),
             "nn.Linear(64, 10)": lambda: SequentialState(_lin(64, 10), LIFCell()),
             "nn.Conv2d(4, 6, (6, 6), stride=(2, 2), padding=(2, 2))": lambda: SequentialState(
                 _conv(1, 4, 3, padding=1), LIFCell(), _conv(4, 6, 6, stride=2, padding=2),
                 LIFCell(), nn.Flatten(), _lin(6 * 4 * 4, 10), LIFCell())}[hint]()
    rewire.apply_gradr(fixed)
    res = _train(fixed, shape)
    assert res.synapses <= rewire.model_budget(fixed, rewire.load_profile("loihi2"),
                                               connectivity=0.5).max_synapses
    rewire.compile(fixed, "loihi2", input_shape=shape, steps=4)


def test_batchnorm_is_not_a_chain_and_trains():
    """An eval-mode BatchNorm folds into the layer before it with the same zero pattern, so
    training counts are the chip's: nothing is refused."""
    torch.manual_seed(0)
    model = SequentialState(nn.Linear(64, 32), nn.BatchNorm1d(32), LIFCell(), nn.Linear(32, 10),
                            LIFCell())
    rewire.apply_gradr(model)
    assert _train(model, (64,)).history
