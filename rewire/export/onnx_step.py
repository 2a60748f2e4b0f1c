r"""ONNX export of the float model (the IR's neurons, :mod:`rewire.ir.dynamics`), one step
with explicit state.

No SNN library ships an ONNX exporter (Norse issue #200); what runs everywhere is a graph for
one Euler step of the float model that the caller loops over::

    inputs : x (batch, n_in)  and, per layer k = 0..L-1,  v<k>, i<k> (batch, n_k)
             (and r<k>, the layer's spikes of the step before, for a recurrent layer)
    outputs: z (batch, n_out) and, per layer,  v<k>_out, i<k>_out (r<k>_out),  and z<k>

Each layer follows its own IR neuron (:func:`float_body`); for a ``CubaLIF`` layer, in
Norse's order of operations (so onnxruntime reproduces Norse to float rounding; Xylo's
``BitshiftLIF``: :func:`_bitshift_step`):

.. math::
    j = i + (W s + b),\quad \tilde v = v + c_m((v_\mathrm{leak} - v) + j),\quad
    i' = j + (-c_s) j,\quad z = H(\tilde v - v_\mathrm{th}),\quad
    v' = (1 - z)\tilde v + z v_\mathrm{reset}

with :math:`c_m = \Delta t\,\tau_\mathrm{mem}^{-1}`, :math:`c_s = \Delta t\,\tau_\mathrm{syn}^{-1}`.
For ``current`` encoding ``x`` is the input in [0, 1] and the graph multiplies it by the
input gain; for ``rate`` encoding ``x`` is the input spike vector. States start at 0.
For a conv layer (a ``SpikingConvNet``'s Conv2d or sum pooling) :math:`W s` is ONNX ``Conv``
of the flat input reshaped to its ``(C, H, W)`` map; inputs and states stay flat
``(batch, C*H*W)`` (``x.flatten()`` order).
The same step body, wrapped in an ONNX ``Scan``, is the unrolled model
(:mod:`rewire.export.onnx_unrolled`). Opset 17; the file passes ``onnx.checker`` with full
shape inference (:mod:`rewire.export.onnx_graph`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import CompiledConv, CompiledDense, lookup
from rewire.ir.neurons import IF, LI, LIF, BitshiftLIF, CubaLI, CubaLIF
from rewire.export.onnx_graph import (GraphBuilder, StepBody, body_from_meta, conv2d, map_shape,
                                      run_steps, save, session, spike_fields, step_model)
from rewire.export.onnx_spikes import spike_step
from rewire.export import onnx_graph

USAGE = ("loop over T steps: feed x and the previous step's *_out states (zeros at t=0); "
         "z is the output spike vector")


def _dense_input(b: GraphBuilder, s: str, layer, k: int, p: str) -> str:
    """``W s`` (``MatMul``), ``+ b`` (``Add``) with a bias, as torch's ``F.linear``."""
    cur = b.op("MatMul", [s, b.const(f"W{k}_T", layer.weight.T)], p + "cur")
    if layer.bias is None:
        return cur
    return b.op("Add", [cur, b.const(f"b{k}", layer.bias)], p + "cur_b")


def _conv_input(b: GraphBuilder, s: str, layer, k: int, p: str) -> str:
    return conv2d(b, s, layer, f"W{k}", layer.weight, p, bias=layer.bias)


#: compiled layer type -> its float synaptic input.
_INPUT = {CompiledDense: _dense_input, CompiledConv: _conv_input}

# Each neuron kind's float step (rewire.ir.dynamics, same order of operations): returns the
# new voltage before the threshold and sets ``new["i<k>"]``. Norse computes dt * tau_inv as a
# float32 tensor product; so do these.
F32 = np.float32


def _cuba_step(b: GraphBuilder, nrn, k: int, p: str, terms: list, v: str, i: str,
               new: dict) -> str:
    c_mem = b.const(f"c_mem{k}", F32(nrn.tau_mem_inv) * F32(nrn.dt))
    neg_c_syn = b.const(f"neg_c_syn{k}", -(F32(nrn.tau_syn_inv) * F32(nrn.dt)))
    j = i
    for n, t in enumerate(terms):
        j = b.op("Add", [j, t], p + f"j{n}")
    leak = b.op("Sub", [b.const(f"v_leak{k}", nrn.v_leak), v], p + "leak")
    dv = b.op("Mul", [c_mem, b.op("Add", [leak, j], p + "drive")], p + "dv")
    v_dec = b.op("Add", [v, dv], p + "v_dec")
    new[f"i{k}"] = b.op("Add", [j, b.op("Mul", [neg_c_syn, j], p + "di")], p + "i_new")
    return v_dec


def _input_sum(b: GraphBuilder, p: str, terms: list, i: str, new: dict, k: int) -> str:
    a = terms[0]
    for n, t in enumerate(terms[1:]):
        a = b.op("Add", [a, t], p + f"a{n}")
    new[f"i{k}"] = b.op("Identity", [i], p + "i_new")
    return a


def _if_step(b: GraphBuilder, nrn, k: int, p: str, terms: list, v: str, i: str,
             new: dict) -> str:
    a = _input_sum(b, p, terms, i, new, k)
    return b.op("Add", [v, a], p + "v_dec")


def _lif_step(b: GraphBuilder, nrn, k: int, p: str, terms: list, v: str, i: str,
              new: dict) -> str:
    a = _input_sum(b, p, terms, i, new, k)
    c_mem = b.const(f"c_mem{k}", F32(nrn.tau_mem_inv) * F32(nrn.dt))
    v_leak = b.const(f"v_leak{k}", nrn.v_leak)
    drive = b.op("Sub", [b.op("Add", [a, v_leak], p + "a_leak"), v], p + "drive")
    return b.op("Add", [v, b.op("Mul", [c_mem, drive], p + "dv")], p + "v_dec")


def _li_step(b: GraphBuilder, nrn, k: int, p: str, terms: list, v: str, i: str,
             new: dict) -> str:
    a = _input_sum(b, p, terms, i, new, k)
    c_mem = b.const(f"c_mem{k}", F32(nrn.tau_mem_inv) * F32(nrn.dt))
    v_leak = b.const(f"v_leak{k}", nrn.v_leak)
    drive = b.op("Add", [b.op("Sub", [v_leak, v], p + "leak"), a], p + "drive")
    return b.op("Add", [v, b.op("Mul", [c_mem, drive], p + "dv")], p + "v_dec")


def _bitshift_step(b: GraphBuilder, nrn, k: int, p: str, terms: list, v: str, i: str,
                   new: dict) -> str:
    """Xylo's ``BitshiftLIF`` (:func:`rewire.ir.dynamics.bitshift_subthreshold`, same
    order): ``j = i + a``; ``i' = j - j 2**-dash_syn``; ``v' = (v - v 2**-dash_mem) + i'``
    (the products by powers of two are exact in float32)."""
    j = i
    for n, t in enumerate(terms):
        j = b.op("Add", [j, t], p + f"j{n}")
    c_syn = b.const(f"c_syn{k}", F32(2.0 ** -nrn.dash_syn))
    c_mem = b.const(f"c_mem{k}", F32(2.0 ** -nrn.dash_mem))
    i_new = b.op("Sub", [j, b.op("Mul", [j, c_syn], p + "di")], p + "i_new")
    new[f"i{k}"] = i_new
    v_left = b.op("Sub", [v, b.op("Mul", [v, c_mem], p + "dv")], p + "v_left")
    return b.op("Add", [v_left, i_new], p + "v_dec")


#: IR neuron type -> its float ONNX step.
_NEURON_STEP = {CubaLIF: _cuba_step, CubaLI: _cuba_step, LIF: _lif_step, LI: _li_step,
                IF: _if_step, BitshiftLIF: _bitshift_step}


def _keeps_spikes(layer) -> bool:
    """A state ``r<k>`` with the layer's spikes of the step before: recurrent layers and
    layers that reset one step late (``reset_delay``)."""
    return layer.recurrent or (layer.spiking and layer.neuron.reset_delay)


def float_body(net: CompiledNetwork) -> StepBody:
    """The float step of ``net`` (module docstring) as a :class:`StepBody`.

    States per layer ``k``: ``v<k>`` (membrane voltage) and ``i<k>`` (synaptic current; zero
    and unchanged for neurons without one), float32 ``(batch, n_k)``, plus ``r<k>`` (the
    layer's spikes of the step before) for a recurrent layer. Each layer follows its own IR
    neuron node (:mod:`rewire.ir.dynamics`, same order of operations); a leaky-integrator
    readout's output ``z<k>`` is its voltage.

    A conv layer's synaptic input is ONNX ``Conv`` on the reshaped flat input
    (:func:`rewire.export.onnx_graph.conv2d`); its states stay flat ``(batch, C*H*W)``, in
    ``x.flatten()`` order of Norse's ``(batch, C, H, W)`` state.
    """

    def emit(b: GraphBuilder, x: str, states: dict) -> tuple[str, dict, list]:
        one, zero = b.const("one", 1.0), b.const("zero", 0.0)
        s = x
        if net.encoding == "current":
            s = b.op("Mul", [x, b.const("input_gain", net.input_gain)], "x_current")
        new, spikes, seen = {}, [], [s]
        for k, layer in enumerate(net.layers):
            nrn = layer.neuron
            v, i, p = states[f"v{k}"], states[f"i{k}"], f"l{k}_"
            terms = [lookup(_INPUT, layer, "ONNX step")(b, s, layer, k, p)]
            for n, skip in enumerate(layer.skips):  # residual terms join the input first
                w = b.const(f"Wskip{k}_{n}_T", skip.weight.T)
                terms[0] = b.op("Add", [terms[0], b.op("MatMul", [seen[skip.source], w],
                                                       p + f"skip{n}")], p + f"a_skip{n}")
            if layer.recurrent:
                terms.append(b.op("MatMul", [states[f"r{k}"],
                                             b.const(f"Wrec{k}_T", layer.weight_rec.T)],
                                  p + "rec"))
            v_dec = _NEURON_STEP[type(nrn)](b, nrn, k, p, terms, v, i, new)
            if not nrn.spiking:
                new[f"v{k}"] = b.op("Identity", [v_dec], p + "v_new")
                z = b.op("Identity", [v_dec], f"z{k}")
                spikes.append(z)
                s = z
                seen.append(s)
                continue
            if spike_fields(layer):
                z, new[f"v{k}"] = spike_step(b, nrn, k, p, v_dec, states.get(f"r{k}"))
            else:
                margin = b.op("Sub", [v_dec, b.const(f"v_th{k}", nrn.v_th)], p + "margin")
                fire = b.op("Greater", [margin, zero], p + "fire")
                z = b.op("Cast", [fire], f"z{k}", to=TensorProto.FLOAT)
                keep = b.op("Mul", [b.op("Sub", [one, z], p + "keep"), v_dec], p + "v_kept")
                rst = b.op("Mul", [z, b.const(f"v_reset{k}", nrn.v_reset)], p + "v_rst")
                new[f"v{k}"] = b.op("Add", [keep, rst], p + "v_new")
            if _keeps_spikes(layer):
                new[f"r{k}"] = b.op("Identity", [z], p + "r_new")
            spikes.append(z)
            s = z
            seen.append(s)
        return s, new, spikes

    sizes = [l.shape[0] for l in net.layers]
    states = []
    for k, (n, layer) in enumerate(zip(sizes, net.layers)):
        states += [(f"v{k}", n), (f"i{k}", n)] + ([(f"r{k}", n)] if _keeps_spikes(layer)
                                                  else [])
    return StepBody(
        name="rewire_snn_step", elem=TensorProto.FLOAT, x_elem=TensorProto.FLOAT,
        n_in=net.sizes[0], states=tuple(states),
        spikes=tuple((f"z{k}", n) for k, n in enumerate(sizes)), emit=emit,
        layout={f"layer{k}": {"states": {f"v{k}": n, f"i{k}": n,
                                         **({f"r{k}": n} if _keeps_spikes(layer) else {})},
                              "v": f"v{k}", "i": f"i{k}", "neuron": layer.neuron.kind,
                              "size": n, "dtype": "float32", **map_shape(layer),
                              **spike_fields(layer)}
                for k, (n, layer) in enumerate(zip(sizes, net.layers))})


def build(net: CompiledNetwork) -> onnx.ModelProto:
    """Build the per-step ONNX model of ``net``'s float parameters (see module docstring).

    Returns:
        A checked ``onnx.ModelProto`` with metadata (rewire version, profile, dt, T,
        encoding, input gain, state layout; :func:`rewire.export.onnx_graph.metadata`).

    Example:
        >>> import rewire
        >>> from rewire.training.model import SpikingMLP
        >>> net = rewire.compile(SpikingMLP((4, 3, 2)), "loihi2", 16)
        >>> [i.name for i in build(net).graph.input]
        ['x', 'v0', 'i0', 'v1', 'i1']
    """
    return step_model(net, float_body(net), "step", USAGE)


def check_size(net: CompiledNetwork) -> None:
    """Refuse float32 weights over ONNX's 2 GiB before anything is written
    (:func:`rewire.export.onnx_graph.check_size`).

    Raises:
        rewire.errors.ExportError: naming ``onnx_step`` and the size.
    """
    onnx_graph.check_size(net, "onnx_step")


def write(net: CompiledNetwork, path: str | Path) -> Path:
    """Build and write the per-step ONNX model atomically; return the path."""
    return save(build(net), path)


def encode_sequence(x: np.ndarray, steps: int) -> np.ndarray:
    """``(B, n_in)`` constant input -> ``(T, B, n_in)``; a ``(T, B, n_in)`` array passes."""
    x = np.asarray(x, dtype=np.float32)
    return x if x.ndim == 3 else np.broadcast_to(x, (steps,) + x.shape)


def run(path, x: np.ndarray, steps: int | None = None, sess=None) -> np.ndarray:
    """Loop the per-step model in onnxruntime over ``steps`` and return output spikes.

    Args:
        path: file written by :func:`write` (or an ``onnx.ModelProto``).
        x: float32, in the model's input layout or flat (:mod:`rewire.ir.input_layout`; the
            layout from the file's ``input_shape`` metadata): ``(B, *input_shape)`` /
            ``(B, n_in)`` constant input (current encoding), or ``(T, B, *input_shape)`` /
            ``(T, B, n_in)`` per step (spikes for rate encoding).
        steps: time steps for constant input (default: the file's ``steps``).
        sess: an open onnxruntime session of ``path`` to reuse (optional).

    Returns:
        Output spikes ``(T, B, n_out)`` float32.

    Raises:
        ValueError: ``steps`` given but not an integer >= 1, ``x`` not finite, or ``x`` in
            neither layout.
    """
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer))
                              or steps < 1):
        raise ValueError(f"steps must be an integer >= 1 (or None for the file's T), got "
                         f"{steps!r}")
    x = np.asarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError("x must be a finite array, got NaN or infinite values")
    sess = sess or session(path)
    meta, states = body_from_meta(sess)
    try:
        x, _ = onnx_graph.flat_input(sess, x)
    except ValueError as exc:
        raise ValueError(f"x must be a finite (B, *S) or (T, B, *S) array: {exc}") from None
    seq = encode_sequence(x, int(meta["steps"]) if steps is None else int(steps))
    return run_steps(sess, seq, states, np.float32)
