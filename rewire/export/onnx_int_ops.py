"""The ONNX backend of the chip's integer neuron step
(:meth:`rewire.ir.chip_neurons.ChipNeuron.int_step`), used by :mod:`rewire.export.onnx_int`:
each operation of the numpy backend (:class:`rewire.compiler.simulate.NumpyOps`) as int64
ONNX nodes (opset 17), with the same results bit for bit (see :mod:`rewire.export.onnx_int`
for why ``Div`` only ever sees non-negative numbers and ``Sign`` is not used).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from rewire.export.onnx_graph import GraphBuilder

__all__ = ["OnnxIntOps"]


class OnnxIntOps:
    """The ONNX backend of :meth:`rewire.ir.chip_neurons.ChipNeuron.int_step`: each method
    adds int64 nodes to the graph ``b`` (names prefixed by the layer's ``p``), so the integer
    file runs the very step :mod:`rewire.compiler.simulate` runs on numpy."""

    def __init__(self, b: GraphBuilder, nfmt, cuba: bool = True):
        """``cuba``: add the constants of Lava's CUBA step (:meth:`decay`, :meth:`wrap`,
        :meth:`clip`, :meth:`shift`) up front, as the Loihi files always had them; a net of
        Xylo neurons only (``False``) needs none of them."""
        self.b, self.nfmt, self.p, self.k = b, nfmt, "", 0
        half, i64 = 1 << (nfmt.state_bits - 1), np.int64
        self.unit = 1 << nfmt.decay_bits
        if cuba:
            self.act = b.const("act_mult", 1 << nfmt.activation_shift, i64)
            self.half_c = b.const("half", half, i64)
            self.two_half = b.const("two_half", 2 * half, i64)
            self.neg_half = b.const("neg_half", -half, i64)
            self.v_lo = b.const("v_lo", -half + 1, i64)
            self.v_hi = b.const("v_hi", half - 1, i64)
        self.zero = b.const("zero_i", 0, i64)
        self.saturated = 0  # saturate() calls so far (names its outputs)

    def decay(self, x: str, decay: int, tag: str) -> str:
        """``trunc0(x (unit - decay) / unit)``: Div of non-negative numbers only, whose
        rounding is then floor = trunc0 everywhere."""
        b, p, unit, i64 = self.b, self.p + tag, self.unit, np.int64
        prod = b.op("Mul", [x, b.const(f"keep_{unit - decay}", unit - decay, i64)], p + "prod")
        mag = b.op("Div", [b.op("Abs", [prod], p + "abs"), b.const("unit", unit, i64)],
                   p + "mag")
        neg = b.op("Less", [prod, b.const("zero_i", 0, i64)], p + "neg")
        return b.op("Where", [neg, b.op("Neg", [mag], p + "neg_mag"), mag], p + "dec")

    def shift(self, a: str) -> str:
        return self.b.op("Mul", [a, self.act], self.p + "a_shift")

    def add(self, x: str, y: str, tag: str) -> str:
        return self.b.op("Add", [x, y], self.p + tag)

    def wrap(self, u_pre: str) -> str:
        b, p = self.b, self.p
        over = b.op("Greater", [u_pre, self.half_c], p + "over")
        wrapped = b.op("Where", [over, b.op("Sub", [u_pre, self.two_half], p + "u_dn"), u_pre],
                       p + "u_w")
        under = b.op("Not", [b.op("Greater", [wrapped, self.neg_half], p + "gt_neg")],
                     p + "under")
        return b.op("Where", [under, b.op("Add", [u_pre, self.two_half], p + "u_up"), wrapped],
                    p + "u_new")

    def clip(self, v_pre: str) -> str:
        return self.b.op("Clip", [v_pre, self.v_lo, self.v_hi], self.p + "v_clip")

    def fire(self, v: str, v_th_mant: int) -> str:
        th = self.b.const(f"vth{self.k}", v_th_mant << self.nfmt.threshold_shift, np.int64)
        return self.b.op("Greater", [v, th], self.p + "fire")

    def reset(self, fire: str, v: str) -> str:
        return self.b.op("Where", [fire, self.zero, v], self.p + "v_new")

    def spikes(self, fire: str) -> str:
        return self.b.op("Cast", [fire], f"z{self.k}", to=TensorProto.INT64)

    # the spike fields (rewire.ir.chip_spikes)
    def _th(self, v_th_mant: int) -> str:
        return self.b.const(f"vth{self.k}", v_th_mant << self.nfmt.threshold_shift, np.int64)

    def fire_at(self, v: str, v_th_mant: int) -> str:
        return self.b.op("GreaterOrEqual", [v, self._th(v_th_mant)], self.p + "fire")

    def count(self, v: str, v_th_mant: int, most: int) -> str:
        """``[v >= th] min(v // th, most)``: ``Div`` of ``max(v, 0)``, whose rounding is
        then floor everywhere."""
        b, p, i64, th = self.b, self.p, np.int64, self._th(v_th_mant)
        pos = b.op("Max", [v, self.zero], p + "v_pos")
        n = b.op("Min", [b.op("Div", [pos, th], p + "v_div"),
                         b.const(f"most{self.k}", most, i64)], p + "n_most")
        at = b.op("Cast", [b.op("GreaterOrEqual", [v, th], p + "at")], p + "at_i",
                  to=TensorProto.INT64)
        return b.op("Mul", [n, at], p + "fire")

    def mask(self, n: str, tag: str) -> str:
        b, p = self.b, self.p + tag
        n_i = b.op("Cast", [n], p + "_n", to=TensorProto.INT64)
        return b.op("Greater", [n_i, self.zero], p + "_mask")

    def subtract(self, v: str, n: str, v_th_mant: int, tag: str) -> str:
        b, p = self.b, self.p + tag
        n_i = b.op("Cast", [n], p + "_n", to=TensorProto.INT64)
        return b.op("Sub", [v, b.op("Mul", [n_i, self._th(v_th_mant)], p + "_sub")],
                    p + "_v")

    def floor(self, v: str, v_min_mant: int) -> str:
        floor = self.b.const(f"vmin{self.k}", v_min_mant << self.nfmt.threshold_shift, np.int64)
        return self.b.op("Max", [v, floor], self.p + "v_floor")

    # Xylo's neuron (rewire.ir.chip_bitshift)
    def _dec(self, x: str, dash: int, tag: str) -> str:
        """``dec(x, dash)``: ``x >> dash`` (floor), ``1`` where that is 0 and ``x > 0``;
        ``Div`` of ``|x|`` only (``BitShift`` takes unsigned types): ``Max(Div(|x|, 2**d),
        1)`` for ``x > 0``, ``-Div(|x| + 2**d - 1, 2**d)`` (the floor) otherwise."""
        b, p, i64 = self.b, self.p + tag, np.int64
        step = b.const(f"pow2_{dash}", 1 << dash, i64)
        mag = b.op("Abs", [x], p + "abs")
        down = b.op("Div", [mag, step], p + "down")
        up = b.op("Div", [b.op("Add", [mag, b.const(f"pow2m1_{dash}", (1 << dash) - 1, i64)],
                               p + "mag_up"), step], p + "up")
        pos = b.op("Max", [down, b.const("least_1", 1, i64)], p + "at_least_1")
        return b.op("Where", [b.op("Greater", [x, self.zero], p + "is_pos"), pos,
                              b.op("Neg", [up], p + "neg_up")], p + "dec")

    def bitshift_decay(self, x: str, dash: int, tag: str) -> str:
        """``x - dec(x, dash)`` (:meth:`rewire.compiler.simulate.NumpyOps.bitshift_decay`)."""
        return self.b.op("Sub", [x, self._dec(x, dash, tag)], self.p + tag + "decayed")

    def bitshift_leak(self, x: str, dash: int, tag: str) -> str:
        """``-dec(x, dash)``, the change the decay makes
        (:meth:`rewire.compiler.simulate.NumpyOps.bitshift_leak`)."""
        return self.b.op("Neg", [self._dec(x, dash, tag)], self.p + tag + "leak")

    def ordered(self, u: str, terms: list[tuple[str, np.ndarray]], name: str) -> str:
        """``u`` plus the synaptic input added one presynaptic neuron at a time, saturated
        after each addition (:func:`rewire.compiler.chip_rules.ordered_input`, Xylo's
        ``Isyn`` accumulation): for each ``(s, w)`` of ``terms`` in order (the input, then a
        recurrent layer's own spikes of the step before), column ``j`` of ``s (batch, n)``
        times ``w[:, j]`` (``w`` int ``(n_out, n)``), ``j = 0, 1, ...``. Unrolled: 4 nodes
        per presynaptic neuron."""
        b, i64 = self.b, np.int64
        acc = u
        for t, (s, w) in enumerate(terms):
            for j in range(w.shape[1]):
                p = f"{self.p}o{t}_{j}_"
                col = b.op("Slice", [s, b.const(f"col{j}", [j], i64),
                                     b.const(f"col{j + 1}", [j + 1], i64),
                                     b.const("axis1", [1], i64)], p + "s")
                prod = b.op("Mul", [col, b.const(f"{name}_{t}_{j}", w[:, j], i64)], p + "ws")
                acc = self.saturate(b.op("Add", [acc, prod], p + "sum"))
        return acc

    def saturate(self, x: str) -> str:
        """Saturate at the ``state_bits`` two's-complement range (int16 on Xylo)."""
        half, b = 1 << (self.nfmt.state_bits - 1), self.b
        self.saturated += 1
        return b.op("Clip", [x, b.const("sat_lo", -half, np.int64),
                             b.const("sat_hi", half - 1, np.int64)], f"{self.p}sat{self.saturated}")

    def readout(self, v: str) -> tuple[str, str]:
        return (self.b.op("Identity", [v], self.p + "v_new"),
                self.b.op("Identity", [v], f"z{self.k}"))
