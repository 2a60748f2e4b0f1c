"""Biases through the compiler: quantized on the weights' grid and scale, carried exactly by
the float network of the compiled layers, the integer model, both ONNX files and the netx
route (always-on input lines and relay neurons, rewire.compiler.bias_lines)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from rewire.compiler import simulate
from rewire.compiler.bias_lines import line_inputs, relay_counts, with_lines
from rewire.compiler.quantize import compile_network
from rewire.errors import CompileError, ExportError
from rewire.export import netx, onnx_int, onnx_step
from rewire.ir import dynamics, nodes
from rewire.ir.chip_neurons import cuba_rates
from rewire.ir.compiled import CompiledNetwork, float_network
from rewire.hw_profiles.profile import load_profile
from rewire.ir.network import Network

from conftest import examples

_LOIHI2 = load_profile("loihi2")

T = 10
NEURONS = {"CubaLIF": (nodes.CubaLIF(200.0, 100.0), 3.0), "LIF": (nodes.LIF(100.0), 6.0),
           "IF": (nodes.IF(v_th=1.0), 0.6)}  # (neuron, weight scale that makes it spike)


def _net(kind: str, shape: str, biases: tuple[bool, bool], seed: int,
         encoding: str = "current") -> Network:
    rng = np.random.default_rng(seed)
    neuron, sd = NEURONS[kind]

    def w(*s):
        return (rng.normal(0, sd, s) * (rng.random(s) < 0.7)).astype(np.float32)

    def b(n, on):
        return rng.normal(0.2 * sd, 0.4 * sd, n).astype(np.float32) if on else None

    if shape == "conv":
        first = nodes.Conv2d(w(3, 1, 3, 3), padding=(1, 1), bias=b(3, biases[0]))
        return Network((first, neuron, nodes.Flatten(), nodes.Dense(w(4, 108) / 3,
                                                                    bias=b(4, biases[1])),
                        neuron), input_shape=(1, 6, 6), steps=T, encoding=encoding)
    if shape == "rec_first":
        first = nodes.RecurrentDense(w(10, 8), w(10, 10) / 2, bias=b(10, biases[0]))
        second = nodes.Dense(w(4, 10), bias=b(4, biases[1]))
    elif shape == "rec_second":
        first = nodes.Dense(w(10, 8), bias=b(10, biases[0]))
        second = nodes.RecurrentDense(w(4, 10), w(4, 4) / 2, bias=b(4, biases[1]))
    else:
        first, second = nodes.Dense(w(10, 8), bias=b(10, biases[0])), \
            nodes.Dense(w(4, 10), bias=b(4, biases[1]))
    return Network((first, neuron, second, neuron), input_shape=(8,), steps=T,
                   encoding=encoding)


def _inputs(net: Network, seed: int) -> np.ndarray:
    """Inputs on the payload grid (k / 16), so the float IR and the compiled network's float
    network see the same numbers."""
    rng = np.random.default_rng(seed)
    if net.encoding == "rate":
        return (rng.random((T, 5, *net.input_shape)) < 0.4).astype(np.float32)
    return (rng.integers(0, 17, (5, *net.input_shape)) / 16).astype(np.float32)


@examples(25)
@given(kind=st.sampled_from(sorted(NEURONS)),
       shape=st.sampled_from(["dense", "rec_first", "rec_second", "conv"]),
       biases=st.sampled_from([(True, True), (True, False), (False, True)]),
       encoding=st.sampled_from(["current", "rate"]), seed=st.integers(0, 2**16))
def test_biases_carried_by_every_model(kind, shape, biases, encoding, seed):
    ir = _net(kind, shape, biases, seed, encoding)
    c = compile_network(ir, _LOIHI2, 16)
    x = _inputs(ir, seed + 1)
    # the compiled network's float network carries the bias: same float spikes as the IR
    ours = dynamics.run(ir, dynamics.encode(ir, torch.as_tensor(x)), record_all=True)
    back = float_network(c)
    again = dynamics.run(back, dynamics.encode(back, torch.as_tensor(x)), record_all=True)
    assert all(torch.equal(a, b) for a, b in zip(ours, again))
    # each bias on the weights' grid and scale: bias_int = round(b gain S), netx's grid aside
    for layer, on in zip(c.layers, biases):
        assert (layer.bias_int is not None) == on
        if on and not any("netx" in n for n in layer.notes):
            exact = layer.bias.astype(np.float64) * cuba_rates(layer.neuron)[2] * layer.scale
            assert np.abs(layer.bias_int - exact).max() <= _LOIHI2.weights.step / 2 + 1e-6
    # float ONNX equals the float IR; integer ONNX and the aligned Lava model equal simulate
    flat = x.reshape(*x.shape[:x.ndim - len(ir.input_shape)], -1)
    step = onnx_step.run(onnx_step.build(c), flat)
    np.testing.assert_array_equal(step, ours[-1].numpy().reshape(step.shape))
    payload = simulate.encode_input(c, flat)
    ref = simulate.simulate(c, payload)[-1]
    np.testing.assert_array_equal(onnx_int.run(onnx_int.build(c), payload), ref)
    np.testing.assert_array_equal(simulate.align(c, payload), ref)
    padded = simulate.pad_for_lava(c, payload)
    np.testing.assert_array_equal(onnx_int.run(onnx_int.build(c, lava_delay=True), padded),
                                  simulate.simulate(c, padded, lava_delay=True)[-1])
    # netx: biases as always-on lines and relay neurons, spike for spike, or refused by name
    try:
        lined, lines = with_lines(c)
    except CompileError as exc:
        assert shape == "conv" or "relay" in str(exc)
        with pytest.raises(ExportError, match=r"layers (fc|conv)\d"):
            netx.check_network(c)
        return
    assert lines >= biases[0] and lined.layers[-1].shape[0] == c.layers[-1].shape[0]
    for pad, delayed in ((payload, False), (padded, True)):
        ones = np.ones(pad.shape[:2] + (line_inputs(c, lines),), np.int64)  # conv: channels
        got = simulate.simulate(lined, np.concatenate([pad, ones], -1), lava_delay=delayed)
        np.testing.assert_array_equal(got[-1], simulate.simulate(c, pad, lava_delay=delayed)[-1])


def test_integer_model_follows_the_float_one(loihi2):
    """Up to quantization: most spikes of the integer model equal the float network's."""
    ir = _net("CubaLIF", "rec_second", (True, True), 3)
    c = compile_network(ir, loihi2, 16)
    x = _inputs(ir, 4)
    fl = dynamics.run(float_network(c), dynamics.encode(ir, torch.as_tensor(x)),
                      record_all=True)
    it = simulate.simulate(c, simulate.encode_input(c, x), record_all=True)
    assert it[-1].sum() > 0
    for a, b in zip(fl, it):
        assert (a.numpy() == b).mean() > 0.9


def test_bias_round_trips_and_stays_out_of_bias_free_dicts(loihi2):
    c = compile_network(_net("LIF", "rec_first", (True, False), 0), loihi2, 16)
    d = c.to_dict()
    assert "bias_int" in d["layers"][0] and "bias" not in d["layers"][1]
    back = CompiledNetwork.from_dict(d)
    np.testing.assert_array_equal(back.layers[0].bias_int, c.layers[0].bias_int)
    np.testing.assert_array_equal(back.layers[0].bias, c.layers[0].bias)
    assert back.layers[1].bias is None


def test_bias_counts_in_the_scale(loihi2):
    """A large bias takes the weight bits: it fits them, and the weights get fewer."""
    base = _net("IF", "dense", (False, False), 5)
    big = Network((nodes.Dense(base.layers[0].synapse.weight, bias=np.full(10, 50.0, "f")),
                   *base.nodes[1:]), input_shape=(8,), steps=T)
    small, large = (compile_network(n, loihi2, 16).layers[0] for n in (base, big))
    assert large.scale < small.scale and np.abs(large.bias_int).max() <= 254


def test_netx_carries_a_conv_bias_and_refuses_one_without_a_steady_tap(loihi2):
    """A 'same'-padded conv's bias goes through always-on input channels (netx accepts it,
    tests/export/test_netx_conv_bias.py checks it spike for spike); a kernel with no tap in
    bounds at every output position is refused by name."""
    c = compile_network(_net("LIF", "conv", (True, False), 0), loihi2, 16)
    netx.check_network(c)
    blind = compile_network(Network((nodes.Conv2d(np.ones((2, 1, 1, 1), "f"), padding=(1, 1),
                                                  bias=np.ones(2, "f")), NEURONS["LIF"][0]),
                                    input_shape=(1, 4, 4), steps=T), loihi2, 16)
    with pytest.raises(ExportError, match="layers conv1.*no kernel tap.*bias=False"):
        netx.check_network(blind)


def test_relays_per_layer(loihi2):
    c = compile_network(_net("IF", "dense", (True, True), 1), loihi2, 16)
    lines, relays = relay_counts(c)
    m = -(-(c.layers[0].v_th_mant + 1) // 254)
    assert relays == [1, 0] and lines == max(1, m)
