r"""Biases as always-on inputs, so that a netx file carries them exactly (Lava's delays included).

A layer's bias adds ``b_int`` to its synaptic input ``a`` every step
(:mod:`rewire.compiler.simulate`). netx has a per-neuron ``bias`` too (lava-dl 0.6
``netx/hdf5.py``; Lava adds ``bias_mant << 6`` to ``v`` every step, lava-nc 0.10
``lava/proc/lif/models.py``), but Lava runs every layer from its first step while layer ``k``'s
input arrives ``k + 1`` steps late (one step per ``Dense`` process), so a netx ``bias``
integrates alone for ``k + 1`` steps before the layer's first input: not the network that was
trained. And it enters ``v``, not the synaptic current of a ``CubaLIF`` neuron.

This pass writes the biases as synapses instead, which Lava delays like every spike:

* layer 0's bias is the weight of an **always-on input line**: one more input that carries
  payload 1 at every step (the runner feeds it, :func:`with_lines`);
* layer ``k >= 1``'s bias is the weight from a **relay neuron** appended to layer ``k - 1``,
  driven by the always-on lines through the same chain (relays of layer ``k - 2``, ...), so
  it fires at every step from the layer's first input step on, and its spikes arrive with the
  same delays as the real ones. A relay of layer ``j`` gets ``a = w_max * m`` from the
  ``m = ceil((vThMant_j + 1) / w_max)`` relays (or lines) before it, each through a weight
  ``w_max`` (254 on Loihi 2): then ``v = u >= a << 6 > vThMant << 6`` at every step, also just
  after a reset, provided its current ``u`` (never reset, growing to at most
  ``a 2^6 2^12 / iDecay``) stays below the 24-bit wrap (:func:`max_relay_threshold`, which
  the compiler keeps ``vThMant`` under).

In a feature map the sources are channels instead (:mod:`rewire.compiler.conv_lines`): a
first conv layer's bias reads **always-on input channels** (payload 1 at every pixel), and a
conv layer before a biased layer gets **relay channels**, every pixel of which fires at every
step; a kernel reads them only through taps that are in bounds at every output position, and
a dense layer after a conv layer reads the relay channels' pixels.

The relays have no recurrent weights, drive nothing but the next layer's bias column and
relays, and are appended after the layer's real neurons (the output layer gets none, so the
network's output is unchanged). They are neurons on the chip, and the lines are input axons:
:func:`with_lines` maps the cores again with them and refuses a network they push over the
profile's limits; :func:`chip_cost` counts them. The integer model of the result, fed the
lines (:func:`line_inputs`), equals the biased network's spike for spike, undelayed and
Lava-delayed (:func:`rewire.compiler.simulate.simulate`).

Example:
    >>> import numpy as np
    >>> from rewire.ir.network import Network
    >>> from rewire.ir.nodes import Dense, LIF
    >>> from rewire.compiler.quantize import compile_network
    >>> from rewire.hw_profiles.profile import load_profile
    >>> w = np.full((3, 2), 0.5, np.float32)
    >>> net = Network((Dense(w, bias=np.ones(3, np.float32)), LIF(100.0),
    ...                Dense(w.T.copy(), bias=np.ones(2, np.float32)), LIF(100.0)),
    ...               input_shape=(2,), steps=4)
    >>> lined, lines = with_lines(compile_network(net, load_profile("loihi2"), 16))
    >>> lined.layers[0].v_th_mant   # the relay of fc1 needs 11 lines of 254: a > vThMant
    2540
    >>> lines, [l.shape for l in lined.layers]
    (11, [(4, 13), (2, 4)])
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from rewire.compiler.conv_lines import lined_conv, steady_taps
from rewire.compiler.mapping import map_cores
from rewire.compiler.netx_legal import netx_exact
from rewire.errors import CompileError, MappingError
from rewire.hw_profiles.profile import HardwareProfile
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import (CompiledConv, CompiledDense, CompiledLayer,
                                       CompiledRecurrentDense, lookup)

__all__ = ["has_bias", "max_relay_threshold", "relay_counts", "with_lines", "chip_cost",
           "line_inputs"]

_FIX = ("train with bias=False, or use LIFBoxCell (its relays need no current), or export "
        "ONNX/NIR, which carry the bias as it is")


def has_bias(net: CompiledNetwork) -> bool:
    """Whether any layer of ``net`` has a bias."""
    return any(l.bias_int is not None for l in net.layers)


def _wmax(profile: HardwareProfile) -> int:
    """The largest weight magnitude on the grid, both signs (254 on Loihi 2)."""
    w = profile.weights
    return min(w.max_int, -w.min_int) // w.step * w.step


def max_relay_threshold(i_decay: int, profile: HardwareProfile) -> int:
    """The largest ``vThMant`` of a layer whose relays fire at every step without their
    current wrapping: a relay's input ``a <= vThMant + w_max`` (module docstring) keeps
    ``u``, which grows to at most ``(a << 6) 2**12 / iDecay``, within ``2**23``. The compiler
    caps ``S`` so (``scale_limited_by = "relay current"``) where a later layer has a bias."""
    nfmt = profile.neuron
    top = (1 << (nfmt.state_bits - 1)) * i_decay // (nfmt.decay_unit << nfmt.activation_shift)
    return max(1, int(top) - _wmax(profile))


def _label(layer: CompiledLayer) -> str:
    return f"{layer.name} ({layer.source or layer.name})"


def _drivers_for_relays(net: CompiledNetwork, k: int, wmax: int) -> int:
    """How many always-on sources, each through weight ``wmax``, make a relay of layer ``k``
    fire at every step (``a = wmax * m > vThMant``).

    Raises:
        CompileError: the relay's current would wrap (``vThMant`` above
            :func:`max_relay_threshold`: a ``CubaLIF`` layer compiled for another profile or
            loaded from a file), naming the layer.
    """
    layer = net.layers[k]
    top = max_relay_threshold(layer.i_decay, net.profile)
    if layer.v_th_mant > top:
        raise CompileError(
            f"netx: layer {_label(layer)}: a bias in a later layer "
            f"needs relay neurons here that fire every step, but with iDecay = "
            f"{layer.i_decay} their synaptic current would wrap at 24 bits for vThMant = "
            f"{layer.v_th_mant} > {top}; compile the network again for "
            f"{net.profile.name} (it caps the scale so), or {_FIX}")
    return (layer.v_th_mant + wmax) // wmax


def _sources_per_unit(net: CompiledNetwork, k: int) -> tuple[int, str]:
    """``(n, why)``: the always-on sources one neuron of layer ``k`` can read from each
    always-on unit before it (a line or relay neuron: 1; a relay channel read by a dense
    layer: its pixels; an always-on channel read by a conv layer: its steady taps), and why
    there are none."""
    layer = net.layers[k]
    before = net.layers[k - 1] if k else None
    if isinstance(layer, CompiledConv):
        if before is not None and not isinstance(before, CompiledConv):
            return 0, f"it reads the dense layer {before.name}, whose relays are no channels"
        return len(steady_taps(layer)), ("no kernel tap is in bounds at every output "
                                         "position (padding), so no channel-wide input")
    if isinstance(before, CompiledConv):
        return math.prod(before.out_shape[1:]), ""
    return 1, ""


def relay_counts(net: CompiledNetwork) -> tuple[int, list[int]]:
    """``(lines, relays)``: always-on input lines (input channels when the first layer is a
    conv layer) and relays per layer (``relays[k]`` appended to layer ``k``: neurons of a
    dense layer, channels of a conv layer; the last layer gets 0) that carry ``net``'s biases.

    Raises:
        CompileError: a bias that cannot be carried so (named): on a conv layer with no
            kernel tap in bounds at every output position, on a conv layer after a dense
            layer, or a relay whose current would wrap (:func:`_drivers_for_relays`).
    """
    wmax = _wmax(net.profile)
    relays = [0] * len(net.layers)
    need = 0  # always-on units layer k needs before it, walking back from the output
    stuck = []  # layers whose bias (or relays) has no always-on input
    for k in range(len(net.layers) - 1, -1, -1):
        layer = net.layers[k]
        relays[k] = need
        taps = _drivers_for_relays(net, k, wmax) if need else 0
        per_unit, why = _sources_per_unit(net, k)
        if (taps or layer.bias_int is not None) and not per_unit:
            stuck.append(f"{_label(layer)}: {why}")
            taps, per_unit = 0, 1
        need = max(1 if layer.bias_int is not None else 0, -(-taps // max(per_unit, 1)))
    if stuck:
        raise CompileError(
            f"netx: layers {'; '.join(reversed(stuck))}: a bias there (or relays that carry "
            f"a later layer's bias) has no exact netx image (netx's own bias starts before "
            f"the layer's input arrives in Lava); train these layers with bias=False (a "
            f"BatchNorm after a conv folds into a bias), give the conv 'same' padding, or "
            f"export ONNX/NIR")
    return need, relays


def _lined_dense(net: CompiledNetwork, k: int, drivers: int, relays: int, taps: int,
                 wmax: int) -> CompiledDense:
    """Dense layer ``k`` with ``drivers * per_unit`` always-on columns after its real inputs
    (the bias on the first; a relay channel gives ``per_unit`` pixels) and ``relays`` relay
    rows reading ``taps`` of them."""
    layer, per_unit = net.layers[k], _sources_per_unit(net, k)[0]
    n_out, n_in = layer.shape
    cols = drivers * per_unit
    w = np.zeros((n_out + relays, n_in + cols), np.int32)
    w[:n_out, :n_in] = layer.weight_int
    if layer.bias_int is not None:
        w[:n_out, n_in] = layer.bias_int
    w[n_out:, n_in:n_in + taps] = wmax
    fields = dict(weight_int=w, weight=np.pad(layer.weight, ((0, relays), (0, cols))),
                  bias=None, bias_int=None)
    if isinstance(layer, CompiledRecurrentDense):
        pad = ((0, relays), (0, relays))
        fields.update(weight_rec_int=np.pad(layer.weight_rec_int, pad),
                      weight_rec=np.pad(layer.weight_rec, pad))
    lined = dataclasses.replace(layer, **fields)
    if not netx_exact(lined.fan_in_matrix):  # pragma: no cover - wmax keeps netx's shift 0
        raise CompileError(f"netx: layer {layer.name}: the bias synapses are not on netx's "
                           f"weight grid")
    return lined


def _lined_conv(net: CompiledNetwork, k: int, drivers: int, relays: int, taps: int,
                wmax: int) -> CompiledConv:
    """Conv layer ``k`` with always-on input channels and relay channels
    (:func:`rewire.compiler.conv_lines.lined_conv`)."""
    return lined_conv(net.layers[k], drivers, relays, taps, wmax)


#: compiled layer type -> how it takes its always-on inputs and relays (a sum pool is a conv).
LINED = {CompiledDense: _lined_dense, CompiledConv: _lined_conv}


def with_lines(net: CompiledNetwork) -> tuple[CompiledNetwork, int]:
    """``net`` with its biases turned into always-on input lines and relays (module
    docstring): what :func:`rewire.export.netx.write` writes for a network with biases.

    Returns:
        ``(lined, lines)``: the compiled network without biases, whose first layer takes
        ``lines`` more inputs after the real ones (payload 1 at every step; input channels,
        1 at every pixel, for a conv layer: :func:`line_inputs`) and whose layers have their
        relays appended; its ``mapping`` places the relays too, its input layout is its
        first layer's own; ``(net, 0)`` for a network without biases.

    Raises:
        CompileError: see :func:`relay_counts`, or a matrix netx would not apply exactly.
        MappingError: the relays push the network over the profile's core limits (named).
    """
    if not has_bias(net):
        return net, 0
    lines, relays = relay_counts(net)
    wmax = _wmax(net.profile)
    layers = []
    for k, layer in enumerate(net.layers):
        drivers = lines if k == 0 else relays[k - 1]
        taps = _drivers_for_relays(net, k, wmax) if relays[k] else 0
        layers.append(lookup(LINED, layer, "with_lines")(net, k, drivers, relays[k], taps,
                                                           wmax))
    try:
        mapping = map_cores(layers, net.profile, net.mapping.allotted)
    except MappingError as exc:
        cost = chip_cost(net)
        raise MappingError(f"netx: the bias relays ({cost['relay_neurons']} relay neurons, "
                           f"{cost['line_inputs']} always-on inputs) do not fit "
                           f"{net.profile.name}: {exc}; {_FIX}", exc.limit, exc.layer,
                           exc.needed, exc.allowed) from None
    return dataclasses.replace(net, layers=tuple(layers), mapping=mapping,
                               input_layout=()), lines


def line_inputs(net: CompiledNetwork, lines: int) -> int:
    """The always-on input values of ``lines`` lines of ``net`` (not lined): ``lines`` for a
    dense first layer, ``lines * H * W`` for a conv one (channels of ones)."""
    first = net.layers[0]
    return lines * math.prod(first.in_shape[1:]) if isinstance(first, CompiledConv) else lines


def chip_cost(net: CompiledNetwork) -> dict:
    """What carrying ``net``'s biases on netx adds to the chip: ``{"lines": always-on lines
    (channels for a conv input), "line_inputs": their input values per step,
    "relays": {layer: relay neurons}, "relay_neurons": total}``; zeros without a bias.

    Raises:
        CompileError: see :func:`relay_counts`.
    """
    if not has_bias(net):
        return {"lines": 0, "line_inputs": 0, "relays": {}, "relay_neurons": 0}
    lines, relays = relay_counts(net)
    per = {l.name: r * (math.prod(l.out_shape[1:]) if isinstance(l, CompiledConv) else 1)
           for l, r in zip(net.layers, relays) if r}
    return {"lines": lines, "line_inputs": line_inputs(net, lines), "relays": per,
            "relay_neurons": sum(per.values())}
