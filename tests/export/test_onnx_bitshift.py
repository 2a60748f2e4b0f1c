"""Xylo's neuron (``BitshiftLIF``) in the three ONNX files: ``model_int.onnx`` (Scan and
per step) equals rewire's numpy integer model (:func:`rewire.compiler.simulate.simulate`:
16-bit saturation, bit-shift decays, up to 31 spikes per step) state for state and spike for
spike; the float files equal the float IR (:func:`rewire.ir.dynamics.run`). (~6 s)

The compiled networks are built here, not by the Xylo compiler: the IR net is compiled for
``loihi2`` (whose compiler keeps each layer's neuron, :class:`CompiledBitshiftLIF`), then
given int8 weights and int16 thresholds and the ``xylo`` profile (16-bit states)."""

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


def payload_for(seed=1):
    return np.random.default_rng(seed).integers(0, 16, (T, B, 16)).astype(np.int64)


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
       w_max=st.sampled_from([3, 40, 127]), seed=st.integers(0, 1000))
def test_integer_onnx_equals_numpy_model(ds, dm, th, w_max, seed):
    """Scan and per-step files equal ``simulate``'s output spikes at random dash values,
    thresholds and weight ranges (inputs up to 15 x 16 x 127 per step drive Isyn into
    saturation; the hidden layer's counts up to 31 reach the readout)."""
    net = xylo_compiled(ds, dm, th, seed, w_max)
    payload = payload_for(seed + 1)
    ref = simulate.simulate(net, payload)[-1]
    for build in (onnx_int.build, onnx_int.build_step):
        np.testing.assert_array_equal(onnx_int.run(build(net), payload), ref)


def test_integer_onnx_states_equal_numpy_model():
    """Per step, ``u`` (Isyn) and ``v`` (Vmem) of both layers equal the numpy model's, and
    the saturation at int16 is reached."""
    net = xylo_compiled(ds=(4, 1), dm=(8, 2), th=(32767, 3000))
    payload = payload_for(3)
    sess = session(onnx_int.build_step(net))
    ops = simulate.NumpyOps(net.profile.neuron)
    u = [np.zeros((B, l.shape[0]), np.int64) for l in net.layers]
    v = [np.zeros_like(x) for x in u]
    feeds = {f"{s}{k}": np.zeros((B, l.shape[0]), np.int64)
             for k, l in enumerate(net.layers) for s in "uv"}
    names = [o.name for o in sess.get_outputs()]
    saturated = False
    for x_t in payload:
        res = dict(zip(names, sess.run(None, {**feeds, "x": x_t})))
        s = x_t
        for k, layer in enumerate(net.layers):
            a = simulate.synaptic_input(layer, s)
            u[k], v[k], _, fire = layer.chip.int_step(ops, u[k], v[k], a)
            np.testing.assert_array_equal(res[f"u{k}_out"], u[k])
            np.testing.assert_array_equal(res[f"v{k}_out"], v[k])
            saturated |= bool(((v[k] == 32767) | (v[k] == -32768)).any())
            s = fire.astype(np.int64)
        feeds = {key: res[f"{key}_out"] for key in feeds}
    assert saturated


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
