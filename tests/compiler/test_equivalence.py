"""Equivalence report: float Norse vs integer chip model, layer by layer and step by step."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rewire.compiler import simulate as sim
from rewire.compiler.equivalence import compare
from rewire import compile as compile_network

from conftest import random_network


@pytest.fixture
def trio(loihi2):
    model = random_network((20, 30, 8), seed=3, weight_gain=6)
    net = compile_network(model, loihi2, 16)
    x = np.random.default_rng(3).integers(0, 17, (40, 20)) / 16
    return model, net, x


def test_report_matches_direct_runs(trio):
    """Counts, agreement and accuracies equal what the float and integer models give when run
    directly."""
    model, net, x = trio
    labels = np.arange(40) % 8
    rep = compare(net, x, labels=labels, batch_size=16)
    with torch.no_grad():
        f_out = model(torch.as_tensor(x, dtype=torch.float32)).numpy()
    i_out = sim.simulate(net, sim.encode_input(net, x))[-1]
    last = rep.layers[-1]
    assert rep.samples == 40 and rep.steps == net.steps and len(last.step_agreement) == net.steps
    assert last.float_spikes == int(f_out.sum()) and last.integer_spikes == int(i_out.sum())
    assert last.spike_agreement == pytest.approx((f_out == i_out).mean())
    assert rep.integer_accuracy == pytest.approx(sim.accuracy(net, [(sim.encode_input(net, x),
                                                                     labels)]))
    assert rep.float_accuracy == pytest.approx((f_out.sum(0).argmax(-1) == labels).mean())
    assert 0.9 < last.spike_agreement <= 1
    assert rep.to_dict()["layers"][0]["name"] == "fc1"
    assert "fc2" in rep.format()


def test_first_divergence_points_at_the_changed_layer(trio):
    """Changing only the last layer's integer weights leaves the first layer's comparison as
    it was and makes the last layer diverge from a definite step on."""
    model, net, x = trio
    before = compare(net, x)
    last = net.layers[-1]
    broken = dataclasses.replace(net, layers=net.layers[:-1] + (
        dataclasses.replace(last, weight_int=-last.weight_int),))
    after = compare(broken, x)
    assert after.layers[0] == before.layers[0]
    assert after.layers[-1].first_divergence is not None
    assert after.layers[-1].spike_agreement < before.layers[-1].spike_agreement
    assert after.layers[-1].diverged_samples > 0


def test_silent_network_agrees_everywhere(loihi2):
    """All-zero weights: both models stay silent, agreement 1, no divergence."""
    model = random_network((5, 4, 3), seed=0)
    with torch.no_grad():
        model.linears[0].weight.zero_()
    net = compile_network(model, loihi2, 16)
    rep = compare(net, np.ones((3, 5)))
    assert all(l.spike_agreement == 1 and l.first_divergence is None for l in rep.layers)
    assert rep.prediction_agreement == 1 and rep.float_accuracy is None


def test_rate_encoding_and_shape_errors(loihi2):
    model = random_network((10, 12, 4), encoding="rate", seed=4, weight_gain=10)
    net = compile_network(model, loihi2, 16)
    spikes = (np.random.default_rng(0).random((net.steps, 6, 10)) < 0.5).astype(np.int64)
    rep = compare(net, spikes)
    assert rep.samples == 6 and rep.layers[0].float_spikes > 0
    with pytest.raises(ValueError, match="rate encoding needs inputs of shape"):
        compare(net, spikes[0])
