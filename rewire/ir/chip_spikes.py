r"""The spike part of a neuron's chip image: threshold, reset and floor in fixed point.

The IR's spike fields (:data:`rewire.ir.neurons.SPIKE_FIELDS`, float semantics in
:func:`rewire.ir.dynamics._spike`) on the integer grid of a CUBA neuron, whose voltage ``v``
counts units of ``1 / (S 2**threshold_shift)`` (``vThMant = round(v_th S)``, the threshold
``vThMant << threshold_shift``). With ``th = vThMant << threshold_shift``, one step after the
integration of ``u`` and ``v`` is, in this order (the float order):

.. math::
    v &\leftarrow v - z_{t-1}\,th \ \text{(subtract)},\quad v \leftarrow 0 \text{ where }
        z_{t-1} \ \text{(set)} &&\text{only with } \texttt{reset\_delay} \\
    n &= [v > th] \ \text{or}\ [v \ge th]\ \text{or}\ [v \ge th]\min(\lfloor v / th\rfloor,
        \texttt{max\_spikes}) \\
    v &\leftarrow v - n\,th \ \text{(subtract)},\quad v \leftarrow 0 \text{ where } n > 0
        \ \text{(set)} &&\text{not with } \texttt{reset\_delay} \\
    v &\leftarrow \max(v, v_\mathrm{min}) ,\quad v_\mathrm{min} =
        \mathrm{round}(v_\mathrm{min,float}\,\mathrm{vThMant} / v_\mathrm{th})
        \ll \texttt{threshold\_shift}

(a floor on the threshold's mantissa grid, so sinabs' ``min_v_mem = -threshold`` is exactly
``-th``). Every step is exact integer arithmetic: where the float weights, threshold and floor
are integers times ``1/S`` the integer model equals the float one spike for spike
(``tests/ir/test_spike_fields.py``).

Lava's CUBA neuron (lava-nc 0.10 ``lava/proc/lif/models.py``, ``reset_voltage``: ``v[spike] =
0``) and therefore a netx file hold only the default: one spike per step at ``v > th``, ``v``
set to 0 in the step that spikes. :func:`netx_refusal` names each other field.
"""

from __future__ import annotations

from rewire.ir.neurons import SPIKE_FIELDS

__all__ = ["plain", "int_spike", "v_min_mant", "netx_refusal"]


def plain(neuron) -> bool:
    """Whether ``neuron`` has every spike field at its default (Norse's and Lava's rule)."""
    return all(getattr(neuron, k) == d for k, d in SPIKE_FIELDS.items())


def v_min_mant(neuron, v_th_mant: int) -> int | None:
    """The floor ``v_min`` on the threshold's mantissa grid: ``round(v_min vThMant / v_th)``
    (shifted by ``threshold_shift`` in the step), or ``None`` without a floor."""
    if neuron.v_min is None:
        return None
    return int(round(neuron.v_min * v_th_mant / neuron.v_th))


def _reset(ops, neuron, v, n, th, tag: str):
    if neuron.reset == "subtract":
        return ops.subtract(v, n, th, tag)
    return ops.reset(ops.mask(n, tag), v)


def int_spike(chip, ops, v, z_prev):
    """Threshold, reset and floor of one step (module docstring) on the backend ``ops``.

    Args:
        chip: the layer's :class:`rewire.ir.chip_neurons.ChipNeuron` (spiking).
        ops: the arithmetic backend (``fire``, ``fire_at``, ``count``, ``mask``, ``reset``,
            ``subtract``, ``floor``, ``spikes``).
        v: the voltage after this step's integration.
        z_prev: the layer's spikes of the step before (read only with ``reset_delay``).

    Returns:
        ``(v, out, n)``: the new voltage, the layer's output and the spike counts (0/1
        unless ``max_spikes > 1``).
    """
    neuron, th = chip.neuron, chip.v_th_mant
    if neuron.reset_delay:
        v = _reset(ops, neuron, v, z_prev, th, "late")
    if neuron.max_spikes > 1:
        n = ops.count(v, th, neuron.max_spikes)
    elif neuron.spike_at_threshold:
        n = ops.fire_at(v, th)
    else:
        n = ops.fire(v, th)
    if not neuron.reset_delay:
        v = _reset(ops, neuron, v, n, th, "now")
    floor = v_min_mant(neuron, th)
    if floor is not None:
        v = ops.floor(v, floor)
    return v, ops.spikes(n), n


#: Each non-default spike field: why Lava's CUBA neuron cannot hold it and what to train with.
_NETX_WHY = {
    "reset": ("resets by subtracting the threshold (reset='subtract'), but Lava's CUBA neuron "
              "sets v to 0 in the step that spikes",
              "train with a reset to zero: snnTorch reset_mechanism='zero' with "
              "reset_delay=False, Norse's LIFCell (its default), or sinabs "
              "reset_fn=MembraneReset()"),
    "reset_delay": ("resets one step late (snnTorch's reset_delay=True), but Lava's CUBA "
                    "neuron resets in the step that spikes",
                    "train with snnTorch reset_delay=False (and reset_mechanism='zero') or "
                    "Norse's LIFCell"),
    "max_spikes": ("emits up to {value} spikes per step (sinabs MultiSpike, rockpool "
                   "LIFTorch), but Lava's CUBA neuron emits one",
                   "train with one spike per step: sinabs spike_fn=SingleSpike, rockpool "
                   "max_spikes_per_dt=1, or Norse's LIFCell"),
    "spike_at_threshold": ("spikes at v >= v_th, but Lava's CUBA neuron spikes at v > v_th",
                           "train with a strict threshold (snnTorch, Norse)"),
    "v_min": ("floors v at v_min = {value} (sinabs min_v_mem), but Lava's CUBA neuron has no "
              "floor", "train without min_v_mem (sinabs min_v_mem=None)"),
}


def netx_refusal(neuron) -> str | None:
    """Why a netx file cannot hold ``neuron``'s spike fields (every non-default one named,
    with the option to train with instead), or ``None`` for Lava's own rule."""
    odd = [k for k, d in SPIKE_FIELDS.items() if getattr(neuron, k) != d]
    if not odd:
        return None
    parts = []
    for k in odd:
        why, fix = _NETX_WHY[k]
        parts.append(f"{k} = {getattr(neuron, k)!r}: it {why.format(value=getattr(neuron, k))}"
                     f"; {fix}")
    return (f"a {neuron.kind} neuron that lava-dl 0.6 netx (Lava's CUBA neuron: one spike per "
            f"step at v > v_th, v set to 0 in that step) cannot hold: " + "; ".join(parts)
            + "; or export this net as ONNX (formats=['onnx']), whose files carry it exactly")
