"""NIR frontend, part 2b: NIR synapses (and, through :mod:`rewire.frontends._nir_neurons`,
neurons) to IR nodes along the chain (see
:mod:`rewire.frontends.nir` for the equations and conventions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nir
import numpy as np
from nir.ir.graph import Identity as _Identity

from rewire.frontends._nir_graph import (_DENSE, _NEURONS, _arr, _bias, _kind, _Recurrent,
                                        _refuse, _scaled)
from rewire.frontends._nir_neurons import _lower_neuron
from rewire.ir import nodes as irn
from rewire.ir.fuse import fuse

# --------------------------------------------------------------------------- synapses


def _pair(name: str, node, fld: str) -> tuple[int, int]:
    value = getattr(node, fld)
    a = np.atleast_1d(_arr(value)).ravel()
    if a.size not in (1, 2) or np.any(a != np.round(a)):
        raise _refuse(name, node, f"{fld} = {value!r} is not one or two integers",
                      "write it as (y, x) integers")
    a = a.astype(int)
    return (int(a[0]), int(a[-1]))


@dataclass
class _Pending:
    """The synapse being assembled before its neuron arrives."""

    flatten: str | None = None
    pre: list = field(default_factory=list)    # (name, scale array) before the synapse
    post: list = field(default_factory=list)   # (name, scale array) after it
    syn_name: str | None = None
    syn: object = None                         # nir node
    op: str = ""                               # dense | conv | sumpool
    in_shape: tuple = ()
    weight: np.ndarray | None = None           # float64, dense/conv
    bias: np.ndarray | None = None             # float64 (out,), None for none or all zero
    pool: dict = field(default_factory=dict)   # kernel, stride, padding, weight


def _scale_values(name: str, node, size: int, what: str) -> np.ndarray:
    s = _arr(node.scale).ravel()
    if s.size not in (1, size):
        raise ValueError(f"NIR node {name!r} (Scale).scale has {s.size} entries; {what} has "
                         f"{size}")
    return s


def _conv_padding(name: str, node, kernel: tuple[int, int]) -> tuple[int, int]:
    pad = node.padding
    if isinstance(pad, str):
        if pad == "valid":
            return (0, 0)
        stride = _pair(name, node, "stride")
        if pad == "same" and stride == (1, 1) and all(k % 2 for k in kernel):
            return (kernel[0] // 2, kernel[1] // 2)
        raise _refuse(name, node, f"padding {pad!r} with kernel {kernel} and stride {stride}",
                      "give the padding as integers (symmetric zero padding)")
    return _pair(name, node, "padding")


class _Lowering:
    """One walk along the chain, building the IR nodes."""

    def __init__(self, nodes, order, dt, encoding, gain, mode, tau_scale):
        self.nodes, self.order, self.dt = nodes, order, dt
        self.encoding, self.gain = encoding, gain
        self.mode, self.tau_scale = mode, tau_scale
        self.ir, self.names, self.notes = [], [], []
        self.pending = _Pending()
        self.stages: list[_Pending] = []   # synapses before ``pending`` without a neuron
        self.shape: tuple | None = None
        self.input_shape: tuple | None = None
        self.weights_seen = 0

    # -- the walk
    def run(self):
        handlers = {nir.Input: self.input, nir.Output: self.output, _Identity: self.identity,
                    nir.Flatten: self.flatten, nir.Scale: self.scale, nir.Linear: self.dense,
                    nir.Affine: self.dense, nir.Conv2d: self.conv, nir.SumPool2d: self.pool,
                    nir.AvgPool2d: self.pool}
        for name in self.order:
            node = self.nodes[name]
            if isinstance(node, _Recurrent):
                self.neuron(name, node.neuron, node)
                continue
            if isinstance(node, _NEURONS):
                self.neuron(name, node, None)
                continue
            handler = handlers.get(type(node))
            if handler is None:
                raise _refuse(name, node, "not lowered to rewire's IR")
            if self.shape is None and not isinstance(node, nir.Input):  # pragma: no cover
                raise _refuse(name, node, "comes before the Input")
            handler(name, node)

    def input(self, name, node):
        shape = None
        types = getattr(node, "input_type", None) or {}
        if types:
            value = next(iter(types.values()))
            if value is not None and np.size(value):
                shape = tuple(int(s) for s in np.asarray(value).ravel())
        if shape is None:
            shape = self._guess_input(name)
        if len(shape) in (2, 4) and shape[0] == 1:
            self.notes.append(f"NIR node {name!r} (Input): type {list(shape)} includes the "
                              f"batch dimension of the sample data nirtorch traced; read as "
                              f"{list(shape[1:])}")
            shape = shape[1:]
        if len(shape) not in (1, 3) or min(shape) < 1:
            raise _refuse(name, node, f"input shape {list(shape)}", "the IR takes (n,) or "
                          "(C, H, W) inputs")
        self.shape = self.input_shape = shape

    def _guess_input(self, name):
        for k in self.order[1:]:
            node = self.nodes[k]
            if isinstance(node, _DENSE):
                return (int(_arr(node.weight).shape[1]),)
            if isinstance(node, nir.Conv2d) and node.input_shape is not None:
                hw = np.atleast_1d(np.asarray(node.input_shape)).ravel()
                return (int(_arr(node.weight).shape[1] * int(node.groups)), int(hw[0]),
                        int(hw[-1]))
            if not isinstance(node, (_Identity, nir.Scale, nir.Flatten)):
                break
        raise _refuse(name, self.nodes[name], "no input type, and none can be read from the "
                      "node after it", "set the Input's input_type")

    def identity(self, name, node):
        self.notes.append(f"NIR node {name!r} (Identity): dropped (no effect)")

    def flatten(self, name, node):
        p = self.pending
        if p.syn is not None and len(self.shape) == 3:  # conv -> Flatten -> Linear: fused
            self.stages.append(p)
            p = self.pending = _Pending()
        if len(self.shape) == 1:
            self.notes.append(f"NIR node {name!r} (Flatten): dropped, its input "
                              f"{list(self.shape)} is already flat")
            return
        total = int(np.prod(self.shape))
        out = getattr(node, "output_type", None) or {}
        out_shape = next(iter(out.values()), None) if out else None
        full = out_shape is not None and np.size(out_shape) == 1 and int(
            np.asarray(out_shape).ravel()[0]) == total
        if not full and not (int(node.start_dim) == 0
                             and int(node.end_dim) in (-1, len(self.shape) - 1)):
            raise _refuse(name, node, f"start_dim {node.start_dim}, end_dim {node.end_dim} on "
                          f"a {list(self.shape)} map is not a full flatten", "flatten the whole "
                          "(C, H, W) map (start_dim 0, end_dim -1 without the batch)")
        if p.flatten is not None:
            raise _refuse(name, node, f"a second Flatten after {p.flatten!r}",
                          "flatten once")
        p.flatten, p.in_shape = name, self.shape
        self.shape = (total,)

    def scale(self, name, node):
        p = self.pending
        if p.syn is None:
            p.pre.append((name, node))
        else:
            p.post.append((name, node))

    def _start(self, name, node, op):
        p = self.pending
        if p.syn is not None:  # a synapse right after a synapse: fused (rewire.ir.fuse)
            self.stages.append(p)
            p = self.pending = _Pending()
        if p.flatten is not None and op != "dense":
            raise _refuse(p.flatten, self.nodes[p.flatten], f"followed by {_kind(node)} "
                          f"{name!r}", "a Flatten must come right before a Linear/Affine")
        if p.flatten is None:
            p.in_shape = self.shape
        p.syn_name, p.syn, p.op = name, node, op

    def dense(self, name, node):
        w = _arr(node.weight)
        bias = None
        if isinstance(node, nir.Affine):
            bias = _bias(node, w.shape[0])
            if bias is None:
                self.notes.append(f"NIR node {name!r} (Affine): zero bias, lowered as Dense")
        if len(self.shape) != 1:
            raise _refuse(name, node, f"takes a {list(self.shape)} map without a Flatten "
                          f"before it", "put a Flatten before the Linear")
        if w.shape[1] != self.shape[0]:
            raise ValueError(f"NIR node {name!r} ({_kind(node)}).weight of shape {w.shape} "
                             f"takes {w.shape[1]} inputs, but the node before gives "
                             f"{self.shape[0]}")
        self._start(name, node, "dense")
        self.pending.weight, self.pending.bias = w, bias
        self.shape = (int(w.shape[0]),)

    def conv(self, name, node):
        w = _arr(node.weight)
        kernel = (int(w.shape[2]), int(w.shape[3]))
        if _pair(name, node, "dilation") != (1, 1):
            raise _refuse(name, node, f"dilation {node.dilation}", "use dilation 1")
        if len(self.shape) != 3:
            raise ValueError(f"NIR node {name!r} (Conv2d) takes a (C, H, W) map, the node "
                             f"before gives {list(self.shape)}")
        self._start(name, node, "conv")
        try:
            conv = irn.Conv2d(w, stride=_pair(name, node, "stride"),
                              padding=_conv_padding(name, node, kernel), groups=int(node.groups))
            self.shape = conv.out_shape(self.shape)
        except ValueError as exc:
            raise ValueError(f"NIR node {name!r} (Conv2d): {exc}") from None
        self.pending.weight, self.pending.bias = w, _bias(node, w.shape[0])
        self.pending.pool = {"stride": conv.stride, "padding": conv.padding,
                             "groups": conv.groups}

    def pool(self, name, node):
        if len(self.shape) != 3:
            raise ValueError(f"NIR node {name!r} ({_kind(node)}) takes a (C, H, W) map, the "
                             f"node before gives {list(self.shape)}")
        kernel = _pair(name, node, "kernel_size")
        stride = _pair(name, node, "stride") if node.stride is not None else kernel
        padding = _pair(name, node, "padding") if node.padding is not None else (0, 0)
        weight = 1.0
        if isinstance(node, nir.AvgPool2d):
            if padding != (0, 0):
                raise _refuse(name, node, f"padding {padding} (the average at the border is "
                              f"ambiguous)", "use AvgPool2d without padding, or SumPool2d")
            weight = 1.0 / (kernel[0] * kernel[1])
            self.notes.append(f"NIR node {name!r} (AvgPool2d): lowered as SumPool2d with "
                              f"weight 1/{kernel[0] * kernel[1]}")
        self._start(name, node, "sumpool")
        try:
            pool = irn.SumPool2d(kernel, stride, padding, weight)
            self.shape = pool.out_shape(self.shape)
        except ValueError as exc:
            raise ValueError(f"NIR node {name!r} ({_kind(node)}): {exc}") from None
        self.pending.pool = {"kernel": kernel, "stride": stride, "padding": padding,
                             "weight": weight}

    def neuron(self, name, node, rec: _Recurrent | None):
        p = self.pending
        if p.syn is None and p.flatten is not None:
            raise _refuse(p.flatten, self.nodes[p.flatten], f"followed by {_kind(node)} "
                          f"{name!r}", "a Flatten must come right before a Linear/Affine")
        if p.syn is None:
            raise _refuse(name, node, "no synapse node (Linear, Affine, Conv2d, SumPool2d, "
                          "AvgPool2d) before it", "put a Linear before the neuron (the IR "
                          "pairs every neuron layer with its synapses)")
        n = int(np.prod(self.shape))
        neuron, factor = _lower_neuron(name, node, n, self.dt, self.mode, self.tau_scale)
        if rec is not None:
            if p.op != "dense":
                raise _refuse(rec.rec_name, rec.rec, f"recurrence on a {p.op} layer",
                              "recurrent layers must be dense")
            if not neuron.spiking:
                raise _refuse(name, node, "a recurrent loop around a non-spiking neuron",
                              "recurrence needs spiking neurons")
        self._emit(neuron, factor, rec)

    def _fold_scales(self, p: _Pending):
        """``(w, factor, bias)``: the stage's Scale nodes folded into dense weights (rows
        after, columns before) and its bias (after); for conv/pool only scalar scales,
        returned as a factor (the bias takes those after it)."""
        w, factor, bias = p.weight, 1.0, p.bias
        for where, items in (("pre", p.pre), ("post", p.post)):
            for sname, snode in items:
                if p.op == "dense":
                    size = w.shape[1] if where == "pre" else w.shape[0]
                    s = _scale_values(sname, snode, size, f"{p.syn_name!r}'s "
                                      f"{'input' if where == 'pre' else 'output'}")
                    w = w * (s[None, :] if where == "pre" else s[:, None])
                    if where == "post" and bias is not None:
                        bias = bias * s
                else:
                    s = _arr(snode.scale).ravel()
                    if np.unique(s).size != 1:
                        raise _refuse(sname, snode, f"a per-entry scale next to {p.op} "
                                      f"{p.syn_name!r}", "fold it into the weights before "
                                      "export (only a Linear takes per-entry scales)")
                    factor *= float(s[0])
                    if where == "post" and bias is not None:
                        bias = bias * float(s[0])
                self.notes.append(f"NIR node {sname!r} (Scale): folded into the weights of "
                                  f"{p.syn_name!r}")
        return w, factor, bias

    def _synapse(self, p: _Pending, factor: float, gain: float, rec):
        """The IR synapse node of one stage, its weights times ``factor / gain`` (its bias
        and recurrent weights times ``factor``; a recurrent Affine's bias folded in:
        ``b + b_rec``)."""
        w, scale, bias = self._fold_scales(p)
        total = factor * scale / gain
        bias_total = factor
        if p.op == "sumpool":
            pool = p.pool
            weight = pool["weight"] * total
            if not weight > 0:
                raise _refuse(p.syn_name, p.syn, f"a pool weight of {weight:g} after folding "
                              f"scales and w_in", "pool weights must be > 0")
            return irn.SumPool2d(pool["kernel"], pool["stride"], pool["padding"],
                                 float(f"{weight:.15g}"))
        if total != 1.0:
            w = w * total
        self.weights_seen += w.size
        b = None if bias is None else bias * bias_total
        if p.op == "conv":
            return irn.Conv2d(w.astype(np.float32), stride=p.pool["stride"],
                              padding=p.pool["padding"], groups=p.pool["groups"], bias=b)
        if rec is None:
            return irn.Dense(w.astype(np.float32), b)
        b_rec = _bias(rec.rec, w.shape[0]) if isinstance(rec.rec, nir.Affine) else None
        if isinstance(rec.rec, nir.Affine):
            self.notes.append(f"NIR node {rec.rec_name!r} (Affine): "
                              + ("zero bias, lowered as the recurrent weights" if b_rec is None
                                 else "its bias b_rec added to the layer's bias "
                                 "(a = W x + b + b_rec + W_rec z)"))
        if b_rec is not None:
            b = (0.0 if b is None else b) + b_rec * bias_total
        w_rec = _arr(rec.rec.weight) * bias_total
        n = w.shape[0]
        if w_rec.shape != (n, n):
            raise ValueError(f"NIR node {rec.rec_name!r} ({_kind(rec.rec)}).weight of "
                             f"shape {w_rec.shape}: a recurrent weight of {n} neurons "
                             f"must be ({n}, {n})")
        self.weights_seen += w_rec.size
        return irn.RecurrentDense(w.astype(np.float32), w_rec.astype(np.float32), b)

    def _emit(self, neuron, factor: float, rec: _Recurrent | None):
        """Append the pending layer: one synapse node (a chain of stages fused exactly,
        :func:`rewire.ir.fuse.fuse`), then ``neuron``. ``factor`` (the neuron's
        ``w_in dt / tau_syn``) scales weights and biases; the input gain only the weights
        of the first layer."""
        stages, p = self.stages + [self.pending], self.pending
        first = not self.names
        gain = self.gain if (first and self.encoding == "current") else 1.0
        if factor != 1.0:
            self.notes.append(f"NIR node {p.syn_name!r}: the next neuron's input weight "
                              f"w_in*dt/tau_syn = {factor:.6g} folded into its weights")
        if len(stages) == 1:
            if p.flatten is not None:
                self.ir.append(irn.Flatten())
            self.ir += [self._synapse(p, factor, gain, rec), neuron]
            self.names.append(p.syn_name)
        else:
            chain, names = [], []
            for k, st in enumerate(stages):
                if st.flatten is not None:
                    chain.append(irn.Flatten())
                chain.append(self._synapse(st, 1.0, gain if k == 0 else 1.0,
                                           rec if st is p else None))
                names.append(st.syn_name)
            fused, fused_names, notes = fuse(chain + [neuron], names, stages[0].in_shape,
                                             [_kind(st.syn) for st in stages])
            if factor != 1.0:
                fused[-2] = _scaled(fused[-2], factor)
            self.ir += fused
            self.names += fused_names
            self.notes += notes
        self.pending, self.stages = _Pending(), []

    def output(self, name, node):
        p = self.pending
        if p.syn is not None:
            raise _refuse(p.syn_name, p.syn, "not followed by a neuron node before the "
                          "Output", "end every layer with a neuron node")
        if p.pre:
            sname, snode = p.pre[0]
            raise _refuse(sname, snode, "a Scale after the last neuron (it scales the output, "
                          "which the chip's spikes cannot carry)", "remove it or fold it into "
                          "the next synapse")
        if p.flatten is not None:
            raise _refuse(p.flatten, self.nodes[p.flatten], "a Flatten right before the Output",
                          "remove it")
        types = getattr(node, "output_type", None) or {}
        value = next(iter(types.values()), None) if types else None
        if value is not None and np.size(value):
            shape = tuple(int(v) for v in np.asarray(value).ravel())
            lead = shape[:len(shape) - len(self.shape)]
            if shape[len(lead):] != tuple(self.shape) or any(d != 1 for d in lead):
                raise ValueError(f"NIR node {name!r} (Output): output_type {list(shape)} does "
                                 f"not match the {list(self.shape)} the last layer gives "
                                 f"(leading batch/time dimensions of 1 are ignored)")


