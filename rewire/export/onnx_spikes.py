r"""The float ONNX step's threshold, reset and floor for a neuron with non-default spike
fields (:data:`rewire.ir.neurons.SPIKE_FIELDS`): :func:`rewire.ir.dynamics._spike` as float32
ONNX nodes, operation for operation, so onnxruntime reproduces the float IR bit for bit:

.. math::
    v &\leftarrow v - z_{t-1} v_\mathrm{th}\ \text{(subtract)}\ \text{or}\
        (1 - [z_{t-1} > 0]) v + [z_{t-1} > 0] v_\mathrm{reset}\ \text{(set)}
        &&\text{with reset\_delay} \\
    n &= H(v - v_\mathrm{th}),\ [v - v_\mathrm{th} \ge 0],\ \text{or}\
        \mathrm{clip}(\lfloor v / v_\mathrm{th}\rfloor, 0, \texttt{max\_spikes})
        [v - v_\mathrm{th} \ge 0] \\
    v &\leftarrow \text{the reset of } n &&\text{without reset\_delay} \\
    v &\leftarrow \mathrm{relu}(v - v_\mathrm{min}) + v_\mathrm{min}

(sources of each rule: :func:`rewire.ir.dynamics._spike`). A neuron at the defaults keeps the
nodes of :func:`rewire.export.onnx_step.float_body` (its files are unchanged).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from rewire.export.onnx_graph import GraphBuilder

__all__ = ["spike_step"]

F32 = np.float32


def _reset(b: GraphBuilder, nrn, k: int, p: str, v: str, n: str, tag: str) -> str:
    if nrn.reset == "subtract":
        sub = b.op("Mul", [n, b.const(f"v_th{k}", nrn.v_th)], p + tag + "_sub")
        return b.op("Sub", [v, sub], p + tag + "_v")
    fired = b.op("Cast", [b.op("Greater", [n, b.const("zero", 0.0)], p + tag + "_gt")],
                 p + tag + "_fired", to=TensorProto.FLOAT)
    keep = b.op("Mul", [b.op("Sub", [b.const("one", 1.0), fired], p + tag + "_keep"), v],
                p + tag + "_kept")
    rst = b.op("Mul", [fired, b.const(f"v_reset{k}", nrn.v_reset)], p + tag + "_rst")
    return b.op("Add", [keep, rst], p + tag + "_v")


def spike_step(b: GraphBuilder, nrn, k: int, p: str, v: str, z_prev: str | None
               ) -> tuple[str, str]:
    """Emit layer ``k``'s spike step (module docstring) on the float32 voltage ``v``.

    Args:
        b: the graph being built; nrn: the layer's IR neuron; p: the value-name prefix.
        z_prev: the layer's spikes of the step before (the ``r<k>`` state), read with
            ``reset_delay``.

    Returns:
        ``(z, v_new)``: the spikes ``z<k>`` (counts with ``max_spikes > 1``) and the new
        voltage, float32 ``(batch, n_k)``.
    """
    v_th = b.const(f"v_th{k}", nrn.v_th)
    if nrn.reset_delay:
        v = _reset(b, nrn, k, p, v, z_prev, "late")
    margin = b.op("Sub", [v, v_th], p + "margin")
    if nrn.max_spikes > 1 or nrn.spike_at_threshold:
        at = b.op("Cast", [b.op("GreaterOrEqual", [margin, b.const("zero", 0.0)], p + "ge")],
                  p + "at", to=TensorProto.FLOAT)
    else:
        at = b.op("Cast", [b.op("Greater", [margin, b.const("zero", 0.0)], p + "gt")],
                  p + "at", to=TensorProto.FLOAT)
    if nrn.max_spikes > 1:
        count = b.op("Clip", [b.op("Floor", [b.op("Div", [v, v_th], p + "ratio")], p + "fl"),
                              b.const("zero", 0.0),
                              b.const(f"most{k}", F32(nrn.max_spikes))], p + "count")
        z = b.op("Mul", [count, at], f"z{k}")
    else:
        z = b.op("Identity", [at], f"z{k}")
    if not nrn.reset_delay:
        v = _reset(b, nrn, k, p, v, z, "now")
    if nrn.v_min is not None:
        v_min = b.const(f"v_min{k}", nrn.v_min)
        v = b.op("Add", [b.op("Relu", [b.op("Sub", [v, v_min], p + "above")], p + "relu"),
                         v_min], p + "floor")
    return z, b.op("Identity", [v], p + "v_new")
