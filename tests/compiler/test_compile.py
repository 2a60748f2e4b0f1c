"""Compile: fixed-point mapping, refusal of what the chip cannot run, the integer model."""

from __future__ import annotations

import numpy as np
import pytest

from rewire.errors import LoweringError
import torch
from hypothesis import given, strategies as st

from rewire.compiler import simulate as sim
from rewire import compile as compile_network
from rewire.compiler.netx_legal import netx_effective_weights, netx_exact, to_netx_grid
from rewire.errors import CompileError
from rewire.ir.chip_neurons import decay_constant
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
    the float weight's sign and zeros, the worst-case input fits 16 bits, vThMant fits, and
    netx applies the weights unchanged (no lost low bits, lava #859)."""
    model = random_network((9, 13, 4), encoding=enc, seed=seed, weight_gain=gain,
                           density=density)
    net = compile_network(model, loihi2, input_max_value=16)
    assert net.input_max_value in (16, 8, 4, 2, 1)
    for layer in net.layers:
        w = layer.weight_int
        assert w.min() >= loihi2.weights.min_int and w.max() <= loihi2.weights.max_int
        assert np.all(w % loihi2.weights.step == 0)
        assert np.all(np.sign(w) * np.sign(layer.weight) >= 0)
        assert np.all(w[layer.weight == 0] == 0)
        pmax = net.input_max_value if (layer is net.layers[0] and enc == "current") else 1
        assert np.abs(w).sum(1).max() * pmax <= 2**15 - 1
        assert 1 <= layer.v_th_mant <= loihi2.neuron.max_threshold_mant
        assert netx_exact(w)


def test_all_zero_layer_compiles_and_never_spikes(loihi2):
    """A layer pruned to all zeros (lava #501) compiles, is flagged, and the integer model
    keeps it and every later layer silent."""
    model = random_network((6, 5, 3), seed=1)
    with torch.no_grad():
        model.linears[0].weight.zero_()
    net = compile_network(model, loihi2, 16)
    assert net.layers[0].all_zero and not net.layers[1].all_zero
    assert "every synapse is pruned" in net.layers[0].notes[0]
    spikes = sim.simulate(net, sim.encode_input(net, np.ones((2, 6))), record_all=True)
    assert all(s.sum() == 0 for s in spikes)


def test_linear_bias_compiles_into_the_layer(loihi2):
    """A bias (issue 22.1) is carried, no longer refused: on the weights' grid and scale."""
    model = SpikingMLP((4, 5, 3))
    model.linears[1].bias = torch.nn.Parameter(torch.full((3,), 0.1))
    net = compile_network(model, loihi2, 16)
    assert net.layers[0].bias is None and net.layers[1].bias_int is not None
    assert np.all(net.layers[1].bias_int != 0)


def test_graded_input_payload_is_reduced_to_keep_weight_bits(loihi2):
    """Many graded inputs (MNIST-like: 400 pixels of 8 bits): the activation/current bounds
    cap S, so the compiler drops graded input bits until the largest weight uses the top
    weight bit and netx applies the weights unchanged."""
    model = random_network((400, 20, 4), seed=2, density=0.3)
    with torch.no_grad():
        model.linears[0].weight.abs_()  # all excitatory: the worst case is the real case
    net = compile_network(model, loihi2, 255)
    first = net.layers[0]
    assert net.input_max_value < 255 and net.input_message_bits < 8
    assert np.abs(first.weight_int).max() >= 128 and netx_exact(first.weight_int)
    assert "graded input payload" in first.notes[-1]


@given(seed=st.integers(0, 5000), mag=st.sampled_from([6, 20, 60, 126]))
def test_netx_grid_is_a_fixed_point(loihi2, seed, mag):
    """Property: small weights (largest < 128, which netx rescales and truncates) are moved
    onto netx's grid, which netx then leaves unchanged."""
    model = random_network((5, 4), seed=seed)
    net = compile_network(model, loihi2, 16)
    w = np.random.default_rng(seed).integers(-mag // 2, mag // 2 + 1, (4, 5)) * 2
    w[0, 0] = mag
    layer = to_netx_grid(__import__("dataclasses").replace(net.layers[0], weight_int=w))
    assert netx_exact(layer.weight_int)
    assert np.array_equal(netx_effective_weights(w), layer.weight_int) or layer.notes


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
