"""How a chip moves events between layers, beyond its neuron's step: which layers receive
their input a step late, how many input events per channel and step it takes, and whether
its current accumulates synapse by synapse with saturation after each.

:data:`CHIP_RULES` maps a profile's ``neuron.model`` to its :class:`ChipRules`;
:mod:`rewire.compiler.simulate` reads them. Sources: Lava's CUBA chips, lava-nc 0.10
(``lava/proc/dense/models.py``: every ``Dense`` delivers a step late) run from a netx file
(lava-dl 0.6); Xylo Audio 2 (SYNS61201) as XyloSim 0.1.3 (``xylosim.v2.XyloLayer``) runs a
specification, measured in ``tests/export/test_xylo_sim.py`` (docs/xylo.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rewire.errors import CompileError
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import CompiledDense, CompiledLayer

__all__ = ["ChipRules", "CHIP_RULES", "chip_rules", "ordered_input"]


@dataclass(frozen=True)
class ChipRules:
    """Attributes:
        first_delayed: in the chip's delayed model the first layer's input arrives a step
            late too (Lava: every ``Dense``; Xylo: the input reaches the hidden neurons in
            the same step, hidden and readout spikes a step late).
        input_max: input events per channel and step the chip takes, more clipped to it
            (Xylo: 15); ``None``: no limit (Lava's graded payload).
        ordered: the current accumulates synapse by synapse in input order, saturated to
            the state bits after each (Xylo); ``False``: the sum is taken exactly first.
    """

    first_delayed: bool
    input_max: int | None = None
    ordered: bool = False

    def delayed(self, layers: int) -> tuple[bool, ...]:
        """Per layer of a chain of ``layers``: whether its input arrives a step late.

        Example:
            >>> CHIP_RULES["cuba_bitshift"].delayed(3), CHIP_RULES["cuba"].delayed(3)
            ((False, True, True), (True, True, True))
        """
        return (self.first_delayed,) + (True,) * (layers - 1)

    def clip_input(self, payload: np.ndarray) -> np.ndarray:
        """``payload`` (int64) as the chip takes it: clipped at :attr:`input_max`.

        Raises:
            ValueError: a negative event count on a chip whose input counts events.
        """
        if self.input_max is None:
            return payload
        if payload.size and payload.min() < 0:
            raise ValueError(f"payload: input events must be counts >= 0 on this chip, got "
                             f"{int(payload.min())}; give x >= 0")
        return np.minimum(payload, self.input_max)


#: profile ``neuron.model`` -> its rules.
CHIP_RULES: dict[str, ChipRules] = {
    "cuba": ChipRules(first_delayed=True),
    "cuba_bitshift": ChipRules(first_delayed=False, input_max=15, ordered=True),
}


def chip_rules(net: CompiledNetwork) -> ChipRules:
    """The :class:`ChipRules` of ``net``'s profile.

    Raises:
        rewire.errors.CompileError: a neuron model without rules (named, with the known ones).
    """
    model = net.profile.neuron.model
    if model not in CHIP_RULES:
        raise CompileError(f"profile {net.profile.name!r}: neuron model {model!r} has no "
                           f"integer model rules; known: {sorted(CHIP_RULES)}")
    return CHIP_RULES[model]


def ordered_input(layer: CompiledLayer, u: np.ndarray, s: np.ndarray, z_prev: np.ndarray,
                  saturate) -> np.ndarray:
    """``u`` plus the synaptic input of one step, added one presynaptic neuron at a time with
    ``saturate`` after each addition: the input ``s`` in index order, then (a recurrent
    layer) its own spikes of the step before ``z_prev`` in index order. That is Xylo's
    ``Isyn`` accumulation, measured against XyloSim 0.1.3: ``weights_in`` by input channel,
    then ``weights_rec`` by hidden neuron id (a later hidden layer's own recurrent block comes
    after the block of the layer before it, whose ids are lower). The ``w s`` of one synapse
    (``s`` events) is one saturated addition, which equals ``s`` saturated additions of ``w``.

    Exact and fast: where no partial sum can leave the range (``|u| + |W| |s|`` within it)
    the sum is taken at once; only the other samples are accumulated step by step.

    Args:
        layer: a dense or recurrent dense layer without skips or bias.
        u: ``(B, n_out)`` int64 current before the step.
        s: ``(B, n_in)`` int64 events or spike counts.
        z_prev: ``(B, n_out)`` int64 the layer's spikes of the step before (read only for a
            recurrent layer).
        saturate: the state range's saturation (:meth:`rewire.compiler.simulate.NumpyOps.saturate`).

    Returns:
        ``(B, n_out)`` int64, within the saturation range.

    Raises:
        rewire.errors.CompileError: a layer of another kind, with skips or a bias (named).
    """
    if not isinstance(layer, CompiledDense) or layer.skips or layer.bias_int is not None:
        raise CompileError(f"layer {layer.name}: the Xylo integer model takes dense layers "
                           f"without skips or bias (weights_in, weights_rec and weights_out "
                           f"hold nothing else)")
    w = layer.weight_int.astype(np.int64)
    if layer.recurrent:  # the input's synapses first, then the recurrent ones
        w = np.hstack([w, layer.weight_rec_int.astype(np.int64)])
        s = np.hstack([s, z_prev])
    total = u + s @ w.T
    top = int(saturate(np.array(np.iinfo(np.int64).max)))
    bound = np.abs(u) + np.abs(s) @ np.abs(w).T
    risky = np.flatnonzero((bound > top).any(axis=1))
    if risky.size:
        acc = u[risky].copy()
        for j in range(w.shape[1]):
            acc = saturate(acc + s[risky, j, None] * w[:, j])
        total[risky] = acc
    return saturate(total)
