"""Conv biases in a netx file (rewire.compiler.conv_lines): always-on input channels and relay
channels, read through kernel taps that are in bounds at every output position. The integer
model of the lined network equals the biased one spike for spike, undelayed and Lava-delayed
(a hypothesis property over small random conv nets, no Lava), the file's layout, the
refusals by name, and Lava on two small nets (about 10 s each)."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from rewire.compiler import simulate as sim
from rewire.compiler.bias_lines import chip_cost, line_inputs, relay_counts, with_lines
from rewire.compiler.conv_lines import steady_taps
from rewire.compiler.quantize import compile_network
from rewire.errors import CompileError, ExportError, MappingError
from rewire.export import netx
from rewire.hw_profiles.profile import load_profile
from rewire.ir import nodes
from rewire.ir.compiled_layers import CompiledConv
from rewire.ir.network import Network

from conftest import requires_lava

NEURONS = {"LIF": nodes.LIF(100.0), "CubaLIF": nodes.CubaLIF(200.0, 100.0),
           "IF": nodes.IF(v_th=1.0)}


def _conv_net(seed, image=(1, 8, 8), convs=((3, 3, 1, 1), (4, 3, 2, 1)), pool=True,
              dense=5, biases=None, neuron="CubaLIF", groups=(1, 1), steps=10) -> Network:
    """Convs ``(C_out, k, stride, padding)`` (a 2x2 sum pool after the first with
    ``pool``), then a dense layer of ``dense`` (0: none); ``biases[j]`` per synapse layer
    (pool excluded; default all)."""
    rng = np.random.default_rng(seed)
    cell = NEURONS[neuron]
    c, h, w = image
    layers, j = [], 0
    n_syn = len(convs) + (1 if dense else 0)
    biases = biases if biases is not None else (True,) * n_syn

    def bias(n):
        return rng.normal(0.5, 1.0, n).astype(np.float32) if biases[j] else None

    for i, (co, k, s, p) in enumerate(convs):
        g = groups[i]
        wt = rng.normal(0.2, 2.0 / np.sqrt(c * k * k / g), (co, c // g, k, k)).astype(np.float32)
        layers += [nodes.Conv2d(wt, (s, s), (p, p), g, bias=bias(co)), cell]
        j += 1
        c, h, w = co, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if pool and i == 0:
            layers += [nodes.SumPool2d((2, 2)), nodes.IF(v_th=1.0)]
            h, w = h // 2, w // 2
    if dense:
        wt = rng.normal(0, 3.0 / np.sqrt(c * h * w), (dense, c * h * w)).astype(np.float32)
        layers += [nodes.Flatten(), nodes.Dense(wt, bias=bias(dense)), cell]
    return Network(nodes=tuple(layers), input_shape=image, steps=steps, encoding="current",
                   input_gain=3.0)


def _lined_payload(net, lined, lines, payload):
    ones = np.ones(payload.shape[:2] + (line_inputs(net, lines),), np.int64)
    return np.concatenate([payload, ones], -1)


def _check_lined(net, x):
    """The lined network's real neurons equal the biased network's in every layer, undelayed
    and Lava-delayed (on each layer's own window), and every relay fires at every step."""
    lined, lines = with_lines(net)
    payload = sim.encode_input(net, x)
    fed = _lined_payload(net, lined, lines, payload)
    ref = sim.simulate(net, payload, record_all=True)
    got = sim.simulate(lined, fed, record_all=True)
    for k, (r, g) in enumerate(zip(ref, got)):
        n = r.shape[-1]
        np.testing.assert_array_equal(g[..., :n], r, err_msg=f"layer {k} undelayed")
        assert g[..., n:].all(), f"layer {k}: a relay missed a step"
    steps = payload.shape[0]
    ref = sim.simulate(net, sim.pad_for_lava(net, payload), lava_delay=True, record_all=True)
    got = sim.simulate(lined, sim.pad_for_lava(lined, fed), lava_delay=True, record_all=True)
    for k, (r, g) in enumerate(zip(ref, got)):
        window = slice(k + 1, steps + k + 1)  # the steps this layer answers the input in
        np.testing.assert_array_equal(g[window, :, :r.shape[-1]], r[window],
                                      err_msg=f"layer {k} delayed")
    return ref


@st.composite
def _nets(draw):
    c0 = draw(st.sampled_from([1, 2]))
    h = draw(st.integers(4, 7))
    convs, groups, c, size, pool = [], [], c0, h, False
    for i in range(draw(st.integers(1, 2))):
        k = draw(st.integers(1, 3))
        p = draw(st.integers(0, 1))
        s = draw(st.integers(1, 2))
        co = draw(st.integers(1, 4))
        if size + 2 * p < k:
            break
        g = 2 if c % 2 == 0 and co % 2 == 0 and draw(st.booleans()) else 1
        convs.append((co, k, s, p))
        groups.append(g)
        c, size = co, (size + 2 * p - k) // s + 1
        if i == 0 and size >= 2 and draw(st.booleans()):
            pool, size = True, size // 2
    if not convs:
        convs, groups = [(2, 3, 1, 1)], [1]
    dense = draw(st.sampled_from([0, 3]))
    n_syn = len(convs) + (1 if dense else 0)
    biases = tuple(draw(st.booleans()) for _ in range(n_syn - 1))
    biases += (not any(biases) or draw(st.booleans()),)  # at least one bias
    neuron = draw(st.sampled_from(sorted(NEURONS)))
    return dict(seed=draw(st.integers(0, 2**16)), image=(c0, h, h), convs=tuple(convs),
                pool=pool, dense=dense, biases=biases, neuron=neuron, groups=tuple(groups),
                steps=6)


@pytest.mark.filterwarnings("ignore::rewire.errors.RewireWarning")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_nets())
def test_lined_conv_nets_equal_the_biased_integer_model(spec):
    """Property (100 examples, ~5 s): random conv nets (1-2 convs, kernels 1-3, strides 1-2,
    padding 0-1, groups, an optional sum pool and dense tail, biases on any layers, LIF /
    CubaLIF / IF), or a refusal naming a layer that has no tap in bounds everywhere."""
    net = compile_network(_conv_net(**spec), load_profile("loihi2"), 16)
    try:
        lines, relays = relay_counts(net)
    except CompileError as exc:
        blind = [l.name for l in net.layers if isinstance(l, CompiledConv) and not steady_taps(l)]
        assert blind and any(f"{n} (" in str(exc) for n in blind), str(exc)
        event("refused: no tap in bounds everywhere")
        return
    x = np.random.default_rng(spec["seed"]).random((3,) + spec["image"])
    ref = _check_lined(net, x)
    event(f"compared: {'biased' if lines else 'no bias'}, output "
          f"{'spikes' if ref[-1].any() else 'silent'}")
    assert relays[-1] == 0 and (lines > 0) == any(l.bias_int is not None for l in net.layers)


def test_netx_layout_of_conv_biases(loihi2, tmp_path):
    """Always-on input channels in the ``input`` layer's shape, the bias on the centre tap of
    the first always-on channel, relay channels after the real ones, the dense tail reading a
    relay channel's first pixel, and the counts in the file."""
    net = compile_network(_conv_net(0), loihi2, 16)
    lines, relays = relay_counts(net)
    cost = chip_cost(net)
    assert relays == [1, 2, 1, 0] and cost["relay_neurons"] == 64 + 2 * 16 + 4
    path = netx.write(net, tmp_path / "c.net")
    with h5py.File(path) as f:
        assert f.attrs["rewire_bias_lines"] == lines >= 1
        assert f.attrs["rewire_bias_relay_neurons"] == cost["relay_neurons"]
        np.testing.assert_array_equal(f["layer/0/shape"][()], (1 + lines, 8, 8))
        k1 = f["layer/1/weight"][()]
        assert k1.shape == (3 + relays[0], 1 + lines, 3, 3)
        np.testing.assert_array_equal(k1[:3, 1, 1, 1], net.layers[0].bias_int)
        assert not k1[:3, 2:].any() and (k1[3:, 1:, 1, 1] == 254).sum() == lines
        assert f["layer/2/groups"][()] == 1 and f["layer/2/weight"].shape[:2] == (3 + 2, 3 + 1)
        k3 = f["layer/3/weight"][()]
        np.testing.assert_array_equal(k3[:4, 3, 1, 1], net.layers[2].bias_int)
        fc = f["layer/5/weight"][()]  # layer 4 is the flatten
        assert fc.shape == (5, 4 * 2 * 2 + 4)
        np.testing.assert_array_equal(fc[:, 16], net.layers[3].bias_int)
        assert f["layer/3"].attrs["rewire_relays"] == 1
    _check_lined(net, np.random.default_rng(1).random((4, 1, 8, 8)))


def test_conv_bias_refusals_name_the_layer(loihi2):
    """A 1x1 conv with padding reads only padding at its border: no channel-wide input, so
    its bias is refused by name, with the fix; relays that do not fit the cores too."""
    net = compile_network(_conv_net(0, convs=((3, 1, 1, 1),), pool=False, dense=0), loihi2, 16)
    with pytest.raises(ExportError, match=r"layers conv1 \(\w+\): no kernel tap is in bounds.*"
                                          r"bias=False.*'same' padding"):
        netx.check_network(net)
    small = dataclasses.replace(loihi2, limits=dataclasses.replace(loihi2.limits,
                                                                   neurons_per_core=192))
    net = compile_network(_conv_net(0, pool=False, dense=0), small, 16, cores=2)
    assert [l.shape[0] for l in net.layers] == [192, 64]  # one core each
    with pytest.raises(MappingError, match=r"bias relays \(64 relay neurons, \d+ always-on"):
        with_lines(net)  # conv1 with its relay channel needs 256 neurons: a third core


@pytest.mark.lava
@requires_lava
@pytest.mark.parametrize("spec", [dict(seed=3), dict(seed=4, neuron="LIF", image=(2, 6, 6),
                                                     convs=((4, 3, 1, 0), (2, 2, 2, 0)),
                                                     pool=False, groups=(2, 2),
                                                     biases=(False, True, True))],
                         ids=["conv-pool-conv-dense-CubaLIF", "grouped-LIF"])
def test_lava_runs_conv_biases_spike_exact(loihi2, tmp_path, spec):
    """4 samples each (~10 s): Lava equals the integer model of the biased conv net."""
    from rewire.export.lava_run import run_netx

    net = compile_network(_conv_net(**spec), loihi2, 16)
    path = netx.write(net, tmp_path / "c.net")
    x = np.random.default_rng(5).random((4,) + net.input_shape)
    payload = sim.encode_input(net, x)
    ref = sim.simulate(net, payload)[-1]
    assert ref.sum() > 0, "test network should spike"
    np.testing.assert_array_equal(run_netx(path, payload, aligned=True), ref)
