"""Refuse before training (issue 23, item 5): ``rewire.train`` lowers the model as
``rewire.compile`` will before the first batch, so a ``MaxPool2d`` is refused before any data
is read; the hints of that refusal are changes that compile (a test per hint)."""

from __future__ import annotations

import copy

import pytest
import torch
from norse.torch import LIFCell, SequentialState
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import rewire
from rewire.errors import LoweringError
from rewire.training.data import load_digits_split
from rewire.training.gradr import hidden_params
from rewire.training.train import TrainConfig

SHAPE = (1, 8, 8)
OPTIONS = {"steps": 4, "encoding": "current", "input_gain": 4.0}


class Counting(DataLoader):
    """A ``DataLoader`` that counts the batches drawn from it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches = 0

    def __iter__(self):
        for batch in super().__iter__():
            self.batches += 1
            yield batch


@pytest.fixture(scope="module")
def images():
    split = load_digits_split()
    return (TensorDataset(split.x_train[:256].reshape(-1, *SHAPE), split.y_train[:256]),
            TensorDataset(split.x_test[:128].reshape(-1, *SHAPE), split.y_test[:128]))


def conv_net(pool: nn.Module, after_pool: list[nn.Module]) -> SequentialState:
    """``Conv2d(1, 4, 3) -> LIF -> pool -> after_pool -> Flatten -> Linear(64, 10) -> LIF``."""
    torch.manual_seed(0)
    return SequentialState(nn.Conv2d(1, 4, 3, padding=1, bias=False), LIFCell(), pool,
                           *after_pool, nn.Flatten(), nn.Linear(64, 10, bias=False), LIFCell())


def _budget(model):
    probe = copy.deepcopy(model)
    rewire.apply_gradr(probe)
    return rewire.model_budget(probe, connectivity=0.5)


def _train(model, images, **kwargs):
    train_set, test_set = images
    return rewire.train(model, train_set, _budget(model),
                        TrainConfig(epochs=1, batch_size=64, progress=False),
                        test_data=test_set, input_shape=SHAPE, **OPTIONS, **kwargs)


def test_a_maxpool_model_is_refused_before_the_first_batch(images):
    model = conv_net(nn.MaxPool2d(2), [])
    train_set, test_set = images
    data = Counting(train_set, batch_size=64)
    test = Counting(test_set, batch_size=64)
    with pytest.raises(LoweringError, match=r"2 \(MaxPool2d\): no mapping to the IR; use "
                                            r"AvgPool2d .* or a strided Conv2d") as info:
        rewire.train(model, data, _budget(model), TrainConfig(epochs=1, progress=False),
                     test_data=test, input_shape=SHAPE, **OPTIONS)
    assert info.value.piece == "2"
    assert (data.batches, test.batches) == (0, 0)
    assert not any(True for _ in rewire.training.gradr.prunable_layers(model))


def test_without_a_known_input_shape_it_is_refused_before_any_step(images):
    """A conv model whose spatial size only the data tells: one batch of each set is read to
    learn it, and the refusal comes before any optimizer step."""
    model = conv_net(nn.MaxPool2d(2), [])
    before = copy.deepcopy(model.state_dict())
    train_set, test_set = images
    data = Counting(train_set, batch_size=64)
    with pytest.raises(LoweringError, match="MaxPool2d"):
        rewire.train(model, data, _budget(model), TrainConfig(epochs=1, progress=False),
                     test_data=test_set, **OPTIONS)
    assert data.batches == 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("pool", [nn.AvgPool2d(2), nn.Conv2d(4, 4, 2, stride=2, bias=False)],
                         ids=["AvgPool2d", "strided Conv2d"])
def test_the_maxpool_hints_followed_by_a_spiking_layer_train_and_compile(images, pool):
    """Each hint (AvgPool2d, a strided Conv2d) in MaxPool2d's place with a LIFCell after it,
    as every synapse layer has today: trains and compiles."""
    model = conv_net(pool, [LIFCell()])
    res = _train(model, images)
    net = rewire.compile(model, "loihi2", input_max_value=16, input_shape=SHAPE)
    assert len(net.layers) == 3 and net.synapses > 0
    assert res.run_options == {**OPTIONS, "input_shape": SHAPE}  # a conv net's image size
    assert all(t.grad is not None for t in hidden_params(model))


@pytest.mark.parametrize("pool", [nn.AvgPool2d(2), nn.Conv2d(4, 4, 2, stride=2, bias=False)],
                         ids=["AvgPool2d", "strided Conv2d"])
def test_the_maxpool_hints_in_its_place_compile(pool):
    """Each hint put exactly where MaxPool2d was (no neuron after it): the pool or strided
    conv fuses with the Linear after the Flatten (issue 22.4)."""
    model = conv_net(pool, [])
    rewire.compile(model, "loihi2", input_max_value=16, input_shape=SHAPE, **OPTIONS)
