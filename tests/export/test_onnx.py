"""ONNX exports: checker-clean files with metadata; float per-step and unrolled models equal
to Norse; the integer model equal to the chip's integer reference simulator."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import HealthCheck, Phase, assume, given, settings, strategies as st
from onnx import TensorProto, helper
from torch.nn import functional as F

from rewire.compiler import simulate
from rewire import compile as compile_network
from rewire.export import onnx_graph, onnx_int, onnx_step, onnx_unrolled
from rewire.ir.compiled_layers import CompiledConv
from rewire.training.conv import SpikingConvNet
from rewire.training.model import NeuronConfig, SpikingMLP

from conftest import random_network

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: no thread pool

BLOCKS = 8  # independent random networks per generated example (block-diagonal packing)
EQUIV = settings(max_examples=25, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
                 suppress_health_check=[HealthCheck.too_slow,
                                        HealthCheck.function_scoped_fixture])


def _block(layers: int):
    return st.fixed_dictionaries({
        "widths": st.tuples(*[st.integers(1, 8)] * (layers + 1)),
        "seed": st.integers(0, 2 ** 16), "gain": st.floats(2.0, 16.0),
        "density": st.floats(0.4, 1.0)})


#: One example = ``BLOCKS`` independent random networks of the same depth (1-3 layers) with
#: their own widths, weight scale, pruning and seed, run side by side as one block-diagonal
#: network (no synapse between blocks, so every block evolves exactly as it would alone),
#: plus the encoding, input gain and an input seed. 25 examples = 200 networks.
cases = st.integers(1, 3).flatmap(lambda layers: st.fixed_dictionaries({
    "blocks": st.lists(_block(layers), min_size=BLOCKS, max_size=BLOCKS),
    "encoding": st.sampled_from(["current", "rate"]),
    "input_gain": st.floats(1.0, 8.0), "seed": st.integers(0, 2 ** 16)}))


def block_network(case: dict, steps: int, neuron: NeuronConfig = NeuronConfig()) -> SpikingMLP:
    """The block-diagonal :class:`SpikingMLP` of a :data:`cases` example.

    Block ``b``'s weights are uniform in ``±gain / sqrt(fan-in)``, a fraction ``1 - density``
    of them pruned; a layer left with no synapse at all gets one (the compiler refuses
    all-zero layers).
    """
    blocks = case["blocks"]
    layers = len(blocks[0]["widths"]) - 1
    sizes = tuple(sum(b["widths"][l] for b in blocks) for l in range(layers + 1))
    model = SpikingMLP(sizes, steps=steps, encoding=case["encoding"], neuron=neuron,
                       input_gain=case["input_gain"])
    with torch.no_grad():
        for l, lin in enumerate(model.linears):
            w = torch.zeros(sizes[l + 1], sizes[l])
            r = c = 0
            for b in blocks:
                gen = torch.Generator().manual_seed(b["seed"] * 7 + l)
                n_in, n_out = b["widths"][l], b["widths"][l + 1]
                sub = (torch.rand(n_out, n_in, generator=gen) * 2 - 1) * b["gain"] / n_in ** 0.5
                sub *= torch.rand(n_out, n_in, generator=gen) < b["density"]
                w[r:r + n_out, c:c + n_in] = sub
                r, c = r + n_out, c + n_in
            if not w.abs().sum() > 0:
                w[0, 0] = 1.0
            lin.weight.copy_(w)
    return model


def case_inputs(case: dict, model: SpikingMLP, batch: int = 3):
    """Float input as the exporters take it and the Norse-encoded ``(T, B, n_in)`` sequence."""
    rng = np.random.default_rng(case["seed"])
    x = rng.integers(0, 17, (batch, model.sizes[0])) / 16
    if case["encoding"] == "rate":
        x = (rng.random((model.steps, batch, model.sizes[0])) < x).astype(np.float32)
        return x, torch.as_tensor(x)
    return x, model.encode(torch.as_tensor(x, dtype=torch.float32))


CONV_BLOCKS = 21  # independent random conv nets per generated example (channel blocks)


def _conv_block(stages: int):
    return st.fixed_dictionaries({
        "c_in": st.integers(1, 2), "channels": st.tuples(*[st.integers(1, 3)] * stages),
        "classes": st.integers(1, 3), "seed": st.integers(0, 2 ** 16),
        "gain": st.floats(2.0, 8.0), "density": st.floats(0.4, 1.0)})


#: One example = ``CONV_BLOCKS`` independent random conv nets with the same geometry (input
#: height/width 4-7; 1-2 stages of Conv2d with kernel 1-3, stride 1-2, padding 0-1, optional
#: 2x2 sum pooling; then Linear) but their own channel counts (input 1-2, per stage 1-3),
#: classes, weight scale, pruning and seed, run side by side as one network whose kernels
#: are block-diagonal over channels (a pooling layer is depthwise, and flatten keeps a
#: block's channels contiguous, so every block evolves exactly as it would alone). All-zero
#: layers: :func:`test_conv_net_with_an_all_zero_layer_exports`.
conv_cases = st.integers(1, 2).flatmap(lambda stages: st.fixed_dictionaries({
    "hw": st.tuples(st.integers(4, 7), st.integers(4, 7)),
    "stages": st.lists(st.tuples(st.integers(1, 3), st.integers(1, 2), st.integers(0, 1),
                                 st.integers(1, 2)), min_size=stages, max_size=stages),
    "blocks": st.lists(_conv_block(stages), min_size=CONV_BLOCKS, max_size=CONV_BLOCKS),
    "encoding": st.sampled_from(["current", "rate"]),
    "input_gain": st.floats(1.0, 8.0), "seed": st.integers(0, 2 ** 16)}))


def block_conv_network(case: dict, steps: int, zero_layer: int | None = None) -> SpikingConvNet:
    """The :class:`SpikingConvNet` of a :data:`conv_cases` example (geometries that would
    output an empty map are skipped).

    Block ``b``'s kernels are uniform in ``[-0.7, 1.3] * gain / sqrt(fan-in)``, a fraction
    ``1 - density`` pruned; the trainable layer ``zero_layer`` (conv stages, then Linear), if
    given, is all zero.
    """
    blocks, stages = case["blocks"], case["stages"]
    channels = [sum(b["channels"][l] for b in blocks) for l in range(len(stages))]
    try:
        model = SpikingConvNet(
            (sum(b["c_in"] for b in blocks), *case["hw"]), channels=channels,
            kernels=[s[0] for s in stages], strides=[s[1] for s in stages],
            paddings=[s[2] for s in stages], pools=[s[3] for s in stages],
            classes=sum(b["classes"] for b in blocks), steps=steps,
            encoding=case["encoding"], input_gain=case["input_gain"])
    except ValueError:  # the map shrank to nothing
        assume(False)
    trainable = [m for m in model.layers if isinstance(m.weight, torch.nn.Parameter)]
    area = int(np.prod(model.shapes[-2][1:]))  # pixels per channel of the last map
    with torch.no_grad():
        for l, layer in enumerate(trainable):
            w = torch.zeros_like(layer.weight)
            r = c = 0
            for b in blocks:
                widths = [b["c_in"], *b["channels"], b["classes"]]
                n_in, n_out = widths[l], widths[l + 1]
                conv = w.dim() == 4
                shape = (n_out, n_in, *w.shape[2:]) if conv else (n_out, n_in * area)
                gen = torch.Generator().manual_seed(b["seed"] * 7 + l)
                sub = (torch.rand(shape, generator=gen) * 2 - 0.7) * b["gain"] \
                    / np.prod(shape[1:]) ** 0.5  # mostly excitatory: spikes reach the output
                sub *= torch.rand(shape, generator=gen) < b["density"]
                cols = slice(c, c + n_in) if conv else slice(c * area, (c + n_in) * area)
                w[r:r + n_out, cols] = sub
                r, c = r + n_out, c + n_in
            layer.weight.copy_(w * (l != zero_layer))
    return model


@pytest.mark.parametrize("build", [onnx_step.build, onnx_unrolled.build, onnx_int.build,
                                   onnx_int.build_step])
def test_files_pass_checker_with_metadata(small_net, tmp_path, build):
    _, net = small_net
    path = onnx_graph.save(build(net), tmp_path / "m.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["profile"] == "loihi2" and meta["encoding"] == "current"
    assert meta["dt"] == repr(net.neuron.dt) and meta["steps"] == str(net.steps)
    assert meta["rewire_version"] and "layer0" in meta["state_layout"]
    assert model.opset_import[0].version >= 17


def one_thread_session(model: onnx.ModelProto):
    """An onnxruntime CPU session with one intra-op thread (tiny graphs, shared machine)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def synaptic_magnitude(layer, w: np.ndarray, s_abs: np.ndarray) -> np.ndarray:
    """``sum_j |w_ij| |s_j|`` per neuron, ``(B, n_in) -> (B, n_out)`` float32: the magnitude of
    the terms a layer's synaptic input sums (dense product or conv of the absolute values);
    ``w`` is ``|layer.weight|``."""
    if not isinstance(layer, CompiledConv):
        return s_abs @ w.T
    x = torch.as_tensor(s_abs, dtype=torch.float32).reshape(-1, *layer.in_shape)
    out = F.conv2d(x, torch.as_tensor(w), stride=layer.stride, padding=layer.padding,
                   groups=layer.groups)
    return out.reshape(len(s_abs), -1).numpy()


def float_onnx_equals_norse(model, net, x: np.ndarray, seq: torch.Tensor) -> tuple[float, float]:
    """Run ``model`` (Norse) for ``model.steps`` steps and check the float ONNX graphs of ``net``.

    From Norse's state at every step the per-step ONNX graph must give Norse's next state
    within 1e-6, relative to the magnitude of the terms summed when above 1 (torch and
    onnxruntime sum synaptic inputs in different orders, so float32 rounding differs by
    ~eps * that magnitude), and its spikes exactly; the looped per-step graph and the
    unrolled (``Scan``) graph must give Norse's spike trains exactly. Norse's conv states
    ``(B, C, H, W)`` are compared flattened, the ONNX layout.

    Returns:
        ``(max absolute state error, max relative state error)`` over all states and steps.
    """
    steps, batch = model.steps, seq.shape[1]
    sess = one_thread_session(onnx_step.build(net))
    w_abs = [np.abs(layer.weight) for layer in net.layers]
    names = [o.name for o in sess.get_outputs()]
    states, ref, worst = None, [], [0.0, 0.0]
    with torch.no_grad():
        for t in range(steps):
            feeds = {"x": np.asarray(x[t] if x.ndim == 3 else x, np.float32)}
            for k, layer in enumerate(net.layers):
                zeros = np.zeros((batch, layer.shape[0]), np.float32)
                feeds[f"v{k}"] = states[k].v.reshape(batch, -1).numpy() if states else zeros
                feeds[f"i{k}"] = states[k].i.reshape(batch, -1).numpy() if states else zeros
            z, new = model.step(seq[t], states)
            res = dict(zip(names, sess.run(None, feeds)))
            s_in = np.abs(seq[t].numpy())
            for k, layer in enumerate(net.layers):
                scale = synaptic_magnitude(layer, w_abs[k], s_in) + np.abs(feeds[f"i{k}"]) \
                    + np.abs(feeds[f"v{k}"])
                for name, want in ((f"v{k}", new[k].v), (f"i{k}", new[k].i)):
                    diff = np.abs(res[name + "_out"] - want.reshape(batch, -1).numpy())
                    err = diff / np.maximum(1, scale)
                    assert err.max() <= 1e-6, (name, t, float(err.max()))
                    worst = [max(worst[0], float(diff.max())), max(worst[1], float(err.max()))]
                s_in = np.abs(res[f"z{k}"])
            states = new
            np.testing.assert_array_equal(res["z"], z.numpy())
            ref.append(z.numpy())
    ref = np.stack(ref)
    np.testing.assert_array_equal(onnx_step.run(None, x, steps, sess=sess), ref)
    unrolled = onnx_unrolled.run(None, x, steps, sess=one_thread_session(onnx_unrolled.build(net)))
    np.testing.assert_array_equal(unrolled, ref)
    return worst[0], worst[1]


def integer_onnx_equals_simulate(net, payload: np.ndarray, lava_delay: bool) -> int:
    """The integer ONNX model, ``Scan`` and per-step, equals ``simulate.simulate`` spike for
    spike on ``payload (T, B, n_in)``; returns the number of output spikes."""
    ref = simulate.simulate(net, payload, lava_delay=lava_delay)[-1]
    for build in (onnx_int.build, onnx_int.build_step):
        sess = one_thread_session(build(net, lava_delay))
        np.testing.assert_array_equal(onnx_int.run(None, payload, sess=sess), ref)
    return int(ref.sum())


def random_payload(net, case: dict, steps: int, batch: int = 4) -> np.ndarray:
    """Integer input ``(steps, batch, n_in)``: graded pixels (current) or 0/1 spikes (rate)."""
    rng = np.random.default_rng(case["seed"])
    if case["encoding"] == "current":
        return simulate.encode_input(net, rng.integers(0, 17, (batch, net.sizes[0])) / 16)
    return (rng.random((steps, batch, net.sizes[0])) < 0.4).astype(np.int64)


@EQUIV
@given(case=cases)
def test_float_onnx_step_equals_norse_per_step(loihi2, case):
    """Property (25 examples x 8 = 200 random networks, 3 inputs each, 50 steps): from Norse's
    state at every step, the ONNX step gives Norse's next state within 1e-6 (relative to the
    magnitude of the terms summed, when above 1) and its spikes exactly; looping ONNX alone and
    the unrolled (Scan) model give Norse's spike trains exactly."""
    model = block_network(case, steps=50)
    net = compile_network(model, loihi2, 16)
    float_onnx_equals_norse(model, net, *case_inputs(case, model))


@EQUIV
@given(case=cases, lava_delay=st.booleans())
def test_integer_onnx_equals_integer_reference(loihi2, case, lava_delay):
    """Property (25 examples x 8 = 200 random networks, 4 inputs, 40 steps): the integer ONNX
    model (Scan) reproduces ``simulate.simulate`` spike for spike, with and without Lava's
    per-layer delay; so does the per-step integer model."""
    model = block_network(case, steps=40)
    net = compile_network(model, loihi2, 16)
    integer_onnx_equals_simulate(net, random_payload(net, case, 40), lava_delay)


EQUIV_CONV = settings(EQUIV, max_examples=10)  # 10 examples x 21 blocks = 210 networks


@EQUIV_CONV
@given(case=conv_cases)
def test_float_onnx_of_conv_net_equals_norse_per_step(loihi2, case):
    """Property (10 examples x 21 = 210 random conv nets, 3 inputs, 50 steps):
    the float per-step graph of a ``SpikingConvNet`` (ONNX ``Conv`` on reshaped flat states)
    teacher-forced from Norse's state gives Norse's next state within 1e-6 (relative to the
    summed terms, when above 1) and its spikes exactly; the looped per-step graph and the
    ``Scan`` graph give Norse's spike trains exactly."""
    model = block_conv_network(case, steps=50)
    net = compile_network(model, loihi2, 16)
    assert any(isinstance(l, CompiledConv) for l in net.layers)
    float_onnx_equals_norse(model, net, *case_inputs(case, model))


@EQUIV_CONV
@given(case=conv_cases, lava_delay=st.booleans())
def test_integer_onnx_of_conv_net_equals_integer_reference(loihi2, case, lava_delay):
    """Property (10 examples x 21 = 210 random conv nets, 4 inputs, 40 steps): the integer ONNX
    graph of a conv net (float32 ``Conv`` of integers) equals ``simulate.simulate`` spike for
    spike, ``Scan`` and per-step, with and without Lava's per-layer delay."""
    model = block_conv_network(case, steps=40)
    net = compile_network(model, loihi2, 16)
    integer_onnx_equals_simulate(net, random_payload(net, case, 40), lava_delay)


@pytest.mark.parametrize("zero_layer", [0, 1, 2])
def test_conv_net_with_an_all_zero_layer_exports(loihi2, zero_layer):
    """A conv net (conv -> pool -> conv -> Linear) whose conv1, conv2 or fc1 has every
    synapse pruned compiles (with a note), and its float and integer ONNX graphs still equal
    Norse and the integer reference (the layers before the zero one do spike)."""
    case = {"hw": (6, 6), "stages": [(3, 1, 1, 2), (2, 1, 0, 1)], "encoding": "current",
            "input_gain": 6.0, "seed": zero_layer,
            "blocks": [{"c_in": 1, "channels": (2, 2), "classes": 2, "seed": b, "gain": 6.0,
                        "density": 0.8} for b in range(2)]}
    model = block_conv_network(case, steps=20, zero_layer=zero_layer)
    net = compile_network(model, loihi2, 16)
    zero = [l for l in net.layers if l.all_zero]
    assert [l.name for l in zero] == [["conv1", "conv2", "fc1"][zero_layer]]
    assert "every synapse is pruned" in zero[0].notes[0]
    float_onnx_equals_norse(model, net, *case_inputs(case, model))
    payload = random_payload(net, case, 20)
    record = simulate.simulate(net, payload, record_all=True)
    assert record[0].sum() > 0 or zero_layer == 0
    for delay in (False, True):
        integer_onnx_equals_simulate(net, payload, delay)


@pytest.fixture(scope="module")
def conv_compiled(loihi2):
    """A compiled 1x6x6 conv net (conv 3x3 pad 1 -> 2x2 sum pool -> Linear), 12 steps."""
    torch.manual_seed(3)
    model = SpikingConvNet((1, 6, 6), channels=(3,), kernels=(3,), pools=(2,), classes=4,
                           steps=12, encoding="current")
    with torch.no_grad():
        model.layers[0].weight.mul_(6.0)
        model.layers[2].weight.abs_().mul_(4.0)
    return model, compile_network(model, loihi2, 16)


@pytest.mark.parametrize("build", [onnx_step.build, onnx_unrolled.build, onnx_int.build,
                                   onnx_int.build_step])
def test_conv_files_pass_checker_with_metadata(conv_compiled, tmp_path, build):
    """Conv nets export to every ONNX kind: checker-clean, byte-identical when built twice,
    ``Conv`` nodes with the layer's attributes, flat inputs and states, the map shapes in the
    metadata."""
    _, net = conv_compiled
    assert build(net).SerializeToString() == build(net).SerializeToString()
    model = onnx.load(str(onnx_graph.save(build(net), tmp_path / "m.onnx")))
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["input_shape"]) == [1, 6, 6]
    layout = json.loads(meta["state_layout"])
    assert layout["layer0"]["shape"] == [3, 6, 6] and layout["layer1"]["shape"] == [3, 3, 3]
    assert "shape" not in layout["layer2"] and layout["layer0"]["size"] == 108
    assert model.graph.input[0].type.tensor_type.shape.dim[-1].dim_value == 36
    scans = [n for n in model.graph.node if n.op_type == "Scan"]
    nodes = list(model.graph.node) + [n for scan in scans for a in scan.attribute
                                      if a.name == "body" for n in a.g.node]
    convs = [{a.name: helper.get_attribute_value(a) for a in n.attribute}
             for n in nodes if n.op_type == "Conv"]
    assert [c["group"] for c in convs] == [1, 3]
    assert convs[0]["pads"] == [1, 1, 1, 1] and convs[1]["strides"] == [2, 2]
    if meta["kind"].startswith("int"):
        row = np.abs(net.layers[0].weight_int).reshape(3, -1).sum(1).max()
        assert int(meta["exact_payload_max"]) == (2 ** 24 - 1) // row >= 16


def test_conv_onnx_runs_any_batch_and_spikes(conv_compiled):
    """Batch 1 and 0 run; the test network spikes, and every ONNX kind equals its reference."""
    model, net = conv_compiled
    x = np.random.default_rng(1).integers(0, 17, (2, 36)) / 16
    with torch.no_grad():
        ref = model(torch.as_tensor(x, dtype=torch.float32)).numpy()
    assert ref.sum() > 0
    np.testing.assert_array_equal(onnx_step.run(onnx_step.build(net), x[:1]), ref[:, :1])
    np.testing.assert_array_equal(onnx_unrolled.run(onnx_unrolled.build(net), x), ref)
    assert onnx_unrolled.run(onnx_unrolled.build(net), x[:0]).shape == (12, 0, 4)
    payload = simulate.encode_input(net, x)
    np.testing.assert_array_equal(onnx_int.run(onnx_int.build(net), payload),
                                  simulate.simulate(net, payload)[-1])


# With the default graph optimizations on an AVX2 CPU, onnxruntime 1.23 runs the first four
# as com.microsoft.nchwc Conv (NCHW input, blocked, depthwise, pointwise; seen in its
# optimized model) and the grouped one with its default im2col + SGEMM kernel; with
# optimizations off, all five run the default kernel. Both are checked.
@pytest.mark.parametrize("c_in, c_out, kernel, stride, padding, groups", [
    (1, 16, 3, 1, 1, 1),
    (8, 16, 3, 2, 1, 1),
    (16, 16, 2, 2, 0, 16),  # depthwise: a sum-pooling layer
    (4, 8, 1, 1, 0, 1),     # pointwise
    (4, 8, 3, 1, 2, 2),     # grouped, padding wider than the kernel's half
])
def test_integer_conv_is_exact_up_to_the_float32_bound(conv_compiled, c_in, c_out, kernel,
                                                      stride, padding, groups):
    """The float32 ``Conv`` of the integer graph gives the exact integer ``a = W_int * s``
    with partial sums just below 2**24 (weights ±254, payload at the largest allowed), on
    onnxruntime's different CPU conv kernels; one unit more payload is refused by name."""
    _, net = conv_compiled
    rng = np.random.default_rng(c_in * 100 + c_out)
    w = rng.integers(-127, 128, (c_out, c_in // groups, kernel, kernel)) * 2
    w[0], w[1] = 254, -254  # rows whose partial sums grow monotonically to +-row * payload
    size = (6 + 2 * padding - kernel) // stride + 1
    layer = dataclasses.replace(net.layers[0], name="convX", weight=w.astype(np.float32),
                                weight_int=w.astype(np.int32), in_shape=(c_in, 6, 6),
                                out_shape=(c_out, size, size), stride=(stride, stride),
                                padding=(padding, padding), groups=groups)
    row = 254 * w[0].size
    top = (2 ** 24 - 1) // row
    big = dataclasses.replace(net, layers=(layer,), input_max_value=top)
    payload = rng.integers(0, top + 1, (5, c_in * 36))
    payload[0] = top  # every partial sum of rows 0 and 1 at its largest
    payload[1] = rng.integers(top - 3, top + 1, c_in * 36)
    model = onnx_int.build_step(big)
    model.graph.output.append(helper.make_tensor_value_info("l0_a", TensorProto.INT64, None))
    want = simulate.synaptic_input(layer, payload)
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        sess = ort.InferenceSession(model.SerializeToString(), options,
                                    providers=["CPUExecutionProvider"])
        feeds = {i.name: np.zeros((5, i.shape[1]), np.int64) for i in sess.get_inputs()}
        feeds["x"] = payload
        np.testing.assert_array_equal(sess.run(["l0_a"], feeds)[0], want)
    assert np.abs(want).max() > 2 ** 24 - 2 * row  # the bound was really approached
    with pytest.raises(ValueError, match="layer convX: a conv partial sum.*2\\*\\*24"):
        onnx_int.build(dataclasses.replace(big, input_max_value=top + 1))


def synaptic_sums(model: onnx.ModelProto, payload: np.ndarray, level) -> np.ndarray:
    """Layer 0's integer synaptic input ``l0_a (B, n_0)`` of a per-step integer ``model`` on
    one step of ``payload (B, n_in)``, states zero, with graph optimization ``level``."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.graph.output.append(helper.make_tensor_value_info("l0_a", TensorProto.INT64, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])
    feeds = {i.name: np.zeros((len(payload), i.shape[1]), np.int64) for i in sess.get_inputs()}
    feeds["x"] = payload
    return sess.run(["l0_a"], feeds)[0]


# onnxruntime 1.23 runs float32 MatMul with MLAS SGEMM (packed constant B; K blocked, so the
# 1030-wide case adds partial sums from several K blocks; batch 1 is a matrix-vector product).
@pytest.mark.parametrize("batch, n_in, n_out", [(1, 784, 20), (5, 37, 16), (64, 1030, 40)])
def test_integer_dense_is_exact_up_to_the_float32_bound(small_net, batch, n_in, n_out):
    """A dense layer with partial sums just below 2**24 (weights ±254, payload at the largest
    allowed) sums in float32 ``MatMul`` and gives the exact integer ``a = W_int s``, optimized
    or not; its spikes equal ``simulate``. One unit more ``input_max_value`` switches that
    layer (only) to the int64 ``MatMul``, still exact; the float32 file's ``run`` refuses a
    payload above its ``exact_payload_max``."""
    _, net = small_net
    rng = np.random.default_rng(n_in)
    w = rng.integers(-127, 128, (n_out, n_in)) * 2
    w[0], w[1] = 254, -254  # rows whose partial sums grow monotonically to +-row * payload
    w2 = rng.integers(-127, 128, (3, n_out)) * 2
    layers = (dataclasses.replace(net.layers[0], name="fcX", weight=w.astype(np.float32),
                                  weight_int=w.astype(np.int32)),
              dataclasses.replace(net.layers[1], weight=w2.astype(np.float32),
                                  weight_int=w2.astype(np.int32)))
    row = 254 * n_in
    top = (2 ** 24 - 1) // row
    big = dataclasses.replace(net, layers=layers, input_max_value=top)
    steps = rng.integers(0, top + 1, (4, batch, n_in))
    steps[0] = top  # every partial sum of rows 0 and 1 at its largest
    steps[1] = rng.integers(top - 3, top + 1, (batch, n_in))
    want = simulate.synaptic_input(layers[0], steps[0])
    assert np.abs(want).max() == row * top > 2 ** 24 - row  # the bound is really reached
    model = onnx_int.build_step(big)
    meta = {p.key: p.value for p in model.metadata_props}
    layout = json.loads(meta["state_layout"])
    assert [layout[f"layer{k}"]["accumulate"] for k in (0, 1)] == ["float32", "float32"]
    assert layout["layer0"]["sum_bound"] == row * top and int(meta["exact_payload_max"]) == top
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        for x in steps[:2]:
            np.testing.assert_array_equal(synaptic_sums(model, x, level),
                                          simulate.synaptic_input(layers[0], x))
    integer_onnx_equals_simulate(big, steps, lava_delay=False)
    with pytest.raises(ValueError, match="payload magnitude .* exceeds .*exact_payload_max"):
        onnx_int.run(onnx_int.build(big), steps + 1)

    over = dataclasses.replace(big, input_max_value=top + 1)
    model = onnx_int.build_step(over)
    meta = {p.key: p.value for p in model.metadata_props}
    layout = json.loads(meta["state_layout"])
    assert [layout[f"layer{k}"]["accumulate"] for k in (0, 1)] == ["int64", "float32"]
    assert "exact_payload_max" not in meta
    weights = {t.name: t.data_type for t in model.graph.initializer}
    assert weights["Wint0_T"] == TensorProto.INT64 and weights["Wint1_T"] == TensorProto.FLOAT
    x = np.full((batch, n_in), top + 1)
    optimized = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    np.testing.assert_array_equal(synaptic_sums(model, x, optimized),
                                  simulate.synaptic_input(layers[0], x))
    integer_onnx_equals_simulate(over, steps + 1, lava_delay=False)


def test_integer_onnx_wraps_and_saturates_like_the_chip(loihi2):
    """Strong input drives u past 2**23 (wrap) and v into the clip: still exact."""
    model = random_network((6, 8, 3), steps=30, seed=5, weight_gain=40.0)
    net = compile_network(model, loihi2, 16)
    payload = np.full((30, 2, 6), 16, np.int64) * 64  # far beyond the calibrated range
    ref = simulate.simulate(net, payload, record_all=True)
    out = onnx_int.run(onnx_int.build(net), payload)
    np.testing.assert_array_equal(out, ref[-1])


def test_integer_onnx_with_delay_is_lavas_output(small_net, rng):
    """``lava_delay=True`` on the padded input, shifted by L steps, is the undelayed output
    (what :func:`simulate.align` says a netx file gives in Lava)."""
    _, net = small_net
    payload = simulate.encode_input(net, rng.integers(0, 17, (3, 12)) / 16)
    delayed = onnx_int.run(onnx_int.build(net, lava_delay=True),
                           simulate.pad_for_lava(net, payload))
    np.testing.assert_array_equal(delayed[len(net.layers):], simulate.align(net, payload))
    assert delayed.sum() > 0


def test_unrolled_runs_any_number_of_steps(small_net, rng):
    model, net = small_net
    x = rng.random((2, 12))
    sess = onnx_graph.session(onnx_unrolled.build(net))
    with torch.no_grad():
        long = model.run_encoded(model.encode(torch.as_tensor(x, dtype=torch.float32))
                                 .repeat(5, 1, 1)).numpy()
    np.testing.assert_array_equal(onnx_unrolled.run(None, x, 5 * net.steps, sess=sess), long)


def test_exporters_do_not_change_the_network(small_net, tmp_path):
    _, net = small_net
    before = [(l.weight.copy(), l.weight_int.copy()) for l in net.layers]
    onnx_step.write(net, tmp_path / "m.onnx")
    onnx_unrolled.write(net, tmp_path / "u.onnx")
    onnx_int.write(net, tmp_path / "i.onnx")
    assert all(np.array_equal(w, l.weight) and np.array_equal(wi, l.weight_int)
               for (w, wi), l in zip(before, net.layers))
