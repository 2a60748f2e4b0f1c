"""Every exporter carries every IR neuron kind and the recurrent edge: the float ONNX step
equals the float IR (rewire.ir.dynamics), the integer ONNX equals the integer simulator, the
NIR file holds the right node types and a recurrent subgraph, netx refuses a readout by name,
and the compiled network saves and reloads."""

from __future__ import annotations

import json

import h5py
import nir
import numpy as np
import pytest
import torch

import rewire
from rewire.compiler import simulate
from rewire.errors import CompileError
from rewire.export import nir_graph, onnx_int, onnx_step, onnx_unrolled
from rewire.ir import dynamics, nodes
from rewire.ir.compiled import CompiledNetwork, float_network
from rewire.ir.network import Network

T = 10
NEURONS = {
    "CubaLIF": nodes.CubaLIF(200.0, 100.0, v_th=1.0),
    "LIF": nodes.LIF(100.0, v_th=1.0),
    "IF": nodes.IF(v_th=1.0),
}
READOUTS = {"LI": nodes.LI(100.0), "CubaLI": nodes.CubaLI(200.0, 100.0), None: None}


def _network(kind: str, readout, recurrent: bool, encoding: str, seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    neuron = NEURONS[kind]
    sd = 6.0 if kind == "LIF" else 1.5  # input straight into v: 1/10 of it per step
    w1 = rng.normal(0, sd, (12, 8)) * (rng.random((12, 8)) < 0.6)
    first = nodes.RecurrentDense(w1, rng.normal(0, 0.8, (12, 12)) * (rng.random((12, 12)) < 0.3)) \
        if recurrent else nodes.Dense(w1)
    last = READOUTS[readout] or neuron
    return Network(nodes=(first, neuron, nodes.Dense(rng.normal(0, sd, (4, 12))), last),
                   input_shape=(8,), steps=T, encoding=encoding, input_gain=3.0)


def _inputs(net: Network, seed: int = 1):
    rng = np.random.default_rng(seed)
    if net.encoding == "current":
        return rng.random((6, 8)).astype(np.float32)
    return (rng.random((T, 6, 8)) < 0.4).astype(np.float32)


CASES = [(k, r, rec, enc) for k in NEURONS for r in READOUTS for rec in (False, True)
         for enc in ("current", "rate") if not (rec and k == "IF" and enc == "current")]


@pytest.mark.parametrize("kind, readout, recurrent, encoding", CASES)
def test_onnx_files_equal_the_ir(kind, readout, recurrent, encoding, tmp_path):
    ir = _network(kind, readout, recurrent, encoding)
    net = rewire.compile(ir, "loihi2", input_max_value=16)
    x = _inputs(ir)
    ours = dynamics.run(ir, dynamics.encode(ir, torch.as_tensor(x)))[-1].numpy()
    if readout is None:
        assert ours.sum() > 0
    step = onnx_step.run(onnx_step.write(net, tmp_path / "s.onnx"), x)
    np.testing.assert_array_equal(step, ours)
    unrolled = onnx_unrolled.run(onnx_unrolled.write(net, tmp_path / "u.onnx"), x)
    np.testing.assert_array_equal(unrolled, ours)
    payload = simulate.encode_input(net, x)
    ref = simulate.simulate(net, payload)[-1]
    got = onnx_int.run(onnx_int.write(net, tmp_path / "i.onnx"), payload)
    np.testing.assert_array_equal(got, ref)
    if readout is None:
        assert ref.sum() > 0


def test_nir_file_has_each_neuron_kind_and_the_recurrent_subgraph(tmp_path):
    for kind, cls in (("CubaLIF", nir.CubaLIF), ("LIF", nir.LIF), ("IF", nir.IF)):
        net = rewire.compile(_network(kind, "LI", True, "rate"), "loihi2")
        graph = nir.read(str(nir_graph.write(net, tmp_path / f"{kind}.nir")))
        rec = graph.nodes["lif1"]
        assert isinstance(rec, nir.NIRGraph)
        assert isinstance(rec.nodes["lif"], cls)
        assert ("w_rec", "lif") in rec.edges and ("lif", "w_rec") in rec.edges
        np.testing.assert_array_equal(rec.nodes["w_rec"].weight, net.layers[0].weight_rec)
        assert isinstance(graph.nodes["lif2"], nir.LI)


def test_netx_refuses_a_readout_by_name_and_writes_dense_rec(tmp_path):
    net = rewire.compile(_network("CubaLIF", "LI", False, "rate"), "loihi2")
    with pytest.raises(CompileError, match="layer fc2 .* LI leaky-integrator readout"):
        rewire.export.write(net, tmp_path / "a")
    assert not (tmp_path / "a").exists()  # refused before anything was written
    files = rewire.export.write(net, tmp_path / "b", formats=["onnx", "nir"])
    assert set(files) == {"onnx_step", "onnx_unrolled", "onnx_int", "nir"}
    rec = rewire.compile(_network("CubaLIF", None, True, "rate"), "loihi2")
    path = rewire.export.write(rec, tmp_path / "c", formats=["netx"])["netx"]
    with h5py.File(path, "r") as f:
        assert f["layer/0/type"][0] == b"dense_rec"
        np.testing.assert_array_equal(f["layer/0/weight_rec"][()], rec.layers[0].weight_rec_int)


def test_export_write_refuses_unknown_and_foreign_formats(tmp_path):
    net = rewire.compile(_network("CubaLIF", None, False, "rate"), "loihi2")
    with pytest.raises(ValueError, match="unknown export format"):
        rewire.export.write(net, tmp_path, formats=["tflite"])
    truenorth_like = rewire.load_profile("loihi2")
    object.__setattr__(truenorth_like, "formats", ("onnx",))
    foreign = rewire.compile(_network("CubaLIF", None, False, "rate"), truenorth_like)
    with pytest.raises(ValueError, match="not \\['netx'\\]"):
        rewire.export.write(foreign, tmp_path, formats=["netx"])


@pytest.mark.parametrize("kind, readout, recurrent", [("CubaLIF", None, True),
                                                       ("IF", "LI", False)])
def test_compiled_network_saves_and_reloads(kind, readout, recurrent):
    net = rewire.compile(_network(kind, readout, recurrent, "current"), "loihi2",
                         input_max_value=16)
    back = CompiledNetwork.from_dict(json.loads(json.dumps(net.to_dict())))
    assert [l.name for l in back.layers] == [l.name for l in net.layers]
    for a, b in zip(net.layers, back.layers):
        np.testing.assert_array_equal(a.weight_int, b.weight_int)
        assert a.neuron == b.neuron and (a.i_decay, a.v_decay, a.v_th_mant) == \
            (b.i_decay, b.v_decay, b.v_th_mant)
    assert back.mapping.to_dict() == net.mapping.to_dict()
    ir = float_network(back)
    assert Network.from_dict(json.loads(json.dumps(ir.to_dict()))).layers[0].neuron == \
        net.layers[0].neuron
    with pytest.raises(ValueError, match="reads versions"):
        CompiledNetwork.from_dict({**net.to_dict(), "version": 1})


def test_core_mapping_counts_recurrent_synapses():
    """The cores are charged for every synapse of a recurrent layer, W_rec included, so the
    chip's synapse and fan-in limits hold for it too."""
    net = rewire.compile(_network("CubaLIF", None, True, "rate"), "loihi2")
    assert net.mapping.synapses_per_layer[0] == net.layers[0].synapses
    assert net.layers[0].synapses > int(np.count_nonzero(net.layers[0].weight_int))
    assert sum(net.mapping.synapses_per_layer) == net.synapses
