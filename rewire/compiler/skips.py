"""Skip (residual) connections in the compiler: which ones map, and how a layer quantized
with its skip weights as extra columns is split back (:func:`rewire.compiler.quantize
.compile_network`).

A skip into a dense layer carries binary spikes, as the layer's recurrent weights do, so it
joins the layer's extra columns ``[W | W_rec | W_skip ...]`` and shares its scale ``S``: the
weight, activation and current bounds of docs/compiler.md then cover it unchanged.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rewire.errors import CompileError
from rewire.ir import nodes as ir_nodes
from rewire.ir.compiled_layers import CompiledDense, CompiledRecurrentDense, CompiledSkip
from rewire.ir.network import Network

__all__ = ["check_skips", "split_skips"]


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
        CompileError: a skip into a conv or pool layer, or from the input under current
            encoding, naming the layer, why and the fix.
    """
    skips = network.skips_into(k + 1)
    for skip in skips:
        src = "the input" if skip.source == 0 else network.layers[skip.source - 1].name
        if not isinstance(layer.synapse, (ir_nodes.Dense, ir_nodes.RecurrentDense)):
            raise CompileError(f"layer {name} ({layer.name}): a skip connection from {src} "
                               f"feeds a {type(layer.synapse).__name__} layer; the compiler "
                               f"maps skips into dense layers only (a conv kernel is shared "
                               f"by its pixels, a skip weight is not): put the residual sum "
                               f"after a Flatten and a Linear, or drop the skip")
        if skip.source == 0 and current:
            raise CompileError(f"layer {name} ({layer.name}): a skip connection from the "
                               f"input under current encoding would carry graded payloads "
                               f"at another scale than the layer's spikes; use "
                               f"encoding='rate', or start the skip at the first layer's "
                               f"output")
    return skips
