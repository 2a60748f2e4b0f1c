"""Skip (residual) connections in the compiler: which ones map, and how a layer quantized
with its skip weights as extra columns is split back (:func:`rewire.compiler.quantize
.compile_network`).

A skip into a dense layer carries binary spikes, as the layer's recurrent weights do, so it
joins the layer's extra columns ``[W | W_rec | W_skip ...]`` and shares its scale ``S``: the
weight, activation and current bounds of docs/compiler.md then cover it unchanged. A conv
layer's quantizer reads one kernel row per output channel, so a skip into it joins as the
worst skip row of each channel's neurons (an upper bound on every neuron of the channel) and
is rounded afterwards at the scale found, by the same rule.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rewire.compiler.rounding import round_weights
from rewire.errors import CompileError
from rewire.ir import nodes as ir_nodes
from rewire.ir.compiled_layers import CompiledDense, CompiledRecurrentDense, CompiledSkip
from rewire.ir.network import Network

__all__ = ["check_skips", "split_skips", "conv_skip_columns", "with_conv_skips"]


def split_skips(compiled, rec, skips) -> CompiledDense:
    """The layer quantized with ``[W | W_rec | W_skip ...]`` as one block (a
    :class:`CompiledRecurrentDense` whose ``weight_rec`` is every extra column), split back
    into its own (recurrent) weights and its :class:`CompiledSkip` connections.

    Args:
        compiled: that layer; rec: float ``(out, out)`` recurrent weights or ``None``;
        skips: the IR :class:`~rewire.ir.network.Skip` nodes, in column order.
    """
    fields = {f.name: getattr(compiled, f.name) for f in dataclasses.fields(CompiledDense)}
    col = 0 if rec is None else rec.shape[1]
    cut = []
    for skip in skips:
        w = skip.weight.shape[1]
        cut.append(CompiledSkip(source=skip.source, weight=skip.weight,
                                weight_int=np.ascontiguousarray(
                                    compiled.weight_rec_int[:, col:col + w])))
        col += w
    fields["skips"] = tuple(cut)
    if rec is None:
        return CompiledDense(**fields)
    return CompiledRecurrentDense(weight_rec=np.asarray(rec, np.float32),
                                  weight_rec_int=np.ascontiguousarray(
                                      compiled.weight_rec_int[:, :rec.shape[1]]), **fields)


def check_skips(network: Network, k: int, name: str, layer, current: bool):
    """The IR skips into layer ``k`` (0-based, compiled name ``name``).

    Raises:
        CompileError: a skip into a sum pool, or from the input under current encoding,
            naming the layer, why and the fix.
    """
    skips = network.skips_into(k + 1)
    for skip in skips:
        src = "the input" if skip.source == 0 else network.layers[skip.source - 1].name
        if isinstance(layer.synapse, ir_nodes.SumPool2d):
            raise CompileError(f"layer {name} ({layer.name}): a skip connection from {src} "
                               f"feeds a sum pool, whose weights are one constant; add the "
                               f"shortcut after a Conv2d instead")
        if skip.source == 0 and current:
            raise CompileError(f"layer {name} ({layer.name}): a skip connection from the "
                               f"input under current encoding would carry graded payloads "
                               f"at another scale than the layer's spikes; use "
                               f"encoding='rate', or start the skip at the first layer's "
                               f"output")
    return skips


def conv_skip_columns(out_shape: tuple[int, ...], skips) -> np.ndarray | None:
    """Extra float ``(C_out, m)`` columns for a conv layer's quantizer: row ``c`` holds, per
    skip, the ``|weights|`` of the channel-``c`` neuron with the largest skip row sum (sorted,
    so the row's sum and its largest entry bound every neuron of the channel). ``None``
    without skips."""
    if not skips:
        return None
    c_out, per = out_shape[0], int(np.prod(out_shape[1:]))
    cols = []
    for skip in skips:
        rows = np.abs(np.asarray(skip.weight, np.float64)).reshape(c_out, per, -1)
        worst = rows[np.arange(c_out), rows.sum(axis=2).argmax(axis=1)]      # (C_out, n_src)
        top = rows.max(axis=(1, 2))                                          # (C_out,)
        worst = np.sort(worst, axis=1)
        worst[:, -1] = np.maximum(worst[:, -1], top)  # the largest weight of the channel too
        cols.append(worst)
    return np.hstack(cols)


def with_conv_skips(compiled, skips, profile) -> object:
    """``compiled`` (a conv layer quantized with :func:`conv_skip_columns`) with its skips
    rounded at its scale by the quantizer's own rule
    (:func:`rewire.compiler.rounding.round_weights`, ``k = g S / step``, ``g`` the neuron's
    weight gain), as :func:`rewire.compiler.quantize.quantize_layer` rounds a binary
    column."""
    gain = type(compiled.chip).decays(compiled.neuron, profile, compiled.name)[2]
    k = gain * compiled.scale / profile.weights.step
    cut = []
    for skip in skips:
        q = round_weights(np.array(skip.weight, np.float64), k, profile.weights)
        cut.append(CompiledSkip(source=skip.source, weight=skip.weight,
                                weight_int=q.astype(np.int32)))
    return dataclasses.replace(compiled, skips=tuple(cut))
