r"""Exact composition of IR synapse nodes that have no neuron between them, and BatchNorm
folding (pure numpy, float64 inside, float32 out).

Two synapse operators in a row are one linear map :math:`x \mapsto W_2 (W_1 x + b_1) + b_2`;
:func:`fuse` composes every such run before the :class:`~rewire.ir.network.Network` is built,
so that each layer of the chip holds the product (what the chip stores and the budget
counts):

.. math::
    \textbf{dense}\circ\textbf{dense:}\quad & W = W_2 W_1,\quad b = b_2 + W_2 b_1
        \quad\text{(the second may be recurrent: } W_\mathrm{rec}\text{ kept)}\\
    \textbf{conv}\circ\textbf{conv:}\quad & K[c_2, c_0, s_1 i + u, s_1 j + v] =
        \textstyle\sum_{c_1} W_2[c_2, c_1, i, j]\, W_1[c_1, c_0, u, v],\\
        & k = s_1 (k_2 - 1) + k_1,\quad s = s_1 s_2,\quad p = p_1 + s_1 p_2,\quad
        b = b_2 + \textstyle\sum_{c_1, i, j} W_2[c_2, c_1, i, j]\, b_1[c_1] \\
    \textbf{conv}\to\textbf{flatten}\to\textbf{dense:}\quad & W = W_2 M_1,\quad
        b = b_2 + W_2 (b_1 \otimes \mathbf{1}_{H_1 W_1})

per axis, with :math:`M_1` the first operator as a matrix and a sum pool a depthwise
convolution of constant kernel (``SumPool2d(2) -> Conv2d(3x3, stride 1, pad 1)`` is
``Conv2d(6x6, stride 2, pad 2)`` with kernel ``kron(W, ones(2, 2))``). Groups compose to
:math:`\gcd(g_1, g_2)` (a sum pool keeps the convolution's groups); two sum pools whose
product kernel is constant stay a sum pool.

**Where it is exact.** Composition of convolutions (in the sense of Dumoulin & Visin, "A
guide to convolution arithmetic", arXiv 1603.07285, Sec. 2) is exact for every geometry
when the second operator has no padding. With padding :math:`p_2 > 0` the second reads
zeros where the composed kernel reads the first operator's windows over the zero-extended
input; they agree when those windows hold only padding and the first has no bias: per axis
:math:`k_1 - s_1 \le p_1` (no overlapping window reaches back into the input) and, where the
second reads past the first's last output, :math:`s_1 H_1 \ge p_1 + H_0` (no remainder row of
the input left over). Anything else is refused naming the pair of layers and the fix.

**BatchNorm** (:func:`fold_batchnorm`, eval mode, Ioffe & Szegedy 2015, arXiv 1502.03167,
Alg. 2): :math:`w' = w\,\gamma/\sqrt{\sigma^2 + \epsilon}` per output row/channel,
:math:`b' = (b - \mu)\gamma/\sqrt{\sigma^2 + \epsilon} + \beta`. Per-row scaling keeps the
zero pattern of ``w`` wherever :math:`\gamma \neq 0`, so GradR's and the budget's counts of
the trained layer are the chip's; a channel with :math:`\gamma = 0` becomes all zeros (its
neurons see only :math:`b' = \beta`), so the chip holds fewer synapses than counted, never
more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from rewire.errors import LoweringError
from rewire.ir import nodes as irn

__all__ = ["fold_batchnorm", "fuse", "fused_geometry"]

_KIND = {irn.Dense: "Dense", irn.RecurrentDense: "RecurrentDense", irn.Conv2d: "Conv2d",
         irn.SumPool2d: "SumPool2d"}


def fold_batchnorm(node, gamma, beta, mean, var, eps: float):
    """``node`` (``Dense`` or ``Conv2d``) followed by an eval-mode BatchNorm, as one node.

    Args:
        node: the synapse the BatchNorm follows.
        gamma, beta, mean, var: per output row/channel, shape ``(out,)`` (``gamma`` 1 and
            ``beta`` 0 for ``affine=False``).
        eps: the BatchNorm's epsilon.

    Returns:
        A node of the same type, float32 weight and bias (module docstring).

    Raises:
        ValueError: the statistics do not have one entry per output, or ``var + eps <= 0``.
    """
    n = node.weight.shape[0]
    arrays = [np.asarray(a, dtype=np.float64).reshape(-1) for a in (gamma, beta, mean, var)]
    if any(a.shape != (n,) for a in arrays):
        raise ValueError(f"BatchNorm statistics must have {n} entries, one per output, got "
                         f"{[a.shape for a in arrays]}")
    gamma, beta, mean, var = arrays
    if not np.all(var + eps > 0):
        raise ValueError("BatchNorm: running_var + eps must be > 0")
    scale = gamma / np.sqrt(var + eps)
    w = node.weight.astype(np.float64) * scale.reshape(-1, *[1] * (node.weight.ndim - 1))
    b = np.zeros(n) if node.bias is None else node.bias.astype(np.float64)
    return replace(node, weight=w.astype(np.float32),
                   bias=((b - mean) * scale + beta).astype(np.float32))


# --------------------------------------------------------------------------- linear maps


@dataclass
class _Op:
    """A synapse node as a float64 linear map: ``dense`` (``weight (out, in)``) or ``conv``
    (``weight (C_out, C_in / groups, kH, kW)``, a sum pool included)."""

    kind: str
    weight: np.ndarray
    bias: np.ndarray | None
    in_shape: tuple
    out_shape: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    groups: int = 1
    w_rec: np.ndarray | None = None
    pool: float | None = None        # a SumPool2d of this weight (constant kernel)
    names: list = field(default_factory=list)
    kinds: list = field(default_factory=list)


def _op(node, in_shape, name, kind=None) -> _Op:
    f64 = lambda a: None if a is None else np.asarray(a, dtype=np.float64)  # noqa: E731
    out = node.out_shape(in_shape)
    kind = kind or _KIND[type(node)]
    if isinstance(node, irn.SumPool2d):
        c = in_shape[0]
        return _Op("conv", node.kernel_weights(c).astype(np.float64), None, in_shape, out,
                   node.stride, node.padding, c, pool=node.weight, names=[name], kinds=[kind])
    if isinstance(node, irn.Conv2d):
        return _Op("conv", f64(node.weight), f64(node.bias), in_shape, out, node.stride,
                   node.padding, node.groups, names=[name], kinds=[kind])
    return _Op("dense", f64(node.weight), f64(node.bias), (int(np.prod(in_shape)),), out,
               w_rec=f64(getattr(node, "weight_rec", None)), names=[name], kinds=[kind])


def _full(w: np.ndarray, c_in: int, groups: int) -> np.ndarray:
    """A grouped kernel ``(C_out, C_in / g, kH, kW)`` as the full ``(C_out, C_in, kH, kW)``."""
    if groups == 1:
        return w
    c_out, per = w.shape[0], c_in // groups
    full = np.zeros((c_out, c_in, *w.shape[2:]))
    for c in range(c_out):
        g = c // (c_out // groups)
        full[c, g * per:(g + 1) * per] = w[c]
    return full


def _grouped(full: np.ndarray, groups: int) -> np.ndarray:
    """The inverse of :func:`_full` for a block-diagonal kernel."""
    if groups == 1:
        return full
    c_out, c_in = full.shape[:2]
    per = c_in // groups
    return np.stack([full[c, (c // (c_out // groups)) * per:][:per] for c in range(c_out)])


def fused_geometry(first: tuple, second: tuple) -> tuple[int, int, int]:
    """``(kernel, stride, padding)`` on one axis of two windowed operators composed, each
    given as ``(kernel, stride, padding)``: ``k = s1 (k2 - 1) + k1``, ``s = s1 s2``,
    ``p = p1 + s1 p2`` (module docstring)."""
    (k1, s1, p1), (k2, s2, p2) = first, second
    return s1 * (k2 - 1) + k1, s1 * s2, p1 + s1 * p2


def _refuse(a: _Op, b: _Op, why: str, fix: str) -> LoweringError:
    return LoweringError(f"layers {a.names[-1]!r} ({a.kinds[-1]}) and {b.names[0]!r} "
                         f"({b.kinds[0]}) have no neuron between them and {why}; {fix}",
                         piece=b.names[0])


def _padding_exact(a: _Op, b: _Op) -> None:
    """Refuse a composition that the second operator's zero padding makes inexact."""
    mid_h = a.out_shape[1:]
    for axis in range(2):
        k1, s1, p1 = a.weight.shape[2 + axis], a.stride[axis], a.padding[axis]
        k2, s2, p2 = b.weight.shape[2 + axis], b.stride[axis], b.padding[axis]
        if p2 == 0:
            continue
        h0, h1, h2 = a.in_shape[1 + axis], mid_h[axis], b.out_shape[1 + axis]
        fix = (f"put a neuron layer between them, or give {b.names[0]!r} padding 0 and pad "
               f"the input of {a.names[-1]!r} instead")
        if a.bias is not None and np.any(a.bias != 0):
            raise _refuse(a, b, f"the padding {p2} of {b.names[0]!r} reads zeros where "
                          f"{a.names[-1]!r} would give its bias", fix)
        if k1 - s1 > p1:
            raise _refuse(a, b, f"the windows of {a.names[-1]!r} overlap (kernel {k1} > "
                          f"stride {s1}) so a border window the padding {p2} of "
                          f"{b.names[0]!r} stands for would read the input", fix)
        if (h2 - 1) * s2 + k2 - 1 - p2 >= h1 and s1 * h1 < p1 + h0:
            raise _refuse(a, b, f"{a.names[-1]!r} leaves {p1 + h0 - s1 * h1} input rows "
                          f"over at the end of a {h0}-pixel axis, which the padding {p2} of "
                          f"{b.names[0]!r} does not see", fix + " (or crop the input to a "
                          "multiple of the stride)")


def _conv_conv(a: _Op, b: _Op) -> _Op:
    _padding_exact(a, b)
    c0, c1 = a.in_shape[0], a.out_shape[0]
    w1, w2 = _full(a.weight, c0, a.groups), _full(b.weight, c1, b.groups)
    (kh, sh, ph), (kw, sw, pw) = (
        fused_geometry((w1.shape[2 + x], a.stride[x], a.padding[x]),
                       (w2.shape[2 + x], b.stride[x], b.padding[x])) for x in range(2))
    k = np.zeros((w2.shape[0], c0, kh, kw))
    s1h, s1w = a.stride
    for i in range(w2.shape[2]):
        for j in range(w2.shape[3]):
            k[:, :, s1h * i:s1h * i + w1.shape[2], s1w * j:s1w * j + w1.shape[3]] += \
                np.einsum("ab,bcuv->acuv", w2[:, :, i, j], w1)
    bias = b.bias
    if a.bias is not None:
        bias = (0 if bias is None else bias) + np.einsum("abij,b->a", w2, a.bias)
    groups = math.gcd(a.groups, b.groups)
    kernel = _grouped(k, groups)
    pool = float(kernel.reshape(-1)[0]) if a.pool is not None and b.pool is not None and \
        groups == c0 and np.all(kernel == kernel.reshape(-1)[0]) else None
    fused = _Op("conv", kernel, bias, a.in_shape, b.out_shape, (sh, sw), (ph, pw), groups,
                pool=pool)
    got = irn._window_out(c0, *a.in_shape[1:], (kh, kw), (sh, sw), (ph, pw))[1:]
    if got != tuple(b.out_shape[1:]):  # pragma: no cover - the rule above forbids it
        raise _refuse(a, b, f"their composition gives a {got} map, not {b.out_shape[1:]}",
                      "put a neuron layer between them")
    return fused


def _adjoint(rows: np.ndarray, a: _Op) -> np.ndarray:
    """``rows @ M`` for the matrix ``M`` of conv ``a``: ``(N, C1*H1*W1) -> (N, C0*H0*W0)``."""
    c0, h0, w0 = a.in_shape
    c1, h1, w1 = a.out_shape
    full = _full(a.weight, c0, a.groups)
    r = rows.reshape(len(rows), c1, h1, w1)
    (sh, sw), (ph, pw) = a.stride, a.padding
    x = np.zeros((len(rows), c0, h0 + 2 * ph + full.shape[2], w0 + 2 * pw + full.shape[3]))
    for i in range(full.shape[2]):
        for j in range(full.shape[3]):
            x[:, :, i:i + sh * (h1 - 1) + 1:sh, j:j + sw * (w1 - 1) + 1:sw] += \
                np.einsum("nayx,ab->nbyx", r, full[:, :, i, j])
    return x[:, :, ph:ph + h0, pw:pw + w0].reshape(len(rows), -1)


def _conv_dense(a: _Op, b: _Op) -> _Op:
    w = _adjoint(b.weight, a)
    bias = b.bias
    if a.bias is not None:
        per_channel = b.weight.reshape(len(b.weight), a.out_shape[0], -1).sum(2)
        bias = (0 if bias is None else bias) + per_channel @ a.bias
    return _Op("dense", w, bias, (int(np.prod(a.in_shape)),), b.out_shape, w_rec=b.w_rec)


def _dense_dense(a: _Op, b: _Op) -> _Op:
    bias = b.bias
    if a.bias is not None:
        bias = (0 if bias is None else bias) + b.weight @ a.bias
    return _Op("dense", b.weight @ a.weight, bias, a.in_shape, b.out_shape, w_rec=b.w_rec)


#: ``(first kind, second kind)`` -> composition (module docstring).
_COMPOSE = {("conv", "conv"): _conv_conv, ("conv", "dense"): _conv_dense,
            ("dense", "dense"): _dense_dense}


def _compose(a: _Op, b: _Op) -> _Op:
    if a.w_rec is not None:
        raise _refuse(a, b, "the recurrent layer's neurons are missing", "end the recurrent "
                      "layer with its neuron cell")
    compose = _COMPOSE.get((a.kind, b.kind))
    if compose is None:
        raise _refuse(a, b, f"a {a.kinds[-1]} cannot feed a {b.kinds[0]}", "put a neuron "
                      "layer between them")
    out = compose(a, b)
    out.names, out.kinds = a.names + b.names, a.kinds + b.kinds
    return out


def _node(op: _Op):
    f32 = lambda x: None if x is None else x.astype(np.float32)  # noqa: E731
    if op.kind == "dense":
        if op.w_rec is not None:
            return irn.RecurrentDense(f32(op.weight), f32(op.w_rec), f32(op.bias))
        return irn.Dense(f32(op.weight), f32(op.bias))
    if op.pool is not None:
        return irn.SumPool2d(op.weight.shape[2:], op.stride, op.padding, op.pool)
    return irn.Conv2d(f32(op.weight), op.stride, op.padding, op.groups, f32(op.bias))


def _size(op: _Op) -> int:
    return int(op.weight.size + (0 if op.w_rec is None else op.w_rec.size))


def fuse(nodes, names, input_shape, kinds=None) -> tuple[list, list, list]:
    """Compose every run of synapse nodes without a neuron between them (module docstring).

    Args:
        nodes: IR nodes in data-flow order (synapses, an optional ``Flatten`` before a dense
            stage, neurons), as a frontend collected them.
        names: one name per synapse node (used in the messages).
        input_shape: the network's per-sample input shape.
        kinds: one label per synapse node for the messages (the source's module or node
            type, e.g. ``"AvgPool2d"``); default the IR node's class name.

    Returns:
        ``(nodes, names, notes)``: the nodes with each run replaced by one synapse node
        (named ``"a+b"``), one name per remaining synapse, and one note per fusion saying
        what the chip holds. A chain without runs comes back unchanged (the same objects).

    Raises:
        rewire.errors.LoweringError: a run that has no exact composition, or a synapse with
            no neuron after it, naming the pair of layers (``piece``: the second) and the
            fix.
    """
    out, out_names, notes = [], [], []
    shape, k, run, flat_in_run = tuple(input_shape), 0, [], None
    for node in nodes:
        if isinstance(node, irn.Flatten):
            if not run:
                out.append(node)
                shape = node.out_shape(shape)
            elif run[-1][0].kind == "conv":
                flat_in_run = run[-1][0]
            continue  # a Flatten after a dense stage changes nothing
        if isinstance(node, irn.SYNAPSES):
            in_shape = run[-1][0].out_shape if run else shape
            if isinstance(node, (irn.Dense, irn.RecurrentDense)):
                in_shape = (int(np.prod(in_shape)),)
            try:
                op = _op(node, in_shape, names[k], kinds[k] if kinds else None)
            except ValueError as exc:
                raise LoweringError(f"layer {names[k]!r} ({_KIND[type(node)]}): {exc}",
                                    piece=names[k]) from None
            run.append((op, node))
            k, flat_in_run = k + 1, None
            continue
        if flat_in_run is not None:
            raise LoweringError(f"the Flatten after layer {flat_in_run.names[-1]!r} "
                                f"({flat_in_run.kinds[-1]}) is followed by a neuron, not a "
                                f"Linear; put the Flatten right before a Linear",
                                piece=flat_in_run.names[-1])
        if not run:
            out.append(node)
            continue
        out_names.append(_emit(run, out, notes))
        shape, run = run[-1][0].out_shape, []
        out.append(node)
    if run:
        last = run[-1][0]
        raise LoweringError(f"layer {last.names[0]!r} ({last.kinds[0]}) is the last node, with "
                            f"no neuron after it; end the network with a neuron layer (a "
                            f"spiking cell, or a leaky integrator as the readout)",
                            piece=last.names[0])
    return out, out_names, notes


def _emit(run: list, out: list, notes: list) -> str:
    """Append the run's one node to ``out`` (with a note when it was fused); its name."""
    if len(run) == 1:
        out.append(run[0][1])
        return run[0][0].names[0]
    fused = run[0][0]
    for op, _ in run[1:]:
        fused = _compose(fused, op)
    if fused.kind == "dense" and len(fused.in_shape) == 1 and run[0][0].kind == "conv":
        out.append(irn.Flatten())
    out.append(_node(fused))
    parts = " -> ".join(f"{n!r} ({t})" for n, t in zip(fused.names, fused.kinds))
    notes.append(f"layers {parts} have no neuron between them: fused exactly into one "
                 f"{_KIND[type(out[-1])]} (float64, then float32); the chip holds the product, "
                 f"{_size(fused):,} synapses where the layers held "
                 f"{' + '.join(f'{_size(op):,}' for op, _ in run)}")
    return "+".join(fused.names)
