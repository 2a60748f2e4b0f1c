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

The relays have no recurrent weights, drive nothing but the next layer's bias column and
relays, and are appended after the layer's real neurons (the output layer gets none, so the
network's output is unchanged). The integer model of the result, fed the lines, equals the
biased network's spike for spike, undelayed and Lava-delayed
(:func:`rewire.compiler.simulate.simulate`).

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

import numpy as np

from rewire.compiler.netx_legal import netx_exact
from rewire.errors import CompileError
from rewire.hw_profiles.profile import HardwareProfile
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import CompiledConv, CompiledRecurrentDense

__all__ = ["has_bias", "max_relay_threshold", "relay_counts", "with_lines"]

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
            f"netx: layer {layer.name} ({layer.source or layer.name}): a bias in a later layer "
            f"needs relay neurons here that fire every step, but with iDecay = "
            f"{layer.i_decay} their synaptic current would wrap at 24 bits for vThMant = "
            f"{layer.v_th_mant} > {top}; compile the network again for "
            f"{net.profile.name} (it caps the scale so), or {_FIX}")
    return (layer.v_th_mant + wmax) // wmax


def relay_counts(net: CompiledNetwork) -> tuple[int, list[int]]:
    """``(lines, relays)``: always-on input lines and relay neurons per layer (``relays[k]``
    appended to layer ``k``; the last layer gets 0) that carry ``net``'s biases.

    Raises:
        CompileError: a bias that cannot be carried so (named): on a conv layer or a dense
            layer right after one (no relay fits in a feature map), or a relay whose current
            would wrap (:func:`_drivers_for_relays`).
    """
    wmax = _wmax(net.profile)
    relays = [0] * len(net.layers)
    need = 0  # sources layer k needs before it, walking back from the output
    stuck = []  # layers whose bias (or relays) would sit in or after a feature map
    for k in range(len(net.layers) - 1, -1, -1):
        layer = net.layers[k]
        relays[k] = need
        need = max(1 if layer.bias_int is not None else 0,
                   _drivers_for_relays(net, k, wmax) if relays[k] and not stuck else 0)
        before_conv = k and isinstance(net.layers[k - 1], CompiledConv)
        if need and (isinstance(layer, CompiledConv) or before_conv):
            stuck.append(f"{layer.name} ({layer.source or layer.name})")
            need = 0
    if stuck:
        raise CompileError(
            f"netx: layers {', '.join(reversed(stuck))}: a bias on a conv layer or after one "
            f"has no exact netx image (netx's own bias starts before the layer's input "
            f"arrives in Lava, and an always-on relay neuron has no place in a feature map); "
            f"train the conv layers with bias=False (a BatchNorm after a conv folds into a "
            f"bias), or export ONNX/NIR")
    return need, relays


def with_lines(net: CompiledNetwork) -> tuple[CompiledNetwork, int]:
    """``net`` with its biases turned into always-on input lines and relay neurons (module
    docstring): what :func:`rewire.export.netx.write` writes for a network with biases.

    Returns:
        ``(lined, lines)``: the compiled network without biases, whose first layer takes
        ``lines`` more inputs after the real ones (payload 1 at every step) and whose layers
        have their relay neurons appended; ``(net, 0)`` for a network without biases. Its
        ``mapping`` is ``net``'s (the relays are not placed).

    Raises:
        CompileError: see :func:`relay_counts`, or a matrix netx would not apply exactly.
    """
    if not has_bias(net):
        return net, 0
    lines, relays = relay_counts(net)
    wmax = _wmax(net.profile)
    layers = []
    for k, layer in enumerate(net.layers):
        drivers = lines if k == 0 else relays[k - 1]
        n_out, n_in = layer.shape
        w = np.zeros((n_out + relays[k], n_in + drivers), np.int32)
        w[:n_out, :n_in] = layer.weight_int
        if layer.bias_int is not None:
            w[:n_out, n_in] = layer.bias_int
        w[n_out:, n_in:] = wmax
        fields = dict(weight_int=w, weight=np.pad(layer.weight, ((0, relays[k]), (0, drivers))),
                      bias=None, bias_int=None)
        if isinstance(layer, CompiledRecurrentDense):
            pad = ((0, relays[k]), (0, relays[k]))
            fields.update(weight_rec_int=np.pad(layer.weight_rec_int, pad),
                          weight_rec=np.pad(layer.weight_rec, pad))
        lined = dataclasses.replace(layer, **fields)
        if not netx_exact(lined.fan_in_matrix):  # pragma: no cover - wmax keeps netx's shift 0
            raise CompileError(f"netx: layer {layer.name}: the bias synapses are not on netx's "
                               f"weight grid")
        layers.append(lined)
    return dataclasses.replace(net, layers=tuple(layers)), lines
