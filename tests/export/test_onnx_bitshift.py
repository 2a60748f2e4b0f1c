"""Xylo's neuron (``BitshiftLIF``) in the three ONNX files: ``model_int.onnx`` (Scan and
per step) equals rewire's numpy integer model (:func:`rewire.compiler.simulate.simulate`:
input clipped at 15 events, ordered saturating accumulation, bit-shift decays, up to 31
spikes per step; with and without the chip's delays) state for state and spike for spike,
and with the chip's delays XyloSim; the float files equal the float IR
(:func:`rewire.ir.dynamics.run`). (~9 s)

:func:`xylo_compiled` builds random-weight nets directly (an IR net compiled for ``loihi2``,
whose compiler keeps each layer's :class:`CompiledBitshiftLIF`, then given int8 weights,
int16 thresholds and the ``xylo`` profile), so that dash values, thresholds and weights range
freely; the recurrent and user-model tests go through the Xylo compiler."""

from __future__ import annotations

import dataclasses
import functools
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from conftest import examples
from rewire.compiler import simulate
from rewire.compiler.quantize import compile_network
from rewire.export import onnx_int, onnx_step, onnx_unrolled
from rewire.export.onnx_graph import session
from rewire.hw_profiles.profile import load_profile
from rewire.ir import dynamics, nodes
from rewire.ir.chip_bitshift import CompiledBitshiftLIF
from rewire.ir.compiled import float_network
from rewire.ir.network import Network

T, B = 20, 6


@functools.lru_cache(maxsize=None)
def _base(hidden: int):
    """A compiled 16 -> hidden -> 8 net of BitshiftLIF layers (compiled once)."""
    rng = np.random.default_rng(0)
    ir = Network(nodes=(nodes.Dense(rng.normal(0, 1, (hidden, 16))),
                        nodes.BitshiftLIF(2, 3, v_th=20.0, max_spikes=31),
                        nodes.Dense(rng.normal(0, 1, (8, hidden))),
                        nodes.BitshiftLIF(1, 2, v_th=20.0, max_spikes=1)),
                 input_shape=(16,), steps=T, encoding="current", input_gain=15.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compile_network(ir, load_profile("loihi2"), 15)


def xylo_compiled(ds=(2, 1), dm=(3, 2), th=(600, 900), seed=0, w_max=127, hidden=24):
    """A 16 -> hidden (31 spikes) -> 8 (1 spike) net of BitshiftLIF layers, current input
    0..15 per channel and step, int8 weights ``|w| <= w_max``, int16 thresholds ``th``;
    float weights = integer ones (scale 1), so float and integer models agree."""
    rng = np.random.default_rng(seed)
    net = _base(hidden)
    layers = []
    for k, (layer, v_th) in enumerate(zip(net.layers, th)):
        w = rng.integers(-w_max, w_max + 1, layer.weight_int.shape).astype(np.int32)
        neuron = dataclasses.replace(layer.neuron, v_th=float(v_th), dash_syn=ds[k],
                                     dash_mem=dm[k])
        chip = CompiledBitshiftLIF(neuron=neuron, i_decay=neuron.dash_syn,
                                   v_decay=neuron.dash_mem, v_th_mant=int(v_th))
        layers.append(dataclasses.replace(layer, weight=w.astype(np.float32), weight_int=w,
                                          scale=1.0, input_scale=1.0, chip=chip))
    return dataclasses.replace(net, layers=tuple(layers), profile=load_profile("xylo"))


def payload_for(seed=1, top=15):
    """Input events ``(T, B, 16)`` in ``0..top`` (Xylo clips above 15)."""
    return np.random.default_rng(seed).integers(0, top + 1, (T, B, 16)).astype(np.int64)


def test_compiled_test_net_is_xylo_like():
    net = xylo_compiled()
    assert net.profile.neuron.state_bits == 16
    assert [type(l.chip) for l in net.layers] == [CompiledBitshiftLIF] * 2
    out = simulate.simulate(net, payload_for(), record_all=True)
    assert out[0].max() > 1 and out[-1].sum() > 0  # several spikes per step; readout fires


@examples(12)
@given(ds=st.tuples(st.integers(0, 15), st.integers(0, 15)),
       dm=st.tuples(st.integers(0, 15), st.integers(0, 15)),
       th=st.tuples(st.integers(1, 32767), st.integers(1, 32767)),
       w_max=st.sampled_from([3, 40, 127]), seed=st.integers(0, 1000),
       chip_delay=st.booleans())
def test_integer_onnx_equals_numpy_model(ds, dm, th, w_max, seed, chip_delay):
    """Scan and per-step files equal ``simulate``'s output spikes, with and without the
    chip's delays, at random dash values, thresholds and weight ranges; inputs 0..20 events
    (clipped at 15), up to 15 x 16 x 127 per step into the ordered saturating accumulation;
    the hidden layer's counts up to 31 reach the readout."""
    net = xylo_compiled(ds, dm, th, seed, w_max)
    payload = payload_for(seed + 1, top=20)
    ref = simulate.simulate(net, payload, chip_delay=chip_delay)[-1]
    for build in (onnx_int.build, onnx_int.build_step):
        got = onnx_int.run(build(net, chip_delay=chip_delay), payload)
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("chip_delay", [False, True])
def test_integer_onnx_states_equal_numpy_model(chip_delay):
    """Per step, ``u`` (Isyn) and ``v`` (Vmem) of both layers equal the numpy model's
    (:func:`rewire.compiler.simulate.simulate_states`), ``Isyn`` saturating at int16 during
    the ordered accumulation."""
    net = xylo_compiled(ds=(4, 1), dm=(8, 2), th=(32767, 3000))
    payload = payload_for(3, top=20)
    rec = simulate.simulate_states(net, payload, chip_delay=chip_delay)
    sess = session(onnx_int.build_step(net, chip_delay=chip_delay))
    names = [o.name for o in sess.get_outputs()]
    feeds = {i.name: np.zeros((B, i.shape[1]), np.int64) for i in sess.get_inputs()[1:]}
    for t, x_t in enumerate(payload):
        res = dict(zip(names, sess.run(None, {**feeds, "x": x_t})))
        for k in range(len(net.layers)):
            np.testing.assert_array_equal(res[f"u{k}_out"], rec[k].u[t])
            np.testing.assert_array_equal(res[f"v{k}_out"], rec[k].v[t])
        feeds = {key: res[f"{key}_out"] for key in feeds}
    assert (np.abs(rec[0].u) >= 2 ** 14).any() and rec[0].out.sum() > 0


def test_bitshift_decay_rounds_like_the_chip():
    """``x - dec(x, d)`` on ONNX equals numpy's for every int16 value and d = 0..15."""
    from onnx import TensorProto, helper

    from rewire.export.onnx_graph import GraphBuilder
    from rewire.export.onnx_int_ops import OnnxIntOps

    nfmt = load_profile("xylo").neuron
    x = np.arange(-32768, 32768, dtype=np.int64).reshape(1, -1)
    for d in range(16):
        b = GraphBuilder()
        ops = OnnxIntOps(b, nfmt)
        out = ops.bitshift_decay("x", d, "t")
        b.op("Identity", [ops.saturate(out)], "y")
        graph = helper.make_graph(b.nodes, "g", [helper.make_tensor_value_info(
            "x", TensorProto.INT64, [1, x.shape[1]])], [helper.make_tensor_value_info(
                "y", TensorProto.INT64, [1, x.shape[1]])], initializer=b.init)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        got = session(model).run(["y"], {"x": x})[0]
        np.testing.assert_array_equal(got, simulate.NumpyOps(nfmt).bitshift_decay(x, d, "t"))


@pytest.mark.parametrize("ds, dm", [((2, 1), (3, 2)), ((1, 5), (15, 0)), ((7, 3), (1, 12))])
def test_float_onnx_equals_float_ir(ds, dm):
    """Step and unrolled files give the float IR's spikes (counts) exactly and its states to
    float32 rounding (``MatMul`` vs ``F.linear``)."""
    net = xylo_compiled(ds, dm)
    ir = float_network(net)
    x = np.random.default_rng(5).integers(0, 16, (B, 16)) / 15
    want = dynamics.run(ir, dynamics.encode(ir, torch.tensor(x, dtype=torch.float32)))[0]
    assert want.sum() > 0
    got = onnx_step.run(onnx_step.build(net), x)
    np.testing.assert_array_equal(got, want.numpy())
    np.testing.assert_array_equal(onnx_unrolled.run(onnx_unrolled.build(net), x), want.numpy())


def test_user_model_compiled_for_xylo_exports_exactly(tmp_path):
    """A model written by a user (16 -> 20 LIFBitshiftCell (31 spikes) -> 8 LIFBitshiftCell,
    a time loop) compiled with ``rewire.compile(model, "xylo")``: ``model_int.onnx`` equals
    ``simulate`` with and without the chip's delays, the float files the float IR, and the
    NIR file reads back to the same BitshiftLIF layers."""
    import rewire
    from rewire.export import nir_graph
    from rewire.frontends.nir import lower as lower_nir

    from frontends.test_bitshift_lowering import LoopNet

    torch.manual_seed(4)
    model = LoopNet(rewire.LIFBitshiftCell(2, 3, v_th=1.0, max_spikes=31),
                    rewire.LIFBitshiftCell(1, 2, v_th=1.0, max_spikes=1))
    model.fc1.bias, model.fc2.bias = None, None  # Xylo's weight matrices hold no bias
    rng = np.random.default_rng(7)
    x = rng.integers(0, 16, (B, 16)) / 15
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = rewire.compile(model, "xylo", steps=T, encoding="current", input_gain=1.0,
                             calibration=x)
    payload = simulate.encode_input(net, x)
    for chip_delay in (False, True):
        ref = simulate.simulate(net, payload, chip_delay=chip_delay)[-1]
        assert ref.sum() > 0
        np.testing.assert_array_equal(
            onnx_int.run(onnx_int.build(net, chip_delay=chip_delay), payload), ref)
    ir = float_network(net)
    want = dynamics.run(ir, dynamics.encode(ir, torch.tensor(x, dtype=torch.float32)))[0]
    assert want.sum() > 0
    np.testing.assert_array_equal(onnx_unrolled.run(onnx_unrolled.build(net), x), want.numpy())
    back = lower_nir(nir_graph.write(net, tmp_path / "m.nir"))
    assert [l.neuron for l in back.layers] == [l.neuron for l in ir.layers]


def test_integer_onnx_with_chip_delay_is_xylosim():
    """``model_int.onnx`` built with ``chip_delay=True`` gives XyloSim 0.1.3's output spikes
    (the specification of :mod:`rewire.export.xylo_spec` run by :mod:`rewire.export.xylo_run`)
    on a compiled 16-24-8 net, inputs 0..20 events (the chip clips at 15)."""
    from rewire.export.xylo_run import run_specification, xylosim_missing
    from rewire.export.xylo_spec import specification

    if xylosim_missing():
        pytest.skip(xylosim_missing())
    net = xylo_compiled(w_max=60)
    payload = payload_for(9, top=20)
    got = onnx_int.run(onnx_int.build(net, chip_delay=True), payload)
    want = run_specification(specification(net), payload)["Spikes_out"]
    assert want.sum() > 0
    np.testing.assert_array_equal(got, want)


def test_recurrent_hidden_layer():
    """A recurrent hidden layer (``RecurrentDense``: Xylo's ``weights_rec`` block) compiled for
    ``xylo``: the integer files accumulate its own spikes of the step before after the input
    (as ``simulate``), the float files equal the float IR."""
    rng = np.random.default_rng(2)
    ir = Network(nodes=(nodes.RecurrentDense(rng.normal(0, 1, (20, 16)),
                                             rng.normal(0, 0.5, (20, 20))),
                        nodes.BitshiftLIF(2, 3, v_th=1.0, max_spikes=31),
                        nodes.Dense(rng.normal(0, 1, (8, 20))),
                        nodes.BitshiftLIF(1, 2, v_th=1.0)),
                 input_shape=(16,), steps=T, encoding="current", input_gain=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = compile_network(ir, load_profile("xylo"), 15)
    assert net.layers[0].recurrent
    x = rng.integers(0, 16, (B, 16)) / 15
    payload = simulate.encode_input(net, x)
    for chip_delay in (False, True):
        ref = simulate.simulate(net, payload, chip_delay=chip_delay)[-1]
        assert ref.sum() > 0
        for build in (onnx_int.build, onnx_int.build_step):
            np.testing.assert_array_equal(
                onnx_int.run(build(net, chip_delay=chip_delay), payload), ref)
    fl = float_network(net)
    want = dynamics.run(fl, dynamics.encode(fl, torch.tensor(x, dtype=torch.float32)))[0]
    np.testing.assert_array_equal(onnx_step.run(onnx_step.build(net), x), want.numpy())
