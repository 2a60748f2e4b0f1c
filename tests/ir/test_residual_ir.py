"""Skip (residual) connections in the IR: validation, the dict round trip, and the float
semantics (a skip adds the source's output of the same step to the target's input)."""

import numpy as np
import pytest
import torch

from rewire.ir import dynamics
from rewire.ir.network import Network, Skip
from rewire.ir.nodes import IF, LI, CubaLIF, Dense


def _net(skips=(), encoding="rate"):
    rng = np.random.default_rng(0)
    return Network((Dense(rng.normal(size=(6, 4))), CubaLIF(200.0, 100.0),
                    Dense(rng.normal(size=(6, 6))), CubaLIF(200.0, 100.0),
                    Dense(rng.normal(size=(3, 6))), LI(100.0)),
                   input_shape=(4,), steps=8, encoding=encoding, skips=skips)


def test_skip_round_trips_and_counts():
    net = _net((Skip(1, 3, np.ones((3, 6))), Skip(0, 2, np.eye(6, 4))))
    again = Network.from_dict(net.to_dict())
    assert [(s.source, s.target) for s in again.skips] == [(1, 3), (0, 2)]
    assert np.array_equal(again.skips[0].weight, net.skips[0].weight)
    assert net.synapse_count == _net().synapse_count + 18 + 24
    assert "skips" not in _net().to_dict()  # a chain's dict is what it was


@pytest.mark.parametrize("skip, match", [
    (lambda: Skip(1, 3, np.ones((3, 5))), r"must be \(3, 6\)"),
    (lambda: Skip(1, 4, np.ones((3, 6))), "does not exist"),
    (lambda: Skip(2, 2, np.ones((6, 6))), "must come after"),
    (lambda: Skip(-1, 2, np.ones((6, 6))), "integer >= 0"),
    (lambda: Skip(1, 3, np.full((3, 6), np.nan)), "NaN"),
])
def test_bad_skip_is_named(skip, match):
    with pytest.raises(ValueError, match=match):
        _net((skip(),))


def test_malformed_skip_dict_is_named():
    data = _net((Skip(1, 3, np.ones((3, 6))),)).to_dict()
    data["skips"] = [{"source": 1, "target": 3}]
    with pytest.raises(ValueError, match="skips"):
        Network.from_dict(data)


def test_identity_skip_adds_the_same_step_spikes():
    # layer1 spikes every step (input 2 > v_th); layer2 gets only the identity shortcut
    net = Network((Dense(np.full((1, 1), 2.0)), IF(), Dense(np.zeros((1, 1))), IF(),
                   Dense(np.ones((1, 1))), IF()),
                  input_shape=(1,), steps=4, skips=(Skip(1, 2, np.full((1, 1), 0.6)),))
    outs = dynamics.run(net, torch.ones(4, 1, 1), record_all=True)
    assert outs[0].flatten().tolist() == [1.0, 1.0, 1.0, 1.0]
    # v2: 0.6, 1.2 -> spike at step 1 (same-step input, no delay), 0.6, 1.2 -> spike
    assert outs[1].flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
