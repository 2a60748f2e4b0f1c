"""Compile: fixed-point mapping, refusal of what the chip cannot run, the integer model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from rewire.compile import simulate as sim
from rewire.compile.quantize import CompileError, compile_network, decay_constant
from rewire.training.model import NeuronConfig, SpikingMLP

from conftest import random_network


def test_decays_from_norse_constants(small_net):
    _, net = small_net
    assert net.layers[0].i_decay == round(4096 * 1e-3 * 200) == 819
    assert net.layers[0].v_decay == round(4096 * 1e-3 * 100) == 410


@given(seed=st.integers(0, 5000), gain=st.floats(0.01, 50), density=st.floats(0.25, 1.0),
       enc=st.sampled_from(["current", "rate"]))
def test_quantized_weights_fit_the_profile(loihi2, seed, gain, density, enc):
    """Property: chip weights are multiples of the weight step inside [min_int, max_int], keep
    the float weight's sign and zeros, the worst-case input fits 16 bits, and vThMant fits."""
    model = random_network((9, 13, 4), encoding=enc, seed=seed, weight_gain=gain,
                           density=density)
    net = compile_network(model, loihi2, input_max_value=16)
    for layer in net.layers:
        w = layer.weight_int
        assert w.min() >= loihi2.weights.min_int and w.max() <= loihi2.weights.max_int
        assert np.all(w % loihi2.weights.step == 0)
        assert np.all(np.sign(w) * np.sign(layer.weight) >= 0)
        assert np.all(w[layer.weight == 0] == 0)
        pmax = 16 if (layer is net.layers[0] and enc == "current") else 1
        assert np.abs(w).sum(1).max() * pmax <= 2**15 - 1
        assert 1 <= layer.v_th_mant <= loihi2.neuron.max_threshold_mant


def test_all_zero_layer_is_refused(loihi2):
    model = SpikingMLP((4, 5, 3))
    with torch.no_grad():
        model.linears[1].weight.zero_()
    with pytest.raises(CompileError, match="layer fc2: every synapse is pruned"):
        compile_network(model, loihi2, 16)


def test_nonzero_leak_is_refused(loihi2):
    model = SpikingMLP((4, 5, 3), neuron=NeuronConfig(v_leak=0.1))
    with pytest.raises(CompileError, match="v_leak"):
        compile_network(model, loihi2, 16)


def test_decay_rounding_to_zero_is_refused(loihi2):
    with pytest.raises(CompileError, match="decay of 0"):
        decay_constant(0.01, 1e-3, loihi2, "layer fc1 iDecay")


@given(seed=st.integers(0, 5000), steps=st.integers(1, 20))
def test_lava_delay_aligned_equals_undelayed(loihi2, seed, steps):
    """Property: the Lava-delayed integer model, padded and shifted by the layer count,
    equals the undelayed model spike for spike."""
    model = random_network((7, 11, 6, 3), seed=seed)
    net = compile_network(model, loihi2, 16)
    x = np.random.default_rng(seed).integers(0, 17, (2, 7)) / 16
    payload = sim.encode_input(net, x)[:steps]
    assert np.array_equal(sim.align(net, payload), sim.simulate(net, payload)[-1])


def test_integer_model_tracks_float_model(loihi2):
    """Float Norse and the integer chip model agree on most spikes of a random net."""
    model = random_network((20, 30, 8), seed=3, weight_gain=6)
    net = compile_network(model, loihi2, 16)
    x = torch.as_tensor(np.random.default_rng(3).integers(0, 17, (16, 20)) / 16,
                        dtype=torch.float32)
    with torch.no_grad():
        ref = model(x).numpy()
    out = sim.simulate(net, sim.encode_input(net, x.numpy()))[-1]
    assert ref.sum() > 10
    assert (out == ref).mean() > 0.97
