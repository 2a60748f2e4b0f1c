"""Norse frontend, the sums: a neuron cell fed by the sum of several synaptic inputs (see
:mod:`rewire.frontends.norse`).

A sum's parts are sorted into
- a **recurrent** ``Linear`` fed by the cell's own spikes (netx ``dense_rec``),
- **skip connections** (He et al., CVPR 2016, eq. 1): a cell's spikes or the model input
  added as they are (identity shortcut), or through a ``Linear`` from an earlier cell or the
  input (projection shortcut), and
- exactly one **main** synapse: of the synapse modules left, the one whose source lies
  deepest on the data path (the layer before this one); the chain of layers follows it.

:func:`classify_sums` returns the cells' feedback modules and the skips; the tracer then walks
the chain along the main synapses (:mod:`rewire.frontends._norse_trace`), and the lowering
turns each skip into an IR :class:`~rewire.ir.network.Skip`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rewire.errors import LoweringError
from rewire.frontends._norse_convert import is_stateful
from rewire.ir.network import Skip


@dataclass(frozen=True)
class TracedSkip:
    """A skip connection found in the trace.

    Attributes:
        target: the cell (neuron module) it feeds.
        source: the cell whose spikes it carries, or the input marker.
        linear: the ``Linear`` it passes through, or ``None`` for an identity shortcut.
    """

    target: nn.Module
    source: object
    linear: nn.Module | None


def _target(part, input_marker):
    """The module a part of a sum comes from, or the input marker."""
    return input_marker if part == input_marker else part.target


def classify_sums(source_of: dict, paths: dict, input_marker: str
                  ) -> tuple[dict, list[TracedSkip]]:
    """Resolve every cell fed by a sum (``source_of[cell]`` a list of parts) in place: its
    entry becomes the main part; returns ``(feedback, skips)``.

    Args:
        source_of: module -> the call (or input marker) feeding it, or a list of them for a
            sum; changed in place.
        paths: module -> its path, for messages.
        input_marker: the tracer's marker of the model input.

    Raises:
        rewire.errors.LoweringError: a sum feeding a module that is not a neuron cell, two
            recurrent Linears, a sum without a synapse module, two candidate main synapses
            at the same depth, a projection shortcut whose Linear is itself fed by a sum or
            has a bias; each naming the module and the fix.
    """
    sums = {m: src for m, src in source_of.items() if isinstance(src, list)}
    feedback: dict = {}
    skips: list[TracedSkip] = []
    mains: dict = {}

    def name(m) -> str:
        return "the input" if m == input_marker else \
            f"{paths.get(m, '') or type(m).__name__} ({type(m).__name__})"

    def depth(m, seen=()) -> int:
        if m == input_marker:
            return 0
        if m in seen:  # a cycle through other layers (not a recurrent Linear of its own)
            raise LoweringError(f"{name(m)} feeds itself through other layers; feedback "
                                f"between layers has no mapping on the chip", paths.get(m, ""))
        src = main_of(m) if m in sums else source_of.get(m)
        below = depth(_target(src, input_marker), seen + (m,)) if src is not None else 0
        return below + (1 if is_stateful(m) else 0)

    def main_of(cell):
        if cell in mains:
            return mains[cell]
        label = name(cell)
        if not is_stateful(cell):
            raise LoweringError(f"{label} is fed by a sum of {len(sums[cell])} inputs; rewire "
                                f"maps a sum only as the input of a neuron cell (a residual "
                                f"block adds into the cell, not into a Linear)",
                                paths.get(cell, ""))
        parts = sums[cell]
        own = [p for p in parts if p != input_marker and isinstance(p.target, nn.Module)
               and not is_stateful(p.target) and
               _target(source_of.get(p.target), input_marker) is cell]
        if len(own) > 1:
            raise LoweringError(f"{label} is fed by {len(own)} Linears of its own spikes; "
                                f"merge them into one recurrent Linear", paths.get(cell, ""))
        if own:
            feedback[cell] = own[0].target
        rest = [p for p in parts if not any(p is o for o in own)]
        synapses = [p for p in rest if p != input_marker and not is_stateful(p.target)]
        if not synapses:
            raise LoweringError(f"{label} sums {len(rest)} inputs and none passes through a "
                                f"synapse module (Linear, Conv2d, ...): give the cell its own "
                                f"synapses and add the shortcut to them", paths.get(cell, ""))
        ranked = sorted(synapses, key=lambda p: -depth(p.target, (cell,)))
        if len(ranked) > 1 and depth(ranked[0].target, (cell,)) == \
                depth(ranked[1].target, (cell,)):
            raise LoweringError(f"{label} sums {name(ranked[0].target)} and "
                                f"{name(ranked[1].target)}, which come from the same depth; "
                                f"rewire takes the synapse from the previous layer as the "
                                f"layer's own and the others as skips: fuse parallel synapses "
                                f"into one", paths.get(cell, ""))
        mains[cell] = main = ranked[0]
        for part in rest:
            if part is main:
                continue
            target = _target(part, input_marker)
            if target == input_marker or is_stateful(target):  # identity shortcut
                skips.append(TracedSkip(cell, target, None))
                continue
            src = source_of.get(target)
            if isinstance(src, list):
                raise LoweringError(f"the shortcut {name(target)} into {label} is itself fed "
                                    f"by a sum; give the shortcut one source", paths.get(target, ""))
            _refuse_shortcut_bias(target, main.target, label, paths)
            skips.append(TracedSkip(cell, _target(src, input_marker), target))
        return main

    for cell in sums:
        source_of[cell] = main_of(cell)
    return feedback, skips


def _refuse_shortcut_bias(linear: nn.Module, main: nn.Module, cell: str, paths: dict) -> None:
    """Refuse a projection shortcut with a non-zero bias, naming it, the cell it feeds and a
    fix that compiles.

    An IR :class:`~rewire.ir.network.Skip` carries synapses only (no constant); the same
    constant into the same neurons is the bias of the cell's own synapse, which the IR
    carries exactly (``Dense.bias``), but adding it there changes the order of the float
    sums (``(W x + b) + (W_s z + b_s)`` against ``(W x + (b + b_s)) + W_s z``), so rewire
    does not do it silently: the user moves it, and the float IR then equals the model.

    Raises:
        rewire.errors.LoweringError: ``linear`` has a bias with a non-zero entry.
    """
    bias = getattr(linear, "bias", None)
    if bias is None or not bool(torch.any(bias != 0)):
        return
    path = paths.get(linear, "") or type(linear).__name__
    own = paths.get(main, "") or type(main).__name__
    fix = f"give {path} bias=False and retrain"
    if isinstance(main, nn.Linear) and isinstance(linear, nn.Linear):
        fix = (f"give {path} bias=False and move its bias into {own}, the Linear the cell "
               f"sums it with (the same constant into the same neurons): {own} = "
               f"nn.Linear(..., bias=True) with {own}.bias = {own}.bias + {path}.bias")
    raise LoweringError(f"the shortcut {path} ({type(linear).__name__}) into {cell} has a "
                        f"bias; a skip connection carries weighted spikes only, no constant: "
                        f"{fix}", path)


def traced_skips(skips: list[TracedSkip], layer_of: dict, neurons: list[int],
                 n_input: int) -> tuple[Skip, ...]:
    """The IR :class:`~rewire.ir.network.Skip` of each traced skip.

    Args:
        skips: :func:`classify_sums`' skips.
        layer_of: module -> the 1-based number of the layer its nodes end (a cell's own
            layer).
        neurons: neurons of each layer of the lowered chain, in order.
        n_input: values per sample of the model input.

    Raises:
        rewire.errors.LoweringError: a shortcut through a module other than a ``Linear``, or
            an identity shortcut between layers of different sizes, naming it and the fix (a
            shortcut's bias is refused by :func:`classify_sums`).
    """
    out = []
    for skip in skips:
        target = layer_of[skip.target]
        source = 0 if not isinstance(skip.source, nn.Module) else layer_of[skip.source]
        if skip.linear is not None:
            if not isinstance(skip.linear, nn.Linear):
                raise LoweringError(f"the shortcut {type(skip.linear).__name__} into layer "
                                    f"{target}: a shortcut maps as an identity or through a "
                                    f"bias-free Linear", "")
            weight = skip.linear.weight.detach().cpu().numpy()
        else:
            n_src = n_input if source == 0 else neurons[source - 1]
            n_dst = neurons[target - 1]
            if n_src != n_dst:
                raise LoweringError(f"an identity shortcut into layer {target} adds {n_src} "
                                    f"values to {n_dst} neurons; pass it through a Linear of "
                                    f"the right shape", "")
            weight = np.eye(n_dst, dtype=np.float32)
        out.append(Skip(source, target, weight))
    return tuple(out)
