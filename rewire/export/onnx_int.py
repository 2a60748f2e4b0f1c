r"""Integer ONNX of the chip model: the fixed-point CUBA step of
:func:`rewire.compiler.simulate.simulate`, in int64 ONNX operators, so a deployment team can
check the chip's behaviour with onnxruntime alone. Values are int64; synaptic sums run in
float32 where that is provably exact (below).

Per layer and step (lava-nc 0.10 ``lava/proc/lif/models.py``, ``PyLifModelBitAcc``), exactly as ``simulate`` does:

.. math::
    a &= W_\mathrm{int}\, s + b_\mathrm{int} \\
    u &= \mathrm{wrap}_{24}\big(\mathrm{trunc_0}(u (4096 - \mathrm{iDecay}) / 4096) + a \cdot 2^6\big) \\
    v &= \mathrm{clip}_{24}\big(\mathrm{trunc_0}(v (4096 - \mathrm{vDecay}) / 4096) + u\big) \\
    z &= v > \mathrm{vThMant} \cdot 2^6, \qquad v \leftarrow 0 \text{ where } z

``trunc0(p / 4096)`` is written ``Where(p < 0, -Div(|p|, 4096), Div(|p|, 4096))``: ONNX leaves
the rounding of integer ``Div`` of negative numbers open, ``BitShift`` takes unsigned types
only, and onnxruntime 1.23's int64 ``Sign`` returned -1 for positive products above 2^31
(``Sign(2_361_478_912) == -1``); the 24-bit wrap of ``u`` is two ``Where``, the saturation of
``v`` a ``Clip``. With ``lava_delay=True`` every layer delivers its input one step later (a
``p<k>`` state holds it), as each ``Dense`` process in Lava does. A bias ``b_int`` is added in
int64 after the sum (with ``lava_delay``, from step ``k + 1`` on, as in ``simulate``).

Synaptic input :math:`a = W_\mathrm{int} s` (dense) or :math:`W_\mathrm{int} * s` (conv: a
``SpikingConvNet``'s Conv2d and sum pooling; neurons flat in ``x.flatten()`` order of the
``(C, H, W)`` map) is computed as ``Cast`` to float32, ONNX ``MatMul`` / ``Conv`` with the
integer weights stored as float32, ``Cast`` back to int64. Conv has no other choice:
onnxruntime 1.23's CPU ``Conv`` takes float32 (and float16) only, not float64 or integers,
and its ``ConvInteger`` only uint8 x uint8 (the chip's weights are signed). Dense layers
could use an int64 ``MatMul``, but onnxruntime runs it with a naive loop (no BLAS), while
float32 ``MatMul`` is its SGEMM. This is exact: every partial sum the kernel forms, in any
order, is a sum of products ``w * x`` of integers, so an integer of magnitude at most
:math:`\max_o \sum |W_\mathrm{int}[o]| \cdot \max |x|` (the largest weight row's absolute
sum times the largest input), and float32 represents every integer up to :math:`2^{24}`
exactly, so no product or sum is ever rounded (a fused multiply-add rounds once, to the same
exact integer). :func:`accumulators` checks that bound per layer before building (input: the
payload ``input_max_value`` for the first layer of a ``current`` net, else 0/1 spikes); a
dense layer that fails it keeps the exact int64 ``MatMul`` (so every dense net exports
exactly), a conv layer that fails it raises ``rewire.errors.ExportError`` naming the layer. Each layer's
choice is in the ``state_layout`` metadata (``accumulate``: ``float32`` / ``int64``, and
``sum_bound``); the metadata key ``exact_payload_max`` (present when the first layer sums in
float32) is the largest input payload magnitude for which the file stays exact, and
:func:`run` refuses larger payloads. The argument needs a kernel that only multiplies and
adds the given values; algorithms that round even small integers (Winograd, FFT, TF32,
bfloat16 "fast math" GEMM) would break it. onnxruntime 1.23's CPU kernels, its SGEMM for
``MatMul`` and for ``Conv`` its default im2col + SGEMM one and the NCHWc ones its default
graph optimizations pick on AVX2 (blocked, pointwise, depthwise), are checked exact in
``tests/export/test_onnx.py`` with partial sums up to just below :math:`2^{24}`. Other execution
providers (e.g. cuDNN, which may pick Winograd or TF32) are not checked.

Files: ``x`` is the integer input payload (int64; graded pixel values for ``current``
encoding, 0/1 spikes for ``rate``; :func:`rewire.compiler.simulate.encode_input`), states
``u<k>, v<k>`` (and ``p<k>``) int64, spikes int64 0/1. :func:`build` writes the ``Scan``
model ``x (T, batch, n_in) -> z (T, batch, n_out)``; :func:`build_step` the per-step one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
from onnx import TensorProto

from rewire.compiler.chip_rules import chip_rules
from rewire.errors import ExportError
from rewire.ir.chip_bitshift import CompiledBitshiftLIF
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import CompiledConv, CompiledDense, lookup
from rewire.export.onnx_int_ops import OnnxIntOps
from rewire.export.onnx_graph import (GraphBuilder, StepBody, body_from_meta, conv2d, map_shape,
                                      check_size, flat_input, run_steps, save, scan_model,
                                      session, spike_fields, step_model)

USAGE_SCAN = ("feed the integer payload x (T, batch, n_in) int64 (rewire.compiler.simulate."
              "encode_input); z (T, batch, n_out) int64 0/1 equals the chip model's spikes")
USAGE_STEP = ("loop over T steps: feed x (batch, n_in) int64 and the previous *_out states "
              "(zeros at t=0); z is the output spike vector")
#: float32 represents every integer of magnitude <= 2**24 exactly; the bound is kept strict
FLOAT32_EXACT = 1 << 24


class Accumulator(NamedTuple):
    """How one layer of the integer graph sums its synaptic input ``a = W_int s``.

    Attributes:
        dtype: ``"float32"`` (``Cast`` -> float32 ``MatMul`` / ``Conv`` -> ``Cast``, exact
            because ``bound < 2**24``) or ``"int64"`` (int64 ``MatMul``, dense layers only).
        row: the largest absolute row sum of the integer weights, ``max_o sum |W_int[o]|``.
        m: the largest input magnitude: ``input_max_value`` for the first layer of a
            ``current`` net, else 1 (0/1 spikes).
    """

    dtype: str
    row: int
    m: int

    @property
    def bound(self) -> int:
        """``row * m``: no partial sum of the layer's products can exceed it in magnitude."""
        return self.row * self.m


def accumulators(net: CompiledNetwork) -> tuple[Accumulator, ...]:
    """Pick, per layer of ``net``, the arithmetic of its synaptic input (module docstring).

    Every partial sum of ``a = W_int s``, in any summation order, is an integer of magnitude
    at most ``row * m`` (:class:`Accumulator`), and float32 holds every integer below
    ``2**24`` exactly, so a layer with ``row * m < 2**24`` takes the fast float32 path. A dense
    layer above the bound keeps the int64 ``MatMul`` (exact for any realistic input, but
    onnxruntime 1.23 runs it with a naive loop: the whole integer graph of
    ``benchmarks/throughput.py`` ran 7.8x slower at batch 256 with its 784x800 layer on it);
    a conv layer has no integer fallback (onnxruntime's CPU ``Conv`` is float only).

    Returns:
        One :class:`Accumulator` per layer, in order.

    Raises:
        rewire.errors.ExportError: a conv layer's bound reaches ``2**24`` (named, with the
            numbers and fixes).
    """
    out = []
    for k, layer in enumerate(net.layers):
        row = _largest_row(layer.weight_int)
        if layer.recurrent:  # recurrent spikes are 0/1: their sum adds at most sum|W_rec|
            row += _largest_row(layer.weight_rec_int)
        m = int(net.input_max_value) if k == 0 and net.encoding == "current" else 1
        exact = row * m < FLOAT32_EXACT
        if not exact and isinstance(layer, CompiledConv):
            raise ExportError(
                f"integer ONNX export: layer {layer.name}: a conv partial sum can reach "
                f"sum|W_int| * max input = {row} * {m} = {row * m} >= 2**24, where the float32 "
                f"Conv this file uses (onnxruntime's CPU Conv is float only) stops being exact; "
                f"compile with a smaller input_max_value, or check this net with "
                f"rewire.compiler.simulate / netx instead", "onnx_int", layer.name)
        out.append(Accumulator("float32" if exact else "int64", row, m))
    return tuple(out)


def _largest_row(weight: np.ndarray) -> int:
    """``max_i sum_j |w_ij|`` over the rows of integer ``weight`` (flattened per row), summed
    in int64 a block of rows at a time (no int64 copy of a large layer); 0 when empty."""
    w = weight.reshape(len(weight), -1)
    if not w.size:
        return 0
    rows = max(1, (1 << 20) // w.shape[1])
    return max(int(np.abs(w[r:r + rows]).sum(1, dtype=np.int64).max())
               for r in range(0, len(w), rows))


def check(net: CompiledNetwork) -> None:
    """Refuse, before anything is written, what ``model_int.onnx`` cannot hold: a conv layer
    beyond float32's exact integers (:func:`accumulators`) or weights over ONNX's 2 GiB
    (:func:`rewire.export.onnx_graph.check_size`; int64 weights take 8 bytes each).

    Raises:
        rewire.errors.ExportError: naming the format, the layer or the size.
    """
    acc = accumulators(net)
    check_size(net, "onnx_int", [8 if a.dtype == "int64" else 4 for a in acc])


def exact_payload_max(net: CompiledNetwork) -> int | None:
    """The largest input payload magnitude for which the integer file of ``net`` is exact.

    Returns:
        ``(2**24 - 1) // max(row, 1)`` when the first layer sums in float32
        (:func:`accumulators`; then ``>= input_max_value`` for a ``current`` net), ``None``
        when it uses the int64 ``MatMul`` (exact for any payload below ``2**63 / row``).

    Raises:
        rewire.errors.ExportError: a conv layer's bound reaches ``2**24`` (:func:`accumulators`).
    """
    first = accumulators(net)[0]
    return (FLOAT32_EXACT - 1) // max(first.row, 1) if first.dtype == "float32" else None


def _dense_f32(b: GraphBuilder, s_f: str, layer, k: int, p: str) -> str:
    return b.op("MatMul", [s_f, b.const(f"Wint{k}_T", layer.weight_int.T, np.float32)],
                p + "a_f")


def _conv_f32(b: GraphBuilder, s_f: str, layer, k: int, p: str) -> str:
    return conv2d(b, s_f, layer, f"Wint{k}", layer.weight_int.astype(np.float32), p)


#: compiled layer type -> its float32 synaptic input (exact below 2**24).
_INPUT_F32 = {CompiledDense: _dense_f32, CompiledConv: _conv_f32}


def _add_bias(b: GraphBuilder, a: str, layer, k: int, p: str, states, new: dict) -> str:
    """``a + b_int`` in int64; Lava-delayed (``states``): from step ``k + 1`` (clock ``t_seen``)."""
    bias = b.const(f"bint{k}", layer.bias_per_neuron(), np.int64)
    if states is not None:
        t = states["t_seen"]
        new["t_seen"] = new.get("t_seen") or b.op("Add", [t, b.const("one_i64", [[1]], np.int64)],
                                                  "t_next")
        on = b.op("Greater", [t, b.const(f"k{k}", [[k]], np.int64)], p + "bias_on")
        bias = b.op("Where", [on, bias, b.const("zero_i", 0, np.int64)], p + "bias_now")
    return b.op("Add", [a, bias], p + "a_bias")


def int_body(net: CompiledNetwork, lava_delay: bool = False,
             chip_delay: bool = False) -> StepBody:
    """The chip's integer step of ``net`` (module docstring) as a :class:`StepBody`.

    States per layer ``k``: ``u<k>`` (current), ``v<k>`` (voltage), int64 ``(batch, n_k)``,
    and with ``lava_delay`` ``p<k>`` (the input that arrived one step earlier, ``(batch,
    n_in_k)``).

    A layer whose partial sums stay below ``2**24`` (:func:`accumulators`) computes ``a``
    as float32 ``Conv`` (conv) or ``MatMul`` (dense) between two ``Cast`` nodes (exact, see
    the module docstring); a dense layer above the bound uses an int64 ``MatMul``. The
    ``layout`` entry of layer ``k`` records the choice: ``"accumulate"`` (``"float32"`` or
    ``"int64"``) and ``"sum_bound"`` (``row * m``, the largest possible partial sum).

    On a chip with its own rules (:func:`rewire.compiler.chip_rules.chip_rules`; Xylo) the
    input is clipped at ``input_max`` events, the current accumulates synapse by synapse with
    saturation after each (:meth:`OnnxIntOps.ordered`), and ``chip_delay`` delays the layers
    the chip delays, as :func:`rewire.compiler.simulate.simulate` does.

    Raises:
        rewire.errors.ExportError: a conv layer whose partial sums could reach ``2**24``
            (:func:`accumulators`).
    """
    acc = accumulators(net)
    nfmt = net.profile.neuron
    i64 = np.int64
    rules, n_layers = chip_rules(net), len(net.layers)
    if lava_delay and chip_delay:
        raise ValueError("lava_delay and chip_delay: give one delay model, not both")
    delayed = rules.delayed(n_layers) if chip_delay else (lava_delay,) * n_layers
    if rules.ordered:
        _check_ordered(net)

    def emit(b: GraphBuilder, x: str, states: dict) -> tuple[str, dict, list]:
        ops = OnnxIntOps(b, nfmt, cuba=not all(isinstance(l.chip, CompiledBitshiftLIF)
                                               for l in net.layers))
        if rules.input_max is not None:  # the chip takes at most input_max events
            x = b.op("Min", [x, b.const("input_max", rules.input_max, i64)], "x_clipped")
        s, new, spikes, seen = x, {}, [], [x]
        if any(delayed) and any(layer.skips for layer in net.layers):
            raise ExportError("a network with skip connections has no Lava-delayed model "
                              "(each path would arrive with its own delay)", "onnx_int")
        for k, layer in enumerate(net.layers):
            p = ops.p = f"l{k}_"
            ops.k = k
            if delayed[k]:
                new[f"p{k}"] = b.op("Identity", [s], p + "pending")
                s = states[f"p{k}"]
            if rules.ordered:  # synapse by synapse, saturated after each (Xylo)
                terms = [(s, layer.weight_int)] + ([(states[f"r{k}"], layer.weight_rec_int)]
                                                   if layer.recurrent else [])
                a = b.op("Sub", [ops.ordered(states[f"u{k}"], terms, f"Word{k}"),
                                 states[f"u{k}"]], p + "a")
            elif acc[k].dtype == "float32":  # float32 Conv / MatMul of integers, exact < 2**24
                s_f = b.op("Cast", [s], p + "s_f", to=TensorProto.FLOAT)
                a_f = lookup(_INPUT_F32, layer, "integer ONNX")(b, s_f, layer, k, p)
                a = b.op("Cast", [a_f], p + "a", to=TensorProto.INT64)
            else:  # dense layer above the float32 bound: int64 MatMul (slow, exact)
                a = b.op("MatMul", [s, b.const(f"Wint{k}_T", layer.weight_int.T, i64)], p + "a")
            if layer.recurrent and not rules.ordered:  # a += W_rec z_{t-1}, one step back
                w_rec = layer.weight_rec_int.T
                if acc[k].dtype == "float32":
                    r_f = b.op("Cast", [states[f"r{k}"]], p + "r_f", to=TensorProto.FLOAT)
                    rec = b.op("Cast", [b.op("MatMul", [r_f, b.const(f"Wrec{k}_T", w_rec,
                                                                      np.float32)],
                                             p + "rec_f")], p + "rec", to=TensorProto.INT64)
                else:
                    rec = b.op("MatMul", [states[f"r{k}"], b.const(f"Wrec{k}_T", w_rec, i64)],
                               p + "rec")
                a = b.op("Add", [a, rec], p + "a_rec")
            for n, skip in enumerate(layer.skips):  # int64 MatMul: exact at any size
                w = b.const(f"Wskip{k}_{n}_T", skip.weight_int.T, i64)
                a = b.op("Add", [a, b.op("MatMul", [seen[skip.source], w], p + f"skip{n}")],
                         p + f"a_skip{n}")
            if layer.bias_int is not None:
                a = _add_bias(b, a, layer, k, p, states if lava_delay else None, new)
            new[f"u{k}"], new[f"v{k}"], s, fire = layer.chip.int_step(
                ops, states[f"u{k}"], states[f"v{k}"], a, states.get(f"r{k}"))
            if fire is not None and _keeps_spikes(layer):
                new[f"r{k}"] = b.op("Identity", [s], p + "r_new")
            spikes.append(s)
            seen.append(s)
        return s, new, spikes

    states, layout = [], {}
    if lava_delay and any(l.bias_int is not None for l in net.layers):  # when biases start
        states, layout["clock"] = [("t_seen", 1)], {"states": {"t_seen": 1}, "dtype": "int64"}
    for k, layer in enumerate(net.layers):
        n_out, n_in = layer.shape
        widths = {f"u{k}": n_out, f"v{k}": n_out, **({f"p{k}": n_in} if delayed[k] else {}),
                  **({f"r{k}": n_out} if _keeps_spikes(layer) else {})}
        states += list(widths.items())
        layout[f"layer{k}"] = {"states": widths, "size": n_out, "dtype": "int64",
                               "neuron": layer.neuron.kind,
                               "accumulate": acc[k].dtype, "sum_bound": acc[k].bound,
                               **map_shape(layer), **spike_fields(layer)}
    return StepBody(name="rewire_cuba_int_step", elem=TensorProto.INT64,
                    x_elem=TensorProto.INT64, n_in=net.sizes[0], states=tuple(states),
                    spikes=tuple((f"z{k}", l.shape[0]) for k, l in enumerate(net.layers)),
                    emit=emit, layout=layout)


def _check_ordered(net: CompiledNetwork) -> None:
    """Refuse conv layers, skips, biases (:func:`~rewire.compiler.chip_rules.ordered_input`)."""
    for layer in net.layers:
        if not isinstance(layer, CompiledDense) or layer.skips or layer.bias_int is not None:
            raise ExportError(f"integer ONNX export: layer {layer.name}: the {net.profile.name} "
                              f"integer model takes dense layers without skips or bias",
                              "onnx_int", layer.name)


def _keeps_spikes(layer) -> bool:
    """Whether the step keeps the layer's spikes as a state ``r<k>``: a recurrent layer, or
    one that resets one step late (``reset_delay``)."""
    return layer.recurrent or (layer.spiking and layer.neuron.reset_delay)


def build(net: CompiledNetwork, lava_delay: bool = False,
          chip_delay: bool = False) -> onnx.ModelProto:
    """The integer chip model over all steps (one ``Scan``); checked, with metadata.

    Example:
        >>> import rewire
        >>> from rewire.training.model import SpikingMLP
        >>> net = rewire.compile(SpikingMLP((4, 3, 2)), "loihi2", 16)
        >>> build(net).graph.input[0].type.tensor_type.elem_type == TensorProto.INT64
        True
    """
    model = scan_model(net, int_body(net, lava_delay, chip_delay), "int_unrolled", USAGE_SCAN)
    return _set_int_props(model, net, lava_delay, chip_delay)


def build_step(net: CompiledNetwork, lava_delay: bool = False,
               chip_delay: bool = False) -> onnx.ModelProto:
    """The integer chip model, one step with explicit int64 states; checked, with metadata."""
    model = step_model(net, int_body(net, lava_delay, chip_delay), "int_step", USAGE_STEP)
    return _set_int_props(model, net, lava_delay, chip_delay)


def _set_int_props(model: onnx.ModelProto, net: CompiledNetwork, lava_delay: bool,
                   chip_delay: bool = False) -> onnx.ModelProto:
    """Add the integer files' metadata: ``lava_delay`` (``chip_delay`` when set) and, when
    the first layer sums in float32, ``exact_payload_max`` (:func:`exact_payload_max`)."""
    props = {p.key: p.value for p in model.metadata_props}
    props["lava_delay"] = str(lava_delay)
    if chip_delay:
        props["chip_delay"] = "True"
    limit = exact_payload_max(net)
    if limit is not None:
        props["exact_payload_max"] = str(limit)
    onnx.helper.set_model_props(model, props)
    return model


def write(net: CompiledNetwork, path: str | Path, lava_delay: bool = False,
          chip_delay: bool = False) -> Path:
    """Build the unrolled integer model and write it atomically; return the path."""
    return save(build(net, lava_delay, chip_delay), path)


def run(path, payload: np.ndarray, sess=None) -> np.ndarray:
    """Run an integer model (unrolled or per-step) on ``payload (T, B, n_in)`` int64 (or
    ``(T, B, *input_shape)``, the file's ``input_shape`` metadata; see
    :mod:`rewire.ir.input_layout`).

    Returns:
        Output spikes ``(T, B, n_out)`` uint8 (a leaky-integrator readout's voltages as
        int64), comparable with ``rewire.compiler.simulate.simulate(net, payload)[-1]``.

    Raises:
        ValueError: a payload value's magnitude exceeds the file's ``exact_payload_max``
            (the float32 sums of the first layer could be rounded), or the payload is in
            neither layout.
    """
    sess = sess or session(path)
    given = np.shape(payload)
    payload, lead = flat_input(sess, np.asarray(payload, dtype=np.int64), "payload")
    if lead != 2:
        raise ValueError(f"payload: shape {given} is one value per sample, (B, ...); an "
                         f"integer payload has a time axis, (T, B, ...): build it with "
                         f"rewire.compiler.simulate.encode_input")
    payload = np.ascontiguousarray(payload)
    meta, states = body_from_meta(sess)
    limit = meta.get("exact_payload_max")
    if limit is not None and payload.size and int(np.abs(payload).max()) > int(limit):
        raise ValueError(
            f"integer ONNX run: payload magnitude {int(np.abs(payload).max())} exceeds the "
            f"file's exact_payload_max = {limit} (its first layer sums in float32, exact only "
            f"below 2**24); encode the input with rewire.compiler.simulate.encode_input, or "
            f"compare with rewire.compiler.simulate.simulate")
    if meta["kind"] == "int_step":
        out = run_steps(sess, payload, states, np.int64)
    else:
        out = sess.run(["z"], {"x": payload})[0]
    layout = json.loads(meta["state_layout"])
    last = [v for k, v in layout.items() if k.startswith("layer")][-1]
    counts = last.get("neuron") in ("LI", "CubaLI") or last.get("max_spikes", 1) > 1
    return out if counts else out.astype(np.uint8)
