r"""Shared ONNX graph building for the per-step, unrolled and integer exporters.

Every ONNX file rewire writes is one *step body* (the float Norse step of
:mod:`rewire.export.onnx_step` or the chip's integer CUBA step of :mod:`rewire.export.onnx_int`)
wrapped one of two ways:

* :func:`step_model`: one time step, the neuron states as explicit graph inputs and outputs
  (the caller loops; states start at zero);
* :func:`scan_model`: an ONNX ``Scan`` over the time axis of ``x (T, batch, n_in)``, states
  created as zeros inside the graph, output spikes ``z (T, batch, n_out)`` plus the final
  states. ``T`` is a symbolic dimension: any number of steps runs, no static unroll limit.

Inputs and states are flat ``(batch, n)`` for every layer kind; a conv layer (Conv2d or sum
pooling, a conv with ``groups = C``) reshapes its flat input to the ``(C, H, W)`` map inside
the step, applies ONNX ``Conv`` and flattens the result back (:func:`conv2d`), so the state
layout and the runners are the same for dense and conv nets.

A step body is a :class:`StepBody`: the element type, the state layout and a function that
emits the nodes of one step into a :class:`GraphBuilder`. Both wrappers write opset 17 / IR 8
(onnxruntime 1.23 reads IR <= 11), attach the same metadata (:func:`metadata`) and return a
model that passed strict shape inference and ``onnx.checker`` with ``full_check``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rewire._version import __version__
from rewire.errors import ExportError
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import CompiledConv, CompiledLayer
from rewire.ir.input_layout import flatten_samples, sample_axes
from rewire.ir.neurons import SPIKE_FIELDS
from rewire.io import atomic_path

OPSET = 17
IR_VERSION = 8  # the IR version of opset 17; onnxruntime 1.23 reads IR <= 11

_NP = {TensorProto.FLOAT: np.float32, TensorProto.INT64: np.int64}


class GraphBuilder:
    """Collects the nodes and initializers of one ONNX graph.

    Example:
        >>> b = GraphBuilder()
        >>> b.op("Add", [b.const("one", 1.0), "x"], "y")
        'y'
        >>> len(b.nodes), b.init[0].name
        (1, 'one')
    """

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.init: list[onnx.TensorProto] = []
        self._names: set[str] = set()
        self.held: dict[str, np.ndarray] = {}  # large initializers' data, filled in at the end

    def const(self, name: str, value, dtype=np.float32) -> str:
        """Add an initializer ``name`` holding ``value`` as ``dtype`` (once); return its name.
        One over :data:`HOLD_BYTES` is built without its data, which :func:`_finish` fills in
        after the graph is checked (the data is copied once, not at every graph step)."""
        if name not in self._names:
            self._names.add(name)
            value = np.asarray(value, dtype=dtype)
            if value.nbytes <= HOLD_BYTES:
                self.init.append(numpy_helper.from_array(value, name))
            else:
                t = onnx.TensorProto(name=name, dims=value.shape, raw_data=b"",
                                     data_type=helper.np_dtype_to_tensor_dtype(value.dtype))
                self.init.append(t)
                self.held[name] = value
        return name

    def op(self, op_type: str, inputs: list[str], output: str, **attrs) -> str:
        """Append node ``op_type(inputs) -> output``; return ``output``."""
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output


def conv2d(b: GraphBuilder, s: str, layer: CompiledLayer, weight_name: str,
           weight: np.ndarray, prefix: str, bias: np.ndarray | None = None) -> str:
    """Emit one conv layer's synaptic input on flat float32 vectors: ``Reshape -> Conv ->
    Reshape``.

    The value ``s (batch, C*H*W)`` (neurons numbered as ``x.flatten()`` of a ``(C, H, W)``
    map, as in :class:`rewire.ir.compiled.CompiledNetwork`) is reshaped to
    ``(batch, *layer.in_shape)``, convolved by ONNX ``Conv`` (cross-correlation: kernel
    ``weight (C_out, C_in/groups, kH, kW)`` float32, ``layer.stride``, symmetric zero
    ``layer.padding``, ``group = layer.groups``; torch ``conv2d`` semantics) and flattened back
    to ``(batch, C_out*H_out*W_out)``. The reshapes copy ``batch`` from the input (shape
    entry ``0``), so any batch size, including 0, runs. Pooling layers are convs with
    ``groups = C`` and need nothing else.

    Args:
        b: the graph being built.
        s: name of the float32 input value ``(batch, n_in)``.
        layer: a :class:`~rewire.ir.compiled_layers.CompiledConv` (shapes, stride, padding,
            groups).
        weight_name: initializer name of the kernel.
        weight: the kernel, stored as float32.
        prefix: prefix of the intermediate value names (``"l0_"``).
        bias: float32 ``(C_out,)`` added to every pixel of its channel (ONNX ``Conv``'s
            ``B`` input, as torch's ``conv2d`` bias), or ``None``.

    Returns:
        The name of the float32 output value ``(batch, n_out)``.
    """
    (ph, pw), (kh, kw) = layer.padding, weight.shape[2:]
    x4 = b.op("Reshape", [s, b.const(f"{prefix}in_shape", (0,) + tuple(layer.in_shape),
                                     np.int64)], prefix + "map")
    inputs = [x4, b.const(weight_name, weight)]
    if bias is not None:
        inputs.append(b.const(f"{weight_name}_bias", bias))
    y4 = b.op("Conv", inputs, prefix + "conv",
              kernel_shape=[int(kh), int(kw)], strides=[int(v) for v in layer.stride],
              pads=[int(ph), int(pw), int(ph), int(pw)], group=int(layer.groups))
    return b.op("Reshape", [y4, b.const(f"{prefix}out_shape", (0, layer.shape[0]), np.int64)],
                prefix + "flat")


def map_shape(layer: CompiledLayer) -> dict:
    """``{"shape": [C, H, W]}`` (the output feature map) for a conv layer, ``{}`` for a dense
    one: the extra entry of a conv layer in a body's ``layout``."""
    return {"shape": [int(d) for d in layer.out_shape]} if isinstance(layer, CompiledConv) \
        else {}


def spike_fields(layer: CompiledLayer) -> dict:
    """The layer's spike fields that differ from the default
    (:data:`rewire.ir.neurons.SPIKE_FIELDS`), e.g. ``{"reset": "subtract", "reset_delay":
    True}``: the extra entries of a layer in a body's ``layout`` (``{}`` for Norse's and
    Lava's rule, so the files of such nets are unchanged)."""
    if not layer.spiking:
        return {}
    return {k: getattr(layer.neuron, k) for k, d in SPIKE_FIELDS.items()
            if getattr(layer.neuron, k) != d}


Emit = Callable[[GraphBuilder, str, dict], tuple[str, dict, list]]


@dataclass(frozen=True)
class StepBody:
    """One time step of a network as ONNX nodes.

    Attributes:
        name: graph name (``"rewire_snn_step"``, ...).
        elem: element type of states and spikes (``TensorProto.FLOAT`` or ``INT64``).
        x_elem: element type of the input ``x``.
        n_in: input width.
        states: ``(state name, width)`` pairs in graph order, e.g. ``(("v0", 20), ("i0", 20))``.
        spikes: ``(spike name, width)`` per layer (``z0, z1, ...``); the last is the output.
        emit: ``emit(builder, x, states) -> (z, new_states, layer_spikes)``: appends the step's
            nodes reading input ``x`` and the state values named in ``states`` (state name ->
            value name) and returns the output spike value, a dict state name -> new value
            name, and the per-layer spike value names.
        layout: JSON-able description of the states for the file's metadata:
            ``{"layer<k>": {"states": {state name: width}, "size": n_k, "dtype": ...}}``, plus
            ``"shape": [C, H, W]`` for a conv layer (:func:`map_shape`) and, in the integer
            files, ``"accumulate"`` and ``"sum_bound"`` (:func:`rewire.export.onnx_int.
            accumulators`).
    """

    name: str
    elem: int
    x_elem: int
    n_in: int
    states: tuple[tuple[str, int], ...]
    spikes: tuple[tuple[str, int], ...]
    emit: Emit
    layout: dict


def metadata(net: CompiledNetwork, body: StepBody, kind: str, usage: str) -> dict[str, str]:
    """The metadata every rewire ONNX file carries (all values are strings).

    Keys: ``rewire_version``, ``rewire_format_version``, ``kind`` (``step``, ``unrolled``,
    ``int_step``, ``int_unrolled``), ``profile``, ``dt`` (s), ``steps`` (``T`` trained for),
    ``encoding``, ``input_gain``, ``input_max_value``, ``state_layout`` (JSON) and ``usage``;
    when the first layer is a conv layer, or the source model's input has a layout of its
    own (``CompiledNetwork.input_layout``), also ``input_shape``, the JSON per-sample shape
    (``[C, H, W]``) whose ``x.flatten()`` the flat input ``x`` is; when the compiler
    warned, ``rewire_warnings`` (:attr:`~rewire.ir.compiled.CompiledNetwork.warnings_json`).
    """
    meta = {"rewire_version": __version__, "rewire_format_version": str(net.format_version),
            "kind": kind, "profile": net.profile.name, "dt": repr(net.dt),
            "steps": str(net.steps), "encoding": net.encoding,
            "input_gain": repr(net.input_gain), "input_max_value": str(net.input_max_value),
            "state_layout": json.dumps(body.layout), "usage": usage}
    if isinstance(net.layers[0], CompiledConv) or net.input_layout:
        meta["input_shape"] = json.dumps([int(d) for d in net.input_shape])
    if net.warnings:
        meta["rewire_warnings"] = net.warnings_json
    return meta


def _finish(graph: onnx.GraphProto, meta: dict[str, str],
            held: dict[str, np.ndarray]) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="rewire", producer_version=__version__,
                              ir_version=IR_VERSION)
    helper.set_model_props(model, meta)
    # The large initializers (GraphBuilder.held) are still empty: shape inference (strict, as
    # the checker's full check) reads their shapes only, the checker sees them with 0 rows
    # (their bytes are numpy's own), then their data goes in once.
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for t in _tensors(probe.graph):
        if t.name in held and not t.raw_data:
            t.dims[0] = 0
    onnx.checker.check_model(probe)
    for t in _tensors(model.graph):
        if t.name in held and not t.raw_data:
            t.raw_data = np.ascontiguousarray(held[t.name]).tobytes()  # as from_array
    return model


HOLD_BYTES = 1 << 16  # initializers above this size are filled in after the checks


def _tensors(graph: onnx.GraphProto):
    """Every initializer of ``graph`` and of its nodes' subgraphs (a ``Scan`` body), in order."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _tensors(attr.g)


PROTOBUF_MAX = (1 << 31) - 1  # bytes of one protobuf message, hence of one .onnx file
GRAPH_RESERVE = 1 << 24       # bytes kept for the graph, names and metadata


def check_size(net: CompiledNetwork, fmt: str = "onnx", bytes_per_weight=4) -> None:
    """Refuse a network whose weight initializers cannot fit one ONNX file: a model is one
    protobuf message, limited to 2 GiB (``onnx.checker``, protobuf's ``kint32max``); this
    exporter writes no external data. Each weight entry (pruned ones included: ONNX
    ``MatMul`` weights are dense) takes ``bytes_per_weight`` bytes (4 for float32; a list
    gives one figure per layer).

    Raises:
        rewire.errors.ExportError: naming the format, the weights and bytes needed, the limit
            and the fix.
    """
    per = bytes_per_weight if isinstance(bytes_per_weight, (list, tuple)) \
        else [bytes_per_weight] * len(net.layers)
    weights = sum(layer.dense_synapses for layer in net.layers)
    need = sum(layer.dense_synapses * b for layer, b in zip(net.layers, per))
    if need > PROTOBUF_MAX - GRAPH_RESERVE:
        raise ExportError(
            f"{fmt} export: the network's {weights} weights need {need / 2**30:.2f} GiB of "
            f"initializers but an ONNX file is one protobuf message of at most 2 GiB "
            f"(rewire writes no external data): export netx or nir for this network, or "
            f"prune or shrink it below {(PROTOBUF_MAX - GRAPH_RESERVE) // max(per, default=4)}"
            f" weights", fmt)


def _vi(name: str, elem: int, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def step_model(net: CompiledNetwork, body: StepBody, kind: str, usage: str) -> onnx.ModelProto:
    """One step with explicit state: inputs ``x`` and every state; outputs ``z``, each state's
    ``<name>_out`` and each layer's spikes ``z<k>``.

    Shapes:
        ``x (batch, n_in)``, states ``(batch, width)``, ``z (batch, n_out)``.
    """
    b = GraphBuilder()
    z, new, layer_z = body.emit(b, "x", {s: s for s, _ in body.states})
    for s, _ in body.states:
        b.op("Identity", [new[s]], f"{s}_out")
    b.op("Identity", [z], "z")
    inputs = [_vi("x", body.x_elem, ["batch", body.n_in])]
    inputs += [_vi(s, body.elem, ["batch", n]) for s, n in body.states]
    outputs = [_vi("z", body.elem, ["batch", body.spikes[-1][1]])]
    outputs += [_vi(f"{s}_out", body.elem, ["batch", n]) for s, n in body.states]
    for name, (_, n) in zip(layer_z, body.spikes):
        outputs.append(_vi(name, body.elem, ["batch", n]))
    graph = helper.make_graph(b.nodes, body.name, inputs, outputs, initializer=b.init)
    return _finish(graph, metadata(net, body, kind, usage), b.held)


def scan_model(net: CompiledNetwork, body: StepBody, kind: str, usage: str) -> onnx.ModelProto:
    """All ``T`` steps in one ``Scan``: input ``x (T, batch, n_in)``; outputs ``z (T, batch,
    n_out)`` and each state's final value ``<name>_final (batch, width)``. States start at 0.
    """
    inner = GraphBuilder()
    z, new, _ = body.emit(inner, "x_t", {s: f"{s}_in" for s, _ in body.states})
    for s, _ in body.states:
        inner.op("Identity", [new[s]], f"{s}_next")
    inner.op("Identity", [z], "z_t")
    b_in = [_vi(f"{s}_in", body.elem, ["batch", n]) for s, n in body.states]
    b_in.append(_vi("x_t", body.x_elem, ["batch", body.n_in]))
    b_out = [_vi(f"{s}_next", body.elem, ["batch", n]) for s, n in body.states]
    b_out.append(_vi("z_t", body.elem, ["batch", body.spikes[-1][1]]))
    scan_body = helper.make_graph(inner.nodes, body.name + "_body", b_in, b_out,
                                  initializer=inner.init)

    outer = GraphBuilder()
    # zero states of shape (batch, width), batch read from x at run time
    x_shape = outer.op("Shape", ["x"], "x_shape")
    batch = outer.op("Slice", [x_shape, outer.const("one_i", [1], np.int64),
                               outer.const("two_i", [2], np.int64)], "batch")
    zero = numpy_helper.from_array(np.zeros(1, _NP[body.elem]), "zero")
    for s, n in body.states:
        shape = outer.op("Concat", [batch, outer.const(f"width_{n}", [n], np.int64)],
                         f"{s}_shape", axis=0)
        outer.op("ConstantOfShape", [shape], f"{s}_init", value=zero)
    finals = [f"{s}_final" for s, _ in body.states]
    outer.nodes.append(helper.make_node(
        "Scan", [f"{s}_init" for s, _ in body.states] + ["x"], finals + ["z"],
        body=scan_body, num_scan_inputs=1))
    inputs = [_vi("x", body.x_elem, ["steps", "batch", body.n_in])]
    outputs = [_vi("z", body.elem, ["steps", "batch", body.spikes[-1][1]])]
    outputs += [_vi(f, body.elem, ["batch", n]) for f, (_, n) in zip(finals, body.states)]
    graph = helper.make_graph(outer.nodes, body.name + "_unrolled", inputs, outputs,
                              initializer=outer.init)
    return _finish(graph, metadata(net, body, kind, usage),
                   {**inner.held, **outer.held})


def save(model: onnx.ModelProto, path: str | Path) -> Path:
    """Write ``model`` atomically (temp file, then rename); return the path."""
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return Path(path)


def session(model: str | Path | onnx.ModelProto):
    """An onnxruntime CPU ``InferenceSession`` for a path or an in-memory model."""
    import onnxruntime as ort

    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, providers=["CPUExecutionProvider"])


def run_steps(sess, x_seq: np.ndarray, states: tuple[tuple[str, int], ...],
              dtype) -> np.ndarray:
    """Loop a :func:`step_model` session over ``x_seq (T, B, n_in)``; return ``z (T, B, n_out)``.

    ``states`` are the body's ``(name, width)`` pairs; they start at zero.
    """
    batch = x_seq.shape[1]
    feeds = {s: np.zeros((batch, n), dtype) for s, n in states}
    names = [o.name for o in sess.get_outputs()]
    out = []
    for x_t in x_seq:
        feeds["x"] = np.ascontiguousarray(x_t)
        res = dict(zip(names, sess.run(None, feeds)))
        for s, _ in states:
            feeds[s] = res[f"{s}_out"]
        out.append(res["z"])
    return np.stack(out)


def flat_input(sess, x: np.ndarray, what: str = "x") -> tuple[np.ndarray, int]:
    """``x`` in either input layout of a rewire ONNX session's model
    (:mod:`rewire.ir.input_layout`: per-sample ``metadata['input_shape']`` or flat ``n_in``)
    as ``(*L, n_in)``, with ``len(L)``: 1 for ``(B, ...)``, 2 for ``(T, B, ...)``.

    Raises:
        ValueError: ``x`` in neither layout (named).
    """
    n_in = int(sess.get_inputs()[0].shape[-1])
    raw = sess.get_modelmeta().custom_metadata_map.get("input_shape")
    shape = tuple(json.loads(raw)) if raw else (n_in,)
    lead = sample_axes(x, n_in, shape, what)
    return flatten_samples(x, n_in, shape, lead, what), lead


def body_from_meta(sess) -> tuple[dict, tuple[tuple[str, int], ...]]:
    """``(metadata, state (name, width) pairs)`` read back from a rewire ONNX session."""
    meta = sess.get_modelmeta().custom_metadata_map
    layout = json.loads(meta["state_layout"])
    states = tuple((s, int(n)) for spec in layout.values() for s, n in spec["states"].items())
    return meta, states
