"""NIR export: the graph's contents and conventions, nir.write/nir.read, and the round trip
Norse -> NIR -> Norse with identical outputs."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from rewire.compile.quantize import compile_network
from rewire.export import nir_graph
from rewire.training.model import NeuronConfig

from test_onnx import EQUIV, block_network, case_inputs, cases


def test_graph_has_correct_time_constants_and_full_shapes(small_net):
    _, net = small_net
    g = nir_graph.to_nir(net)
    assert [type(g.nodes[n]).__name__ for n in ("input", "fc1", "lif1", "fc2", "lif2", "output")] \
        == ["Input", "Linear", "CubaLIF", "Linear", "CubaLIF", "Output"]
    lif = g.nodes["lif1"]
    n = net.layers[0].shape[0]
    for field in ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"):
        assert getattr(lif, field).shape == (n,), field  # Norse issue #412: full shapes
    neuron = net.neuron
    np.testing.assert_allclose(lif.tau_syn, 1 / neuron.tau_syn_inv)  # seconds, not dt/tau (#411)
    np.testing.assert_allclose(lif.tau_mem, 1 / neuron.tau_mem_inv)
    np.testing.assert_allclose(lif.r, neuron.tau_mem_inv ** -1 / neuron.dt)
    np.testing.assert_array_equal(lif.input_type["input"], [n])
    assert g.metadata["dt"] == neuron.dt and g.metadata["encoding"] == "current"
    np.testing.assert_allclose(g.nodes["fc1"].weight, net.layers[0].weight * net.input_gain,
                               rtol=1e-7)


def test_write_read_keeps_everything(small_net, tmp_path):
    _, net = small_net
    path = nir_graph.write(net, tmp_path / "m.nir")
    back = nir.read(str(path))
    g = nir_graph.to_nir(net)
    assert back.metadata["dt"] == g.metadata["dt"] and back.metadata["steps"] == net.steps
    assert set(back.nodes) == set(g.nodes) and sorted(back.edges) == sorted(g.edges)
    for name in ("fc1", "fc2"):
        np.testing.assert_array_equal(back.nodes[name].weight, g.nodes[name].weight)
    np.testing.assert_array_equal(back.nodes["lif2"].v_threshold, g.nodes["lif2"].v_threshold)
    assert nir_graph.from_nir(path).neuron == net.neuron  # decimal constants come back exactly


def test_euler_step_of_the_nir_equations_is_norse(small_net):
    """The NIR equations integrated with forward Euler at the metadata's dt (what snnTorch's
    and Norse's importers do) give the Norse model's spikes: checks the R, w_in and threshold
    scaling independently of :func:`nir_graph.from_nir`."""
    model, net = small_net
    g = nir_graph.to_nir(net)
    dt = g.metadata["dt"]
    x = torch.rand(3, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x).numpy()
    s_seq = np.broadcast_to(x.numpy().astype(np.float64), (net.steps, 3, 12))
    state = {}
    out = []
    for s in s_seq:
        for k in (1, 2):
            lif = g.nodes[f"lif{k}"]
            s = s @ g.nodes[f"fc{k}"].weight.T
            i, v = state.get(k, (0.0, 0.0))
            i = i + dt / lif.tau_syn * (-i + lif.w_in * s)
            v = v + dt / lif.tau_mem * (lif.v_leak - v + lif.r * i)
            z = v > lif.v_threshold
            v = np.where(z, lif.v_reset, v)
            state[k] = (i, v)
            s = z.astype(np.float64)
        out.append(s)
    assert ref.sum() > 0
    np.testing.assert_array_equal(np.stack(out), ref)


@EQUIV
@given(case=cases, tau_syn_inv=st.floats(50, 800), tau_mem_inv=st.floats(20, 400),
       v_th=st.floats(0.25, 4.0), dt=st.sampled_from([1e-3, 5e-4, 1e-4]))
def test_round_trip_norse_nir_norse_is_identical(loihi2, tmp_path_factory, case, tau_syn_inv,
                                                 tau_mem_inv, v_th, dt):
    """Property (25 examples x 8 = 200 random networks, random LIF constants and dt): Norse ->
    NIR file -> Norse gives the same weights, the constants to 1e-14 and bit-identical spike
    trains."""
    neuron = NeuronConfig(tau_syn_inv=tau_syn_inv * 1e-3 / dt, tau_mem_inv=tau_mem_inv * 1e-3 / dt,
                          v_th=v_th, dt=dt)
    model = block_network(case, steps=20, neuron=neuron)
    net = compile_network(model, loihi2, 16)
    path = nir_graph.write(net, tmp_path_factory.mktemp("nir") / "m.nir")
    back = nir_graph.from_nir(path)
    for field in ("tau_syn_inv", "tau_mem_inv", "v_th", "dt"):
        assert getattr(back.neuron, field) == pytest.approx(getattr(neuron, field), rel=1e-14)
    assert back.encoding == model.encoding
    assert back.input_gain == (model.input_gain if model.encoding == "current" else 1.0)
    for a, b in zip(model.linears, back.linears):
        assert torch.equal(a.weight, b.weight)
    _, seq = case_inputs(case, model)
    if model.encoding == "current":
        seq = seq / model.input_gain * back.input_gain
    with torch.no_grad():
        np.testing.assert_array_equal(back.run_encoded(seq).numpy(),
                                      model.run_encoded(seq).numpy())


def test_from_nir_refuses_what_it_cannot_import(small_net):
    _, net = small_net
    g = nir_graph.to_nir(net)
    no_dt = nir.NIRGraph(nodes=g.nodes, edges=g.edges, metadata={})
    with pytest.raises(ValueError, match="dt"):
        nir_graph.from_nir(no_dt)
    assert nir_graph.from_nir(no_dt, dt=1e-3).sizes == net.sizes
    g.nodes["lif1"] = nir.LIF(tau=np.ones(20), r=np.ones(20), v_leak=np.zeros(20),
                              v_threshold=np.ones(20))
    with pytest.raises(NotImplementedError, match="LIF"):
        nir_graph.from_nir(g)
    with pytest.raises(FileNotFoundError):
        nir_graph.read("/nonexistent/m.nir")
