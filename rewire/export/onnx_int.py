r"""Integer ONNX of the chip model: the fixed-point CUBA step of
:func:`rewire.compile.simulate.simulate`, in int64 ONNX operators, so a deployment team can
check the chip's behaviour with onnxruntime alone.

Per layer and step (Lava ``PyLifModelBitAcc``; REFERENCE §3), exactly as ``simulate`` does:

.. math::
    a &= W_\mathrm{int}\, s \\
    u &= \mathrm{wrap}_{24}\big(\mathrm{trunc_0}(u (4096 - \mathrm{iDecay}) / 4096) + a \cdot 2^6\big) \\
    v &= \mathrm{clip}_{24}\big(\mathrm{trunc_0}(v (4096 - \mathrm{vDecay}) / 4096) + u\big) \\
    z &= v > \mathrm{vThMant} \cdot 2^6, \qquad v \leftarrow 0 \text{ where } z

``trunc0(p / 4096)`` is written ``Where(p < 0, -Div(|p|, 4096), Div(|p|, 4096))``: ONNX leaves
the rounding of integer ``Div`` of negative numbers open, ``BitShift`` takes unsigned types
only, and onnxruntime 1.23's int64 ``Sign`` returned -1 for positive products above 2^31
(found here: ``Sign(2_361_478_912) == -1``); the
24-bit wrap of ``u`` is two ``Where`` and the saturation of ``v`` a ``Clip``. With
``lava_delay=True`` every layer delivers its input one step later (a ``p<k>`` state per layer
holds it), as each ``Dense`` process in Lava does.

Files: ``x`` is the integer input payload (int64; graded pixel values for ``current``
encoding, 0/1 spikes for ``rate``; :func:`rewire.compile.simulate.encode_input`), states
``u<k>, v<k>`` (and ``p<k>``) int64, spikes int64 0/1. :func:`build` writes the ``Scan``
model ``x (T, batch, n_in) -> z (T, batch, n_out)``; :func:`build_step` the per-step one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from rewire.compile.network import CompiledNetwork
from rewire.export.onnx_graph import (GraphBuilder, StepBody, body_from_meta, run_steps, save,
                                      scan_model, session, step_model)

USAGE_SCAN = ("feed the integer payload x (T, batch, n_in) int64 (rewire.compile.simulate."
              "encode_input); z (T, batch, n_out) int64 0/1 equals the chip model's spikes")
USAGE_STEP = ("loop over T steps: feed x (batch, n_in) int64 and the previous *_out states "
              "(zeros at t=0); z is the output spike vector")


def int_body(net: CompiledNetwork, lava_delay: bool = False) -> StepBody:
    """The chip's integer step of ``net`` (module docstring) as a :class:`StepBody`.

    States per layer ``k``: ``u<k>`` (current), ``v<k>`` (voltage), int64 ``(batch, n_k)``,
    and with ``lava_delay`` ``p<k>`` (the input that arrived one step earlier, ``(batch,
    n_in_k)``).

    Raises:
        ValueError: ``net`` has a conv layer (named in the message; export it as netx).
    """
    net.require_dense("integer ONNX export")
    nfmt = net.profile.neuron
    half = 1 << (nfmt.state_bits - 1)
    unit = 1 << nfmt.decay_bits
    i64 = np.int64

    def trunc_decay(b: GraphBuilder, x: str, decay: int, p: str) -> str:
        prod = b.op("Mul", [x, b.const(f"keep_{unit - decay}", unit - decay, i64)], p + "prod")
        # Div of non-negative numbers only: its rounding is then floor = trunc0 everywhere
        mag = b.op("Div", [b.op("Abs", [prod], p + "abs"), b.const("unit", unit, i64)],
                   p + "mag")
        neg = b.op("Less", [prod, b.const("zero_i", 0, i64)], p + "neg")
        return b.op("Where", [neg, b.op("Neg", [mag], p + "neg_mag"), mag], p + "dec")

    def emit(b: GraphBuilder, x: str, states: dict) -> tuple[str, dict, list]:
        act = b.const("act_mult", 1 << nfmt.activation_shift, i64)
        half_c, two_half = b.const("half", half, i64), b.const("two_half", 2 * half, i64)
        neg_half = b.const("neg_half", -half, i64)
        v_lo, v_hi = b.const("v_lo", -half + 1, i64), b.const("v_hi", half - 1, i64)
        zero = b.const("zero_i", 0, i64)
        s, new, spikes = x, {}, []
        for k, layer in enumerate(net.layers):
            p = f"l{k}_"
            if lava_delay:
                new[f"p{k}"] = b.op("Identity", [s], p + "pending")
                s = states[f"p{k}"]
            a = b.op("MatMul", [s, b.const(f"Wint{k}_T", layer.weight_int.T, i64)], p + "a")
            u_pre = b.op("Add", [trunc_decay(b, states[f"u{k}"], layer.i_decay, p + "u_"),
                                 b.op("Mul", [a, act], p + "a_shift")], p + "u_pre")
            over = b.op("Greater", [u_pre, half_c], p + "over")
            wrapped = b.op("Where", [over, b.op("Sub", [u_pre, two_half], p + "u_dn"), u_pre],
                           p + "u_w")
            under = b.op("Not", [b.op("Greater", [wrapped, neg_half], p + "gt_neg")], p + "under")
            new[f"u{k}"] = b.op("Where", [under, b.op("Add", [u_pre, two_half], p + "u_up"),
                                          wrapped], p + "u_new")
            v_pre = b.op("Add", [trunc_decay(b, states[f"v{k}"], layer.v_decay, p + "v_"),
                                 new[f"u{k}"]], p + "v_pre")
            v_cl = b.op("Clip", [v_pre, v_lo, v_hi], p + "v_clip")
            th = b.const(f"vth{k}", layer.v_th_mant << nfmt.threshold_shift, i64)
            fire = b.op("Greater", [v_cl, th], p + "fire")
            new[f"v{k}"] = b.op("Where", [fire, zero, v_cl], p + "v_new")
            s = b.op("Cast", [fire], f"z{k}", to=TensorProto.INT64)
            spikes.append(s)
        return s, new, spikes

    states, layout = [], {}
    for k, layer in enumerate(net.layers):
        n_out, n_in = layer.shape
        widths = {f"u{k}": n_out, f"v{k}": n_out, **({f"p{k}": n_in} if lava_delay else {})}
        states += list(widths.items())
        layout[f"layer{k}"] = {"states": widths, "size": n_out, "dtype": "int64"}
    return StepBody(name="rewire_cuba_int_step", elem=TensorProto.INT64,
                    x_elem=TensorProto.INT64, n_in=net.sizes[0], states=tuple(states),
                    spikes=tuple((f"z{k}", l.shape[0]) for k, l in enumerate(net.layers)),
                    emit=emit, layout=layout)


def build(net: CompiledNetwork, lava_delay: bool = False) -> onnx.ModelProto:
    """The integer chip model over all steps (one ``Scan``); checked, with metadata.

    Example:
        >>> from rewire.hw_profiles.profile import load_profile
        >>> from rewire.compile.quantize import compile_network
        >>> from rewire.training.model import SpikingMLP
        >>> net = compile_network(SpikingMLP((4, 3, 2)), load_profile("loihi2"), 16)
        >>> build(net).graph.input[0].type.tensor_type.elem_type == TensorProto.INT64
        True
    """
    model = scan_model(net, int_body(net, lava_delay), "int_unrolled", USAGE_SCAN)
    onnx.helper.set_model_props(model, {**_props(model), "lava_delay": str(lava_delay)})
    return model


def build_step(net: CompiledNetwork, lava_delay: bool = False) -> onnx.ModelProto:
    """The integer chip model, one step with explicit int64 states; checked, with metadata."""
    model = step_model(net, int_body(net, lava_delay), "int_step", USAGE_STEP)
    onnx.helper.set_model_props(model, {**_props(model), "lava_delay": str(lava_delay)})
    return model


def _props(model: onnx.ModelProto) -> dict:
    return {p.key: p.value for p in model.metadata_props}


def write(net: CompiledNetwork, path: str | Path, lava_delay: bool = False) -> Path:
    """Build the unrolled integer model and write it atomically; return the path."""
    return save(build(net, lava_delay), path)


def run(path, payload: np.ndarray, sess=None) -> np.ndarray:
    """Run an integer model (unrolled or per-step) on ``payload (T, B, n_in)``.

    Returns:
        Output spikes ``(T, B, n_out)`` uint8, comparable with
        ``rewire.compile.simulate.simulate(net, payload)[-1]``.
    """
    sess = sess or session(path)
    payload = np.ascontiguousarray(payload, dtype=np.int64)
    meta, states = body_from_meta(sess)
    if meta["kind"] == "int_step":
        out = run_steps(sess, payload, states, np.int64)
    else:
        out = sess.run(["z"], {"x": payload})[0]
    return out.astype(np.uint8)
