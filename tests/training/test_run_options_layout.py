"""``rewire.train`` records the data's per-sample shape where the model alone does not tell
it, so ``rewire.compile(model, profile, **result.run_options)`` needs no ``input_shape``
(issue 23 item 6); and the compiled network takes the data in its own layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from norse.torch import LIFCell, SequentialState
from torch.utils.data import TensorDataset

import rewire
from rewire.compiler import equivalence
from rewire.training.train import TrainConfig, train


def _data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, 1, 8, 8), generator=g)
    return TensorDataset(x, torch.randint(0, 10, (n,), generator=g))


def _conv():
    return SequentialState(torch.nn.Conv2d(1, 4, 3, bias=False), LIFCell(), torch.nn.Flatten(),
                           torch.nn.Linear(4 * 6 * 6, 10, bias=False), LIFCell())


def _image_mlp():
    return SequentialState(torch.nn.Flatten(), torch.nn.Linear(64, 16, bias=False), LIFCell(),
                           torch.nn.Linear(16, 10, bias=False), LIFCell())


@pytest.mark.parametrize("make, options", [(_conv, {}), (_image_mlp, {"input_shape": (1, 8, 8)})])
def test_compile_after_train_needs_no_input_shape(make, options):
    torch.manual_seed(0)
    model = make()
    rewire.apply_gradr(model)
    budget = rewire.model_budget(model, rewire.load_profile("loihi2"), connectivity=0.5)
    res = train(model, _data(32, 0), budget, TrainConfig(epochs=1, batch_size=16,
                                                         progress=False),
                test_data=_data(16, 1), steps=4, **options)
    assert res.run_options == {"steps": 4, "encoding": "current", "input_gain": 4.0,
                               "input_shape": (1, 8, 8)}
    net = rewire.compile(model, "loihi2", input_max_value=16, **res.run_options)
    assert net.input_shape == (1, 8, 8)
    x = _data(4, 2).tensors[0].numpy()
    assert equivalence.compare(net, x) == equivalence.compare(net, x.reshape(4, 64))


def test_a_plain_mlp_records_no_input_shape():
    """Its first Linear tells its input; run_options stay the three run options."""
    torch.manual_seed(0)
    model = SequentialState(torch.nn.Linear(64, 10, bias=False), LIFCell())
    rewire.apply_gradr(model)
    budget = rewire.model_budget(model, rewire.load_profile("loihi2"), connectivity=0.5)
    flat = TensorDataset(torch.rand(32, 64), torch.randint(0, 10, (32,)))
    res = train(model, flat, budget, TrainConfig(epochs=1, batch_size=16, progress=False),
                test_data=flat, steps=4)
    assert res.run_options == {"steps": 4, "encoding": "current", "input_gain": 4.0}
    assert np.prod(rewire.compile(model, "loihi2", **res.run_options).input_shape) == 64
