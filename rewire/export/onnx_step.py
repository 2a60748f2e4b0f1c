r"""ONNX export of one time step, with every neuron state as an explicit input and output.

No SNN library ships an ONNX exporter (Norse issue #200); what runs everywhere is a graph for
one Euler step of the float model (Norse 1.1 LIF, REFERENCE §3) that the caller loops over::

    inputs : x (batch, n_in)  and, per layer k = 0..L-1,  v<k>, i<k> (batch, n_k)
    outputs: z (batch, n_out) and, per layer,  v<k>_out, i<k>_out,  and z<k> (batch, n_k)

Per layer, in Norse's order of operations (so onnxruntime reproduces Norse to float rounding):

.. math::
    j = i + W s,\quad \tilde v = v + c_m((v_\mathrm{leak} - v) + j),\quad
    i' = j + (-c_s) j,\quad z = H(\tilde v - v_\mathrm{th}),\quad
    v' = (1 - z)\tilde v + z v_\mathrm{reset}

with :math:`c_m = \Delta t\,\tau_\mathrm{mem}^{-1}`, :math:`c_s = \Delta t\,\tau_\mathrm{syn}^{-1}`.
For ``current`` encoding ``x`` is the input in [0, 1] and the graph multiplies it by the
input gain; for ``rate`` encoding ``x`` is the input spike vector. States start at 0.
Opset 17; the file passes ``onnx.checker`` with full shape inference.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rewire import __version__
from rewire.compile.network import CompiledNetwork
from rewire.export.atomic import atomic_path

OPSET = 17
IR_VERSION = 8  # the IR version of opset 17; onnxruntime 1.23 reads IR <= 11


def _const(nodes_init: list, name: str, value) -> str:
    nodes_init.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
    return name


def build(net: CompiledNetwork) -> onnx.ModelProto:
    """Build the per-step ONNX model of ``net``'s float parameters (see module docstring).

    Returns:
        A checked ``onnx.ModelProto`` with metadata (rewire version, profile, dt, T,
        encoding, input gain, state layout).
    """
    nrn = net.neuron
    init: list = []
    nodes: list = []
    f32 = np.float32
    # Norse computes dt * tau_inv as a float32 tensor product; do the same.
    c_mem = _const(init, "c_mem", f32(nrn.tau_mem_inv) * f32(nrn.dt))
    neg_c_syn = _const(init, "neg_c_syn", -(f32(nrn.tau_syn_inv) * f32(nrn.dt)))
    v_leak = _const(init, "v_leak", nrn.v_leak)
    v_th = _const(init, "v_th", nrn.v_th)
    v_reset = _const(init, "v_reset", nrn.v_reset)
    one = _const(init, "one", 1.0)
    zero = _const(init, "zero", 0.0)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", net.sizes[0]])]
    outputs = []
    s = "x"
    if net.encoding == "current":
        gain = _const(init, "input_gain", net.input_gain)
        nodes.append(helper.make_node("Mul", ["x", gain], ["x_current"]))
        s = "x_current"
    for k, layer in enumerate(net.layers):
        n = layer.shape[0]
        for state in ("v", "i"):
            inputs.append(helper.make_tensor_value_info(f"{state}{k}", TensorProto.FLOAT,
                                                        ["batch", n]))
        w_t = _const(init, f"W{k}_T", layer.weight.T)
        p = f"l{k}_"
        nodes += [
            helper.make_node("MatMul", [s, w_t], [p + "cur"]),
            helper.make_node("Add", [f"i{k}", p + "cur"], [p + "j"]),
            helper.make_node("Sub", [v_leak, f"v{k}"], [p + "leak"]),
            helper.make_node("Add", [p + "leak", p + "j"], [p + "drive"]),
            helper.make_node("Mul", [c_mem, p + "drive"], [p + "dv"]),
            helper.make_node("Add", [f"v{k}", p + "dv"], [p + "v_dec"]),
            helper.make_node("Mul", [neg_c_syn, p + "j"], [p + "di"]),
            helper.make_node("Add", [p + "j", p + "di"], [f"i{k}_out"]),
            helper.make_node("Sub", [p + "v_dec", v_th], [p + "margin"]),
            helper.make_node("Greater", [p + "margin", zero], [p + "fire"]),
            helper.make_node("Cast", [p + "fire"], [f"z{k}"], to=TensorProto.FLOAT),
            helper.make_node("Sub", [one, f"z{k}"], [p + "keep"]),
            helper.make_node("Mul", [p + "keep", p + "v_dec"], [p + "v_kept"]),
            helper.make_node("Mul", [f"z{k}", v_reset], [p + "v_rst"]),
            helper.make_node("Add", [p + "v_kept", p + "v_rst"], [f"v{k}_out"]),
        ]
        s = f"z{k}"
        outputs += [helper.make_tensor_value_info(f"{name}", TensorProto.FLOAT, ["batch", n])
                    for name in (f"v{k}_out", f"i{k}_out", f"z{k}")]
    last = len(net.layers) - 1
    nodes.append(helper.make_node("Identity", [f"z{last}"], ["z"]))
    outputs.insert(0, helper.make_tensor_value_info("z", TensorProto.FLOAT,
                                                    ["batch", net.sizes[-1]]))
    graph = helper.make_graph(nodes, "rewire_snn_step", inputs, outputs, initializer=init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="rewire", producer_version=__version__,
                              ir_version=IR_VERSION)
    meta = {"rewire_format_version": str(net.format_version), "profile": net.profile.name,
            "dt": repr(net.neuron.dt), "steps": str(net.steps), "encoding": net.encoding,
            "input_gain": repr(net.input_gain),
            "state_layout": json.dumps({f"layer{k}": {"v": f"v{k}", "i": f"i{k}",
                                                      "size": l.shape[0]}
                                        for k, l in enumerate(net.layers)}),
            "usage": "loop over T steps: feed x and the previous step's *_out states "
                     "(zeros at t=0); z is the output spike vector"}
    onnx.helper.set_model_props(model, meta)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def write(net: CompiledNetwork, path: str | Path) -> Path:
    """Build and write the per-step ONNX model atomically; return the path."""
    model = build(net)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return Path(path)


def run(path: str | Path, x: np.ndarray, steps: int | None = None) -> np.ndarray:
    """Loop the per-step model in onnxruntime over ``steps`` and return output spikes.

    Args:
        path: file written by :func:`write`.
        x: ``(B, n_in)`` constant input (current encoding) or ``(T, B, n_in)`` spikes (rate).
        steps: time steps for constant input (default: the file's ``steps``).

    Returns:
        Output spikes ``(T, B, n_out)`` float32.
    """
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    layout = json.loads(meta["state_layout"])
    x = np.asarray(x, dtype=np.float32)
    seq = x if x.ndim == 3 else np.broadcast_to(x, (steps or int(meta["steps"]),) + x.shape)
    batch = seq.shape[1]
    feeds = {}
    for spec in layout.values():
        feeds[spec["v"]] = np.zeros((batch, spec["size"]), np.float32)
        feeds[spec["i"]] = np.zeros((batch, spec["size"]), np.float32)
    names = [o.name for o in sess.get_outputs()]
    out = []
    for x_t in seq:
        feeds["x"] = np.ascontiguousarray(x_t)
        res = dict(zip(names, sess.run(None, feeds)))
        for spec in layout.values():
            feeds[spec["v"]] = res[spec["v"] + "_out"]
            feeds[spec["i"]] = res[spec["i"] + "_out"]
        out.append(res["z"])
    return np.stack(out)
