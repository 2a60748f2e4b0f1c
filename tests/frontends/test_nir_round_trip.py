"""NIR frontend: rewire's own writer -> lower (and load) gives the same network, dense and
convolutional."""

from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest
import torch
from hypothesis import event, given, strategies as st

from rewire import compile as compile_network
from rewire.export import nir_graph
from rewire.frontends import nir as nir_frontend
from rewire.frontends.nir import lower
from rewire.ir.dynamics import run
from rewire.frontends.pooling import SumPool2d
from rewire.training.model import NeuronConfig

from conftest import examples
from export.test_nir import conv_cases, conv_inputs, conv_model  # noqa: F401
from export.test_onnx import EQUIV, block_network, case_inputs, cases

warnings.filterwarnings("ignore", message=".*not writable.*")


# ---------------------------------------------------------------------------------------------
# (a) round trip: rewire's own writer -> lower


@EQUIV
@given(case=cases, tau_syn_inv=st.floats(50, 800), tau_mem_inv=st.floats(20, 400),
       v_th=st.floats(0.25, 4.0), dt=st.sampled_from([1e-3, 5e-4, 1e-4]))
def test_round_trip_norse_nir_norse_and_ir_are_identical(loihi2, tmp_path_factory, case,
                                                         tau_syn_inv, tau_mem_inv, v_th, dt):
    """Property (25 examples x 8 = 200 random networks, random LIF constants and dt): Norse ->
    NIR file -> IR (lower) gives the same float32 weights, the constants to 1e-14 and
    bit-identical spike trains (the IR run by rewire.ir.dynamics), and -> torch (load) the
    same output spikes."""
    neuron = NeuronConfig(tau_syn_inv=tau_syn_inv * 1e-3 / dt, tau_mem_inv=tau_mem_inv * 1e-3 / dt,
                          v_th=v_th, dt=dt)
    model = block_network(case, steps=20, neuron=neuron)
    net = compile_network(model, loihi2, 16)
    path = nir_graph.write(net, tmp_path_factory.mktemp("nir") / "m.nir")
    module = nir_frontend.load(path)
    assert module.network.encoding == model.encoding
    assert module.input_gain == (model.input_gain if model.encoding == "current" else 1.0)
    x, seq = case_inputs(case, model)
    with torch.no_grad():
        ref = model.run_encoded(seq).numpy()
        arg = torch.as_tensor(x, dtype=torch.float32) if model.encoding == "current" else seq
        np.testing.assert_array_equal(module(arg).numpy(), ref)
    ir = lower(path)
    assert ir.source == "nir:rewire" and ir.encoding == model.encoding and ir.steps == 20
    assert [layer.name for layer in ir.layers] == [f"fc{k + 1}" for k in range(len(ir.layers))]
    for a, layer in zip(model.linears, ir.layers):
        assert layer.synapse.op == "dense" and layer.neuron.kind == "CubaLIF"
        np.testing.assert_array_equal(layer.synapse.weight, a.weight.detach().numpy())
        for field in ("tau_syn_inv", "tau_mem_inv", "v_th"):  # float32, as the LIFCell
            assert getattr(layer.neuron, field) == pytest.approx(
                float(np.float32(getattr(neuron, field))), rel=1e-14)
        assert layer.neuron.dt == pytest.approx(neuron.dt, rel=1e-14)
        assert layer.neuron.v_leak == layer.neuron.v_reset == 0.0
    np.testing.assert_array_equal(run(ir, seq)[-1].numpy(), ref)


def test_round_trip_keeps_decimal_constants_exactly(small_net, tmp_path):
    _, net = small_net
    ir = lower(nir_graph.write(net, tmp_path / "m.nir"))
    neuron = ir.layers[0].neuron
    assert (neuron.tau_syn_inv, neuron.tau_mem_inv, neuron.v_th, neuron.dt) == (
        net.neuron.tau_syn_inv, net.neuron.tau_mem_inv, net.neuron.v_th, net.neuron.dt)
    assert any("source rewire" in note for note in ir.notes)
    assert ir.input_gain == net.input_gain and ir.encoding == "current"


@examples(20)
@given(case=conv_cases)
def test_conv_round_trip_to_ir_is_identical(loihi2, case):
    """Property (20 random conv nets under ``ci``): SpikingConvNet -> compile -> NIR -> lower
    gives the same conv weights, the pool weight (float32), the constants to 1e-14 and the
    model's output spikes bit for bit."""
    model = conv_model(case)
    net = compile_network(model, loihi2, 16)
    ir = lower(nir_graph.to_nir(net))
    ops = [layer.synapse.op for layer in ir.layers]
    assert ops == ["conv" if not isinstance(m, (SumPool2d, torch.nn.Linear)) else
                   "sumpool" if isinstance(m, SumPool2d) else "dense" for m in model.layers]
    assert ir.layers[ops.index("dense")].flatten
    for m, layer in zip(model.layers, ir.layers):
        if layer.synapse.op == "sumpool":
            assert np.float32(layer.synapse.weight) == np.float32(model.pool_weight)
            assert layer.synapse.kernel == (m.kernel, m.kernel)
        else:
            np.testing.assert_array_equal(layer.synapse.weight, m.weight.detach().numpy())
        for field in ("tau_syn_inv", "tau_mem_inv", "v_th"):  # float32, as the LIFCell
            assert getattr(layer.neuron, field) == pytest.approx(
                float(np.float32(getattr(model.neuron, field))), rel=1e-14)
    seq = conv_inputs(model, case["seed"])
    with torch.no_grad():
        ref = model.run_encoded(seq).numpy()
    out = run(ir, seq.reshape(*seq.shape[:2], *model.input_shape))[-1].numpy()
    np.testing.assert_array_equal(out.reshape(ref.shape), ref)
    event(f"output {'spikes' if ref.sum() else 'silent'}")


def test_a_file_without_dt_needs_dt(small_net):
    """NIR stores no time step: a graph without ``metadata['dt']`` is refused naming ``dt`` and
    lowers with ``dt=``; a missing file is a FileNotFoundError."""
    _, net = small_net
    g = nir_graph.to_nir(net)
    no_dt = nir.NIRGraph(nodes=g.nodes, edges=g.edges, metadata={})
    with pytest.raises(ValueError, match="dt"):
        lower(no_dt)
    ir = lower(no_dt, dt=net.neuron.dt)
    assert tuple(int(np.prod(layer.out_shape)) for layer in ir.layers) == net.sizes[1:]
    with pytest.raises(FileNotFoundError):
        nir_frontend.read("/nonexistent/m.nir")
