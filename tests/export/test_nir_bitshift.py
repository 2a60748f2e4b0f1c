"""Xylo's neuron (``BitshiftLIF``) in NIR: rewire writes it as a ``CubaLIF`` whose ``tau``
and ``r`` make rockpool 3.1's reader and Xylo mapper recover both dash values and the
weights, reads its own node back as the same ``BitshiftLIF`` (round trip, bit for bit), and
the one difference Euler readers see is pinned (docs/formats.md, "Xylo's neuron"). (~4 s)"""

from __future__ import annotations

import copy
import dataclasses
import warnings

import nir
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from conftest import examples
from rewire.errors import CompileError
from rewire.export import nir_graph
from rewire.frontends.nir import lower
from rewire.ir import dynamics, nodes
from rewire.ir.network import Network

warnings.filterwarnings("ignore", category=DeprecationWarning, module="nirtorch")
T, B = 30, 8


def xylo_net(ds=(2, 1), dm=(3, 2), v_th=(1.0, 1.0), dt=1e-3, seed=0) -> Network:
    """Dense(16 -> 24) -> BitshiftLIF (31 spikes) -> Dense(24 -> 8) -> BitshiftLIF (1)."""
    rng = np.random.default_rng(seed)
    hidden = nodes.BitshiftLIF(ds[0], dm[0], v_th=v_th[0], dt=dt, max_spikes=31)
    readout = nodes.BitshiftLIF(ds[1], dm[1], v_th=v_th[1], dt=dt, max_spikes=1)
    return Network(nodes=(nodes.Dense(rng.normal(0.2, 0.6, (24, 16))), hidden,
                          nodes.Dense(rng.normal(0.1, 0.6, (8, 24))), readout),
                   input_shape=(16,), steps=T, encoding="rate")


def events(seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 16, (T, B, 16), generator=g).float() / 15


@examples(20)
@given(ds=st.tuples(st.integers(1, 15), st.integers(1, 15)),
       dm=st.tuples(st.integers(0, 15), st.integers(0, 15)),
       v_th=st.tuples(st.floats(0.1, 8.0), st.floats(0.1, 8.0)),
       dt=st.sampled_from([1e-3, 5e-4, 1e-4]))
def test_round_trip_reads_bitshift_back_exactly(ds, dm, v_th, dt):
    """rewire -> NIR -> rewire gives the same BitshiftLIF nodes and weights, and the same
    output spikes bit for bit."""
    net = xylo_net(ds, dm, v_th, dt)
    back = lower(nir_graph.to_nir(net))
    assert [l.neuron for l in back.layers] == [l.neuron for l in net.layers]
    for a, b in zip(back.layers, net.layers):
        np.testing.assert_array_equal(a.synapse.weight, b.synapse.weight)
    x = events()
    assert torch.equal(dynamics.run(back, x)[0], dynamics.run(net, x)[0])


def test_round_trip_through_a_file(tmp_path):
    net = xylo_net()
    path = tmp_path / "xylo.nir"
    nir.write(path, nir_graph.to_nir(net))
    back = lower(path)
    assert back.layers[0].neuron == net.layers[0].neuron
    x = events()
    ref = dynamics.run(net, x)[0]
    assert ref.sum() > 50 and torch.equal(dynamics.run(back, x)[0], ref)


def test_node_form():
    node = nir_graph.to_nir(xylo_net(dt=5e-4)).nodes["lif1"]
    assert isinstance(node, nir.CubaLIF)
    np.testing.assert_array_equal(node.tau_syn, np.full(24, 5e-4 * 4))
    np.testing.assert_array_equal(node.tau_mem, np.full(24, 5e-4 * 8))
    np.testing.assert_array_equal(node.r, np.full(24, 7.0))
    np.testing.assert_allclose(node.w_in, 3 / (1 - 1 / 8))
    meta = node.metadata
    assert (meta["rewire.kind"], meta["rewire.dash_syn"], meta["rewire.dash_mem"],
            meta["rewire.max_spikes"], meta["rewire.reset"]) == ("BitshiftLIF", 2, 3, 31,
                                                                 "subtract")
    assert "one step late" in meta["rewire.note"]


def test_dash_syn_zero_is_refused():
    with pytest.raises(CompileError, match="dash_syn = 0"):
        nir_graph.to_nir(xylo_net(ds=(0, 1)))


def test_edited_node_is_refused():
    graph = nir_graph.to_nir(xylo_net())
    node = graph.nodes["lif1"]
    graph.nodes["lif1"] = dataclasses.replace(node, tau_mem=node.tau_mem * 1.5)
    with pytest.raises(ValueError, match="tau_mem"):
        lower(graph)
    graph.nodes["lif1"] = dataclasses.replace(node, metadata={**node.metadata,
                                                              "rewire.kind": "Mystery"})
    with pytest.raises(ValueError, match="Mystery"):
        lower(graph)


@pytest.mark.parametrize("dt", [1e-3, 1e-4, 5e-4, 1e-2])
def test_rockpool_recovers_dash_values_and_weights(dt):
    """rockpool 3.1 ``from_nir`` builds ``LIFTorch`` with ``dt = min(tau_mem / (1 + r))`` (the
    file's dt, exactly); its Xylo graph module (``Xylo2Neurons._convert_from``, which needs
    samna to import) takes ``dash = log2(tau / dt)`` into an integer array: computed here the
    same way on rockpool's own graph, it gives every dash 1..15 back (rockpool refuses
    ``tau <= dt``, i.e. dash 0, itself). Weights and thresholds are read as written."""
    pytest.importorskip("rockpool")
    from rockpool.nn.modules import from_nir

    for dash in range(1, 16):
        net = xylo_net(ds=(dash, 16 - dash), dm=(16 - dash, dash), v_th=(1.5, 2.5), dt=dt)
        module = from_nir(copy.deepcopy(nir_graph.to_nir(net)))
        for name, layer, fc in (("lif1", net.layers[0], "fc1"), ("lif2", net.layers[1], "fc2")):
            lif = getattr(module, name)
            graph = lif.as_graph().output_nodes[0].source_modules[0]
            assert graph.dt == dt
            got = [np.array(np.log2(np.array(t).ravel() / graph.dt), dtype=np.int64)
                   for t in (graph.tau_syn, graph.tau_mem)]
            assert set(got[0]) == {layer.neuron.dash_syn}
            assert set(got[1]) == {layer.neuron.dash_mem}
            np.testing.assert_array_equal(np.array(graph.threshold), layer.neuron.v_th)
            weight = getattr(module, fc).weight.detach().numpy().T
            np.testing.assert_array_equal(weight, layer.synapse.weight)


def test_norse_reads_it_one_step_late():
    """Norse 1.1's ``from_nir`` reads the node as its Euler CubaLIF: the input reaches ``v``
    a step later than on Xylo, so its spikes differ (measured: 461 of 3,840 values on the
    readers' test net); snnTorch 1.0 refuses the node (it asserts ``r = tau_mem / dt``)."""
    from export.test_nir_readers import norse_run, snntorch_run

    net = xylo_net()
    x = events()
    ref = dynamics.run(net, x)[0].numpy()
    graph = nir_graph.to_nir(net)
    got = norse_run(graph, x)
    assert 0 < (got != ref).sum() < 0.5 * ref.size
    with pytest.raises(AssertionError, match="r not supported"):
        snntorch_run(graph, x)
