r"""The base class of a neuron's chip image (:class:`ChipNeuron`) and the float-to-fixed-point
helpers its subclasses share. The subclasses, one per IR neuron kind, and their registry
:data:`rewire.ir.chip_neurons.CHIP_NEURONS` live in :mod:`rewire.ir.chip_neurons` (CUBA
kinds, Loihi) and :mod:`rewire.ir.chip_bitshift` (Xylo's bit-shift LIF); see
:mod:`rewire.ir.chip_neurons` for the arithmetic of the CUBA step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from rewire.errors import CompileError
from rewire.hw_profiles.profile import HardwareProfile
from rewire.ir.chip_spikes import int_spike, netx_refusal, plain

__all__ = ["ChipNeuron", "decay_constant", "full"]


def decay_constant(rate_inv: float, dt: float, profile: HardwareProfile, what: str,
                   allow_zero: bool = False) -> int:
    """``round(2**decay_bits * dt * rate_inv)``: a Norse time constant as a chip decay.

    Raises:
        CompileError: the decay rounds to 0 (no leak on chip; allowed for ``IF`` only) or
            exceeds ``2**decay_bits``.
    """
    if allow_zero and rate_inv == 0:
        return 0
    unit = profile.neuron.decay_unit
    if not np.isfinite(unit * dt * rate_inv):
        raise CompileError(f"{what}: dt * tau_inv = {dt * rate_inv:g} is not a finite number; "
                           f"give finite, positive dt and time constants")
    value = round(unit * dt * rate_inv)
    if value < 1 or value > unit:
        raise CompileError(f"{what}: dt * tau_inv = {dt * rate_inv:g} gives a decay of {value} "
                           f"/ {unit}; the chip needs 1..{unit} (change dt or the time constant)")
    return int(value)


def full(value: float, shape) -> np.ndarray:
    return np.full(shape, float(value), dtype=np.float64)


@dataclass(frozen=True)
class ChipNeuron:
    """The CUBA image of one layer's IR neuron (base class; one subclass per kind).

    Attributes:
        neuron: the IR neuron node with its float parameters.
        i_decay: ``iDecay`` in [0, 2**decay_bits] (current decay per step).
        v_decay: ``vDecay`` in [0, 2**decay_bits] (voltage decay per step).
        v_th_mant: ``vThMant`` (threshold ``vThMant << 6``); 0 for a leaky integrator.
    """

    neuron: object
    i_decay: int
    v_decay: int
    v_th_mant: int
    IR: ClassVar[type] = type(None)

    @property
    def spiking(self) -> bool:
        """Whether the neurons spike (``False`` for a leaky-integrator readout)."""
        return self.neuron.spiking

    # ------------------------------------------------------------ float -> fixed point
    @classmethod
    def rates(cls, neuron) -> tuple[float, float, float]:
        """``(dt/tau_syn, dt/tau_mem, gain)``: the fractions of current and voltage lost per
        step (``iDecay / 4096``, ``vDecay / 4096``) and the factor from a float weight to the
        chip's voltage units per unit of ``S``."""
        raise NotImplementedError  # pragma: no cover

    @classmethod
    def check(cls, neuron, layer: str = "neuron") -> None:
        """Refuse constants the chip's CUBA neuron cannot express. Every spike field
        (:data:`rewire.ir.neurons.SPIKE_FIELDS`) has an integer image
        (:mod:`rewire.ir.chip_spikes`); which file can hold it is the writer's question
        (:meth:`netx_refusal`).

        Raises:
            CompileError: ``v_leak`` non-zero, ``v_reset`` non-zero with ``reset='set'``, or
                ``v_th <= 0``.
        """
        v_leak, v_reset = getattr(neuron, "v_leak", 0.0), getattr(neuron, "v_reset", 0.0)
        if neuron.spiking and neuron.reset == "subtract":
            v_reset = 0.0  # a subtractive reset never reads v_reset
        if v_leak != 0 or v_reset != 0:
            raise CompileError(f"{layer}: {neuron.kind} v_leak = {v_leak} and v_reset = "
                               f"{v_reset} must both be 0 for the chip's CUBA neuron (it leaks "
                               f"to 0 and resets to 0); retrain with v_leak = v_reset = 0")
        if neuron.spiking and not neuron.v_th > 0:
            raise CompileError(f"{layer}: v_th must be > 0, got {neuron.v_th}")

    @classmethod
    def decays(cls, neuron, profile: HardwareProfile, name: str) -> tuple[int, int, float]:
        """``(iDecay, vDecay, gain)`` on ``profile``, after :meth:`check`.

        Raises:
            CompileError: as :meth:`check` and :func:`decay_constant`, naming ``name``.
        """
        cls.check(neuron, f"layer {name}")
        i_rate, v_rate, gain = cls.rates(neuron)
        i_decay = decay_constant(i_rate / neuron.dt, neuron.dt, profile, f"layer {name} iDecay")
        v_decay = decay_constant(v_rate / neuron.dt, neuron.dt, profile, f"layer {name} vDecay",
                                 allow_zero=cls.ZERO_LEAK)
        return i_decay, v_decay, gain

    ZERO_LEAK: ClassVar[bool] = False  #: ``vDecay = 0`` allowed (no leak: ``IF``)

    @classmethod
    def weight_range(cls, profile: HardwareProfile) -> tuple[int, int, int]:
        """``(lowest, highest, step)`` of the integer weights a layer of this neuron holds on
        ``profile``: its weight format's ``min_int``, ``max_int`` and ``step``."""
        fmt = profile.weights
        return fmt.min_int, fmt.max_int, fmt.step

    @classmethod
    def threshold_limit(cls, neuron, profile: HardwareProfile) -> float:
        """The largest ``S`` whose ``vThMant`` fits ``threshold_bits`` (``inf`` without one)."""
        if not neuron.spiking:
            return np.inf
        return profile.neuron.max_threshold_mant / neuron.v_th

    @classmethod
    def threshold_mant(cls, neuron, scale: float, profile: HardwareProfile, name: str,
                       limited_by: str) -> int:
        """``vThMant = round(v_th S)`` (0 for a leaky integrator).

        Raises:
            CompileError: outside ``1..max_threshold_mant``.
        """
        if not neuron.spiking:
            return 0
        top = profile.neuron.max_threshold_mant
        v_th_mant = int(round(neuron.v_th * scale))
        if not 1 <= v_th_mant <= top:
            raise CompileError(f"layer {name}: vThMant = {v_th_mant} is outside 1..{top}; the "
                               f"weights span too wide a range (limited by {limited_by})")
        return v_th_mant

    # ------------------------------------------------------------ integer step
    def int_step(self, ops, u, v, a, z_prev=None):
        """One chip step (module docstring) on the arithmetic backend ``ops``; a neuron with
        non-default spike fields thresholds, resets and floors ``v`` as
        :func:`rewire.ir.chip_spikes.int_spike` says.

        ``ops`` provides ``decay(x, decay, tag)``, ``shift(a)``, ``add(x, y, tag)``,
        ``wrap(u)``, ``clip(v)``, ``fire(v, v_th_mant)``, ``reset(fire, v)``,
        ``spikes(fire)`` and ``readout(v)``; for the spike fields also ``fire_at``,
        ``count``, ``mask``, ``subtract`` and ``floor``.

        Args:
            z_prev: the layer's spikes of the step before (needed with ``reset_delay``).

        Returns:
            ``(u, v, out, fire)``: the new states, the layer's output (spikes, or ``v`` for a
            leaky integrator) and the spikes (a mask, or counts with ``max_spikes > 1``;
            ``None`` for a leaky integrator).
        """
        u = ops.wrap(ops.add(ops.decay(u, self.i_decay, "u_"), ops.shift(a), "u_pre"))
        v = ops.clip(ops.add(ops.decay(v, self.v_decay, "v_"), u, "v_pre"))
        if not self.spiking:
            v, out = ops.readout(v)
            return u, v, out, None
        if not plain(self.neuron):
            v, out, fire = int_spike(self, ops, v, z_prev)
            return u, v, out, fire
        fire = ops.fire(v, self.v_th_mant)
        return u, ops.reset(fire, v), ops.spikes(fire), fire

    # ------------------------------------------------------------ file fields
    def netx_refusal(self) -> str | None:
        """Why a netx file cannot hold this neuron (every non-default spike field named, with
        the option to train with instead: :func:`rewire.ir.chip_spikes.netx_refusal`), or
        ``None``."""
        return netx_refusal(self.neuron) if self.spiking else None

    def netx_fields(self, i_decay: int | None = None, v_decay: int | None = None) -> dict:
        """The ``/layer/<k>/neuron`` entries of lava-dl 0.6 netx (``netx/hdf5.py``), in write
        order; ``i_decay``/``v_decay`` override the decays (netx's silent guard)."""
        return {"type": "CUBA",
                "iDecay": self.i_decay if i_decay is None else i_decay,
                "vDecay": self.v_decay if v_decay is None else v_decay,
                "vThMant": self.v_th_mant, "refDelay": 1, "gradedSpike": False}

    @classmethod
    def nir_node(cls, neuron, shape, weight: float = 1.0):
        """The NIR 1.0 node of ``neuron`` (full-shape float64 parameters), a synaptic
        ``weight`` (a pool's) folded into its input, the spike fields NIR has no field for in
        its ``metadata`` (:mod:`rewire.ir.spike_metadata`). The form of each kind is the one
        NIR's readers agree on (docs/formats.md, "NIR"; :mod:`rewire.export.nir_graph`)."""
        raise NotImplementedError  # pragma: no cover
