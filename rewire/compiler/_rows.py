"""Row-block arithmetic for :func:`rewire.compiler.quantize.quantize_layer`: a layer's float
weights ``[W | W_rec / c | b / c]`` read a block of rows at a time in float64, so that compile
time and memory grow linearly with the synapses (docs/compiler.md, "Large layers").

The quantizer's worst-case activation is a row sum ``sum_j |w_ij| m_j`` taken left to right
over the connected synapses. :class:`RowBlocks` gives exactly that value, bit for bit, without
a sequential pass over the whole matrix: fast (pairwise/BLAS) row sums, computed once per layer,
pick the few rows that can hold the maximum (any summation order is within ``n u`` relative
of the exact one, ``u = 2**-53``), and only those rows are summed left to right. Sums of
integers (quantized weights times integer payloads) are exact in any order below ``2**53``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

BLOCK = 1 << 16  # matrix entries handled at a time (a block stays in the CPU's cache)
MARGIN = 1e-6    # relative margin covering any summation order up to 10**9 terms
EXACT_INT = 2.0 ** 53


class RowBlocks:
    """A dense layer's float weights, read in row blocks.

    The recurrent weights and the bias are the *extra* columns: each carries one unit (a
    binary spike, or the bias's always-on 1), not one unit of input payload.

    Args:
        weight: float ``(out, in)`` (float32 as the IR holds it; not copied).
        weight_rec: float ``(out, out)`` recurrent weights, or ``None``.
        bias: float ``(out,)`` bias (one more column, ``a = W x + b``), or ``None``.

    Attributes:
        n_out, n_in, width: rows, input columns, all columns (``in + out`` when recurrent,
            one more with a bias).
        extra: the extra columns ``[W_rec | b]`` ``(out, width - in)``, or ``None``.
        bad: count of non-finite weights.
        wmax_in, wmax_rec: largest ``|W|`` and ``|[W_rec | b]|`` (0 when empty).
        sum_in, sum_rec: float64 ``(out,)`` row sums of ``|W|`` and ``|[W_rec | b]|`` (any
            order).
    """

    def __init__(self, weight: np.ndarray, weight_rec: np.ndarray | None = None,
                 bias: np.ndarray | None = None):
        self.weight, self.weight_rec, self.bias = np.asarray(weight), weight_rec, bias
        self.n_out, self.n_in = self.weight.shape
        parts = [p for p in (weight_rec, None if bias is None else
                             np.asarray(bias).reshape(-1, 1)) if p is not None]
        self.extra = None if not parts else parts[0] if len(parts) == 1 else np.hstack(parts)
        self.width = self.n_in + (0 if self.extra is None else self.extra.shape[1])
        self.rows_per = max(1, BLOCK // max(self.width, 1))
        self.bad, self.wmax_in, self.wmax_rec = 0, 0.0, 0.0
        self.sum_in, self.sum_rec = np.zeros(self.n_out), np.zeros(self.n_out)
        for part, sums in ((self.weight, self.sum_in), (self.extra, self.sum_rec)):
            if part is None:
                continue
            top = 0.0
            for r0 in self.starts:
                a = np.abs(np.asarray(part[r0:r0 + self.rows_per], np.float64))
                finite = np.isfinite(a)
                if not finite.all():
                    self.bad += int(np.count_nonzero(~finite))
                    continue
                top = max(top, float(a.max(initial=0.0)))
                sums[r0:r0 + len(a)] = a.sum(axis=1)
            if part is self.weight:
                self.wmax_in = top
            else:
                self.wmax_rec = top

    @property
    def starts(self) -> range:
        """First row of each block."""
        return range(0, self.n_out, self.rows_per)

    def block(self, r0: int, rec_div: float, rows: int | None = None) -> np.ndarray:
        """float64 ``[W | extra / rec_div]`` of rows ``r0 .. r0 + rows`` (default: a block)."""
        r1 = r0 + (self.rows_per if rows is None else rows)
        b = np.array(self.weight[r0:r1], np.float64)  # always a copy: callers write to it
        if self.extra is None:
            return b
        return np.hstack([b, np.asarray(self.extra[r0:r1], np.float64) / rec_div])

    def wmax(self, rec_div: float) -> float:
        """Largest ``|w|`` of ``[W | extra / rec_div]`` (division is monotone: exact)."""
        return max(self.wmax_in, self.wmax_rec / rec_div if self.extra is not None
                   else 0.0)

    def max_row_sum(self, col_max: np.ndarray, rec_div: float) -> float:
        """``max_i sum_j |w_ij| col_max_j`` over ``[W | extra / rec_div]``, each row added
        left to right (as ``numpy.bincount`` over the connected synapses would)."""
        if self.n_out == 0 or self.width == 0:
            return 0.0
        p_in = float(col_max[0]) if self.n_in else 0.0
        approx = self.sum_in * p_in + self.sum_rec / rec_div
        top = float(approx.max())
        if top == 0.0:
            return 0.0
        best = 0.0
        for r in np.flatnonzero(approx >= top * (1 - MARGIN)):
            row = self.block(int(r), rec_div, rows=1)
            best = max(best, float(np.cumsum(np.abs(row) * col_max, axis=1)[0, -1]))
        return best


def int_row_sums(q: np.ndarray, col_max, wmag: float) -> np.ndarray:
    """``sum_j |q_ij| col_max_j`` for integer-valued float ``q`` and ``col_max`` (an array, or
    one number for every column): exact in any order while the sums stay below ``2**53``;
    otherwise added left to right. ``q`` is overwritten."""
    np.abs(q, out=q)
    top = float(np.max(col_max, initial=0.0))
    if q.shape[1] * wmag * top < EXACT_INT:
        return q.sum(axis=1) * col_max if np.ndim(col_max) == 0 else \
            (np.multiply(q, col_max, out=q)).sum(axis=1)
    np.multiply(q, col_max, out=q)
    return np.cumsum(q, axis=1)[:, -1] if q.shape[1] else np.zeros(len(q))


def calibrated_max(dense: np.ndarray, cal: np.ndarray, n_in: int) -> float:
    """Largest ``|synaptic input|`` of float64 synapses ``dense`` ``(out, width)`` over
    calibration payloads ``cal`` ``(B, n_in)``, recurrent columns at their worst case."""
    if not np.any(dense):
        return 0.0
    worst_rec = np.abs(dense[:, n_in:]).sum(1)
    return float((np.abs(cal @ dense[:, :n_in].T) + worst_rec).max())


def conv_patches(payloads: np.ndarray, in_shape: tuple[int, int, int],
                 kernel: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int], chunk: int = 256) -> np.ndarray:
    """The distinct input patches a convolution sees: im2col of ``payloads``, rows deduplicated.

    Row ``r`` of the result times a flattened kernel row ``weight.reshape(C_out, -1)[o]`` is the
    synaptic input of one neuron of output channel ``o`` (``groups = 1``), so
    :func:`quantize_layer` can bound a conv layer's activation exactly as a dense one's.

    Args:
        payloads: integer inputs ``(B, C*H*W)`` in ``(C, H, W)`` order.
        in_shape: ``(C, H, W)``.
        kernel, stride, padding: ``(y, x)`` pairs as in ``torch.nn.Conv2d``.
        chunk: samples unfolded at a time (bounds memory).

    Returns:
        int64 ``(P, C*kH*kW)``: the distinct patches (zero padding included).
    """
    found = []
    for i in range(0, len(payloads), chunk):
        x = torch.as_tensor(np.asarray(payloads[i:i + chunk], dtype=np.float64))
        cols = F.unfold(x.reshape(-1, *in_shape), kernel, padding=padding, stride=stride)
        rows = cols.transpose(1, 2).reshape(-1, cols.shape[1]).numpy().astype(np.int64)
        found.append(np.unique(rows, axis=0))
    return np.unique(np.concatenate(found), axis=0)
