"""rewire's NIR reader reads rewire's own files exactly in the forms the writer uses for
other readers: LIF, LI and IF with r = 1, IF read as ``v += r S`` per step (rewire's files
before that, IF with r = 1/dt, still read as written), the spike fields in the neuron
nodes' metadata (``rewire.<field>``), biases as ``nir.Affine``."""

from __future__ import annotations

import dataclasses

import nir
import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

import rewire
from rewire.errors import LoweringError
from rewire.export import nir_graph
from rewire.frontends.nir import lower
from rewire.ir import dynamics, nodes
from rewire.ir.compiled import float_network
from rewire.ir.network import Network
from rewire.ir.spike_metadata import from_metadata, to_metadata

from conftest import examples

T = 12


def _net(neuron, readout=None, recurrent=False, seed=0, bias=False) -> Network:
    rng = np.random.default_rng(seed)
    sd = 3.0 if neuron.kind == "LIF" else 1.0
    b = (lambda n: rng.normal(0, 0.3, n).astype(np.float32)) if bias else (lambda n: None)
    w1 = rng.normal(0.2, sd, (9, 5))
    first = nodes.RecurrentDense(w1, rng.normal(0, 0.5, (9, 9)), bias=b(9)) if recurrent \
        else nodes.Dense(w1, bias=b(9))
    last = readout or neuron
    return Network(nodes=(first, neuron, nodes.Dense(rng.normal(0.2, sd, (3, 9)), bias=b(3)),
                          last), input_shape=(5,), steps=T, encoding="rate")


def _spikes(seed=1):
    rng = np.random.default_rng(seed)
    return torch.as_tensor((rng.random((T, 4, 5)) < 0.4).astype(np.float32))


def _same(ir: Network, back: Network):
    for a, b in zip(ir.layers, back.layers):
        np.testing.assert_array_equal(a.synapse.weight, b.synapse.weight)
        assert a.neuron == b.neuron
    x = _spikes()
    np.testing.assert_array_equal(dynamics.run(back, x)[-1].numpy(),
                                  dynamics.run(ir, x)[-1].numpy())


CASES = [(nodes.LIF(250.0, v_th=1.5, dt=1e-3), None), (nodes.IF(v_th=2.0, dt=5e-4), None),
         (nodes.LIF(250.0, dt=1e-3), nodes.LI(100.0, dt=1e-3)),
         (nodes.CubaLIF(400.0, 250.0, dt=1e-3), nodes.CubaLI(400.0, 250.0, dt=1e-3))]


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("neuron, readout", CASES)
def test_r_one_files_read_back_exactly(neuron, readout, recurrent, tmp_path):
    """LIF/LI/IF nodes carry r = 1 and the model's own voltages; the file lowers to the same
    weights, the same neuron nodes and the same spikes."""
    ir = _net(neuron, readout, recurrent)
    graph = nir_graph.to_nir(ir)
    lif = graph.nodes["lif1"].nodes["lif"] if recurrent else graph.nodes["lif1"]
    if neuron.kind != "CubaLIF":
        assert np.all(lif.r == 1) and np.all(lif.v_threshold == neuron.v_th)
    nir.write(tmp_path / "m.nir", graph)
    _same(ir, lower(tmp_path / "m.nir"))


def test_compiled_and_float_ir_write_the_same_graph():
    """``to_nir`` of a compiled network is ``to_nir`` of its float IR plus the profile's
    metadata (one writer for both)."""
    net = rewire.compile(_net(nodes.IF(v_th=1.0, dt=1e-3)), "loihi2")
    a, b = nir_graph.to_nir(net), nir_graph.to_nir(float_network(net))
    assert list(a.nodes) == list(b.nodes) and a.edges == b.edges
    for name in a.nodes:
        for field, value in vars(a.nodes[name]).items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, getattr(b.nodes[name], field))
    assert {k: v for k, v in a.metadata.items()
            if k not in ("profile", "input_max_value", "rewire_warnings")} \
        == b.metadata


def test_an_old_rewire_if_file_still_reads_as_written():
    """rewire's files before r = 1 wrote IF with r = 1/dt (``v += dt r S``); such a file
    (format rewire-nir-1, an IF with r != 1) lowers to the same network."""
    ir = _net(nodes.IF(v_th=2.0, dt=1e-3))
    graph = nir_graph.to_nir(ir)
    for name in ("lif1", "lif2"):
        node = graph.nodes[name]
        graph.nodes[name] = nir.IF(r=node.r / 1e-3, v_threshold=node.v_threshold,
                                   v_reset=node.v_reset)
    _same(ir, lower(graph))


SPIKE = st.one_of(
    st.fixed_dictionaries({"reset": st.sampled_from(["set", "subtract"]),
                           "reset_delay": st.booleans(), "spike_at_threshold": st.booleans()}),
    st.fixed_dictionaries({"reset": st.just("subtract"), "spike_at_threshold": st.just(True),
                           "max_spikes": st.integers(2, 31)}))


@examples(25)
@given(kind=st.sampled_from(["CubaLIF", "LIF", "IF"]), spike=SPIKE,
       v_min=st.none() | st.floats(-4.0, 0.5), dt=st.sampled_from([1e-3, 5e-4, 1e-4]))
def test_property_spike_fields_round_trip_through_the_file(kind, spike, v_min, dt,
                                                          tmp_path_factory):
    """Property (25 random neurons under ``ci``): every spike field survives writer ->
    ``nir.write`` -> ``nir.read`` -> lower, the neuron node equal and the spikes identical;
    fields at their default leave no metadata."""
    neuron = {"CubaLIF": nodes.CubaLIF(2e-1 / dt, 1e-1 / dt, v_th=1.0, dt=dt),
              "LIF": nodes.LIF(1e-1 / dt, v_th=1.0, dt=dt), "IF": nodes.IF(v_th=1.0, dt=dt)}[kind]
    neuron = dataclasses.replace(neuron, v_min=v_min, **spike)
    ir = _net(neuron)
    path = tmp_path_factory.mktemp("nir") / "m.nir"
    nir.write(path, nir_graph.to_nir(ir))
    meta = nir.read(str(path)).nodes["lif1"].metadata
    defaults = {k: v for k, v in dataclasses.asdict(neuron).items()
                if k in ("reset", "reset_delay", "max_spikes", "spike_at_threshold", "v_min")
                and v == getattr(nodes.IF(), k)}
    assert not any(f"rewire.{k}" in meta for k in defaults)
    _same(ir, lower(path))


def test_spike_metadata_refuses_unknown_keys_and_bad_values():
    assert to_metadata(nodes.LI(100.0)) == {}
    assert from_metadata({"other": 1, "rewire.max_spikes": np.int64(3)}) == {"max_spikes": 3}
    for meta, key in (({"rewire.refractory": 2}, "rewire.refractory"),
                      ({"rewire.reset": "zero"}, "rewire.reset"),
                      ({"rewire.reset_delay": "yes"}, "rewire.reset_delay"),
                      ({"rewire.max_spikes": 1.5}, "rewire.max_spikes"),
                      ({"rewire.v_min": float("nan")}, "rewire.v_min")):
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            from_metadata(meta)


def test_a_bad_spike_field_in_a_file_is_refused_naming_the_node():
    graph = nir_graph.to_nir(_net(nodes.IF(v_th=1.0, dt=1e-3)))
    graph.nodes["lif1"].metadata["rewire.max_spikes"] = 0
    with pytest.raises(ValueError, match="lif1.*rewire.max_spikes"):
        lower(graph)


@pytest.mark.parametrize("recurrent", [False, True])
def test_biases_are_written_as_affine(recurrent):
    """A dense layer with a bias is ``nir.Affine`` with that bias (float64 of the float32),
    the input gain of a ``current`` net scaling the weights only."""
    ir = _net(nodes.CubaLIF(200.0, 100.0, dt=1e-3), recurrent=recurrent, bias=True)
    ir = dataclasses.replace(ir, encoding="current", input_gain=3.0)
    graph = nir_graph.to_nir(ir)
    fc1 = graph.nodes["fc1"]
    assert isinstance(fc1, nir.Affine) and isinstance(graph.nodes["fc2"], nir.Affine)
    np.testing.assert_array_equal(fc1.bias, ir.layers[0].synapse.bias.astype(np.float64))
    np.testing.assert_array_equal(fc1.weight, ir.layers[0].synapse.weight.astype(np.float64) * 3)


def test_a_conv_bias_is_written_into_conv2d():
    rng = np.random.default_rng(0)
    conv = nodes.Conv2d(rng.normal(0, 1, (2, 1, 3, 3)), padding=(1, 1),
                        bias=np.array([0.5, -0.25], np.float32))
    ir = Network(nodes=(conv, nodes.IF(dt=1e-3), nodes.Flatten(),
                        nodes.Dense(rng.normal(0, 1, (3, 2 * 4 * 4))), nodes.IF(dt=1e-3)),
                 input_shape=(1, 4, 4), steps=T)
    np.testing.assert_array_equal(nir_graph.to_nir(ir).nodes["conv1"].bias, [0.5, -0.25])


def test_biases_read_back_exactly():
    ir = _net(nodes.LIF(250.0, dt=1e-3), bias=True)
    _same(ir, lower(nir_graph.to_nir(ir)))


def _pool_net(pool_weight: float) -> Network:
    rng = np.random.default_rng(0)
    n = nodes.IF(v_th=1.0, dt=1e-4)
    return Network(nodes=(nodes.Conv2d(rng.normal(0.3, 1.0, (3, 1, 3, 3)), padding=(1, 1)), n,
                          nodes.SumPool2d((2, 2), (2, 2), (0, 0), pool_weight), n,
                          nodes.Flatten(), nodes.Dense(rng.normal(0.2, 1.0, (4, 48))), n),
                   input_shape=(1, 8, 8), steps=25, encoding="rate")


@pytest.mark.parametrize("pool_weight, differ", [(1.0, 0), (0.25, 0), (0.7, 0), (1 / 9, 25)])
def test_if_after_a_pool_divides_its_voltages_by_the_pool_weight(pool_weight, differ):
    """A LIF/IF after a sum pool has no input weight in NIR: the pool weight divides its
    voltages (``v_threshold = v_th / w``), the same dynamics in real numbers. In floating point
    ``sum(w x)`` against ``v_th`` and ``sum(x)`` against ``v_th / w`` can fall on different
    sides of a tie: pinned here, 25 of 600 output values differ for w = 1/9 (binary spikes
    make ``v`` land on the threshold exactly), none for 1, 0.25, 0.7 (rewire's reader reads
    the file as Norse does)."""
    ir = _pool_net(pool_weight)
    graph = nir_graph.to_nir(ir)
    assert graph.nodes["lif2"].v_threshold[0, 0, 0] == 1.0 / pool_weight
    x = torch.as_tensor((np.random.default_rng(3).random((25, 6, 1, 8, 8)) < 0.4)
                        .astype(np.float32))
    ref = dynamics.run(ir, x)[-1].numpy()
    back = lower(graph)
    assert back.layers[1].synapse.weight == 1.0
    assert int((dynamics.run(back, x)[-1].numpy() != ref).sum()) == differ
