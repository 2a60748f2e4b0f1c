r"""Feed-forward networks of Xylo neurons (:class:`rewire.frontends.bitshift.LIFBitshiftCell`,
the training form of the IR's :class:`~rewire.ir.neurons.BitshiftLIF`), unrolled over time:
the main job's model for a profile whose ``neuron.model`` is ``cuba_bitshift`` (SynSense
Xylo Audio 2).

Each layer is a bias-free ``torch.nn.Linear`` (Xylo's weight nodes have no bias) followed by a
:class:`LIFBitshiftCell`; with :math:`j = i + W s_t`:

.. math::
    i_t = j - 2^{-d_s} j, \quad v_t = v_{t-1} - 2^{-d_m} v_{t-1} + i_t, \quad
    n_t = [v_t \ge \theta] \min(\lfloor v_t / \theta \rfloor, n_\mathrm{max}), \quad
    v_t \leftarrow v_t - n_t \theta

(rockpool 3.1 ``LIFBitshiftTorch``; SynSense Xylo Audio 2 documentation). Hidden layers emit
up to :data:`HIDDEN_MAX_SPIKES` spikes per step (the chip's), the readout one. Xylo delivers a
hidden layer's spikes to the next layer one step late; that lag shifts every later layer's
trace by one step and changes nothing else (a layer at rest that receives nothing stays at
rest), so the float model leaves it out and the chip runs ``T`` plus one step per lag
(:mod:`rewire.export.xylo_run`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from rewire.frontends.bitshift import LIFBitshiftCell
from rewire.training.model import SpikingMLP

__all__ = ["HIDDEN_MAX_SPIKES", "XyloNeuron", "XyloMLP"]

#: Most spikes a Xylo hidden neuron emits per step (XyloSim 0.1.3, measured; rockpool 3.1's
#: ``max_spikes_per_dt`` of the hidden layer).
HIDDEN_MAX_SPIKES = 31


@dataclass(frozen=True)
class XyloNeuron:
    """The neuron of every :class:`XyloMLP` layer (:class:`~rewire.ir.neurons.BitshiftLIF`).

    Attributes:
        dash_syn, dash_mem: the decays of ``i`` and ``v`` as bit shifts (fractions
            ``2**-dash`` lost per step; integers 0..15 on Xylo).
        v_th: threshold (float; the compiler maps it to the int16 threshold).
        dt: the step in s (written to NIR as ``tau = dt 2**dash``).
        hidden_max_spikes: most spikes per step of a hidden neuron (Xylo: 31).
        readout_max_spikes: most spikes per step of a readout neuron (Xylo: 1).
        readout_dash_syn, readout_dash_mem: the readout's own decays (Xylo's
            ``dash_syn_out``, ``dash_mem_out``); ``None``: the hidden layers'.

    The defaults were chosen on the ``digits-xylo`` validation split (docs/training.md,
    "Xylo"): ``dash_syn 1``, ``dash_mem 2``, the readout's ``dash_mem 4``, ``v_th 1``.
    """

    dash_syn: int = 1
    dash_mem: int = 2
    v_th: float = 1.0
    dt: float = 1e-3
    hidden_max_spikes: int = HIDDEN_MAX_SPIKES
    readout_max_spikes: int = 1
    readout_dash_syn: int | None = None
    readout_dash_mem: int | None = 4

    def dashes(self, readout: bool) -> tuple[int, int]:
        """``(dash_syn, dash_mem)`` of a hidden layer or of the readout."""
        if not readout:
            return self.dash_syn, self.dash_mem
        return (self.dash_syn if self.readout_dash_syn is None else self.readout_dash_syn,
                self.dash_mem if self.readout_dash_mem is None else self.readout_dash_mem)


class XyloMLP(SpikingMLP):
    """Fully connected SNN of Xylo neurons: ``sizes[0] -> ... -> sizes[-1]``; the same
    interface as :class:`~rewire.training.model.SpikingMLP` (``encode``, ``step``,
    ``run_encoded``, ``forward``), with :class:`LIFBitshiftCell` neurons.

    Args:
        sizes: neurons per layer, input first, e.g. ``(16, 128, 8)``.
        steps: time steps ``T``.
        encoding: ``"current"`` (the input vector, e.g. event counts / 15, every step) or
            ``"rate"``.
        neuron: :class:`XyloNeuron`.
        input_gain: the input current is ``input_gain * x``.

    Shapes:
        input ``(B, sizes[0])`` float in [0, 1]; output ``(T, B, sizes[-1])`` spike counts
        (0/1 for the readout).

    Raises:
        ValueError: as :class:`SpikingMLP`; a field of ``neuron`` that
            :class:`~rewire.ir.neurons.BitshiftLIF` refuses.

    Example:
        >>> import torch
        >>> net = XyloMLP((16, 32, 8), steps=4)
        >>> net(torch.rand(2, 16)).shape
        torch.Size([4, 2, 8])
    """

    def __init__(self, sizes: tuple[int, ...], steps: int = 16, encoding: str = "current",
                 neuron: XyloNeuron = XyloNeuron(), input_gain: float = 4.0) -> None:
        super().__init__(sizes, steps=steps, encoding=encoding, input_gain=input_gain)
        self.neuron = neuron
        last = len(self.sizes) - 2
        self.cells = nn.ModuleList(
            LIFBitshiftCell(*neuron.dashes(k == last), neuron.v_th,
                            neuron.readout_max_spikes if k == last
                            else neuron.hidden_max_spikes, neuron.dt)
            for k in range(len(self.sizes) - 1))
