r"""A neuron's chip image, one class per IR neuron kind (:mod:`rewire.ir.neurons`).

Each class holds what its kind becomes on a CUBA chip and every rule about it, in the way
lava-dl 0.6 netx (``netx/hdf5.py``) keeps a neuron's ``neuron_params`` together and NIR 1.0
keeps the equation on the node:

* float -> fixed point: :meth:`ChipNeuron.rates` (the fractions of current and voltage lost
  per step, and the weight gain), :meth:`ChipNeuron.decays` (``iDecay``, ``vDecay``),
  :meth:`ChipNeuron.threshold_mant` (``vThMant``) and :meth:`ChipNeuron.check` (what the kind
  cannot express on the chip);
* the integer step (:meth:`ChipNeuron.int_step`) on an arithmetic backend: the numpy one of
  :mod:`rewire.compiler.simulate` and the ONNX one of :mod:`rewire.export.onnx_int` run the
  same code, so the simulator and the integer file cannot drift apart;
* the file fields: :meth:`ChipNeuron.netx_fields` / :meth:`ChipNeuron.netx_refusal` and
  :meth:`ChipNeuron.nir_node`.

The chip arithmetic is Lava's ``PyLifModelBitAcc`` (lava-nc 0.10 ``lava/proc/lif/models.py``)::

    u = wrap24(trunc0(u * (4096 - iDecay) / 4096) + (a << 6))
    v = clip24(trunc0(v * (4096 - vDecay) / 4096) + u)
    z = v > (vThMant << 6);  v = 0 where z

with Norse 1.1's LIF step (``norse/torch/functional/lif.py``) the same recurrence once
``iDecay = round(4096 dt tau_syn_inv)``, ``vDecay = round(4096 dt tau_mem_inv)``,
``w_int = round(w dt tau_mem_inv S c_in)`` and ``vThMant = round(v_th S)``
(derivation: docs/compiler.md). A neuron with other spike fields (a subtractive or late
reset, several spikes per step, ``v >= th``, a floor: :data:`rewire.ir.neurons.SPIKE_FIELDS`)
replaces the last line by :func:`rewire.ir.chip_spikes.int_spike`, exact integer arithmetic
in the float order; netx refuses those fields by name (:meth:`ChipNeuron.netx_refusal`).
Adding a neuron kind means one subclass here and its entry in :data:`CHIP_NEURONS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from rewire.errors import CompileError
from rewire.hw_profiles.profile import HardwareProfile
from rewire.ir.chip_spikes import int_spike, netx_refusal, plain
from rewire.ir.neurons import IF, LI, LIF, CubaLI, CubaLIF
from rewire.ir.spike_metadata import to_metadata

__all__ = ["ChipNeuron", "CompiledCubaLIF", "CompiledLIF", "CompiledIF", "CompiledCubaLI",
           "CompiledLI", "CHIP_NEURONS", "chip_class", "decay_constant", "check_neuron",
           "neuron_decays", "cuba_rates"]


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


def _full(value: float, shape) -> np.ndarray:
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


class CompiledCubaLIF(ChipNeuron):
    """``CubaLIF``: ``(dt tau_syn_inv, dt tau_mem_inv, dt tau_mem_inv)``; NIR ``CubaLIF``
    with ``R = tau_mem/dt``, ``w_in = weight tau_syn/dt`` and ``v`` in units of
    ``tau_mem/dt``."""

    IR = CubaLIF

    @classmethod
    def rates(cls, neuron):
        dt = neuron.dt
        return dt * neuron.tau_syn_inv, dt * neuron.tau_mem_inv, dt * neuron.tau_mem_inv

    @classmethod
    def nir_node(cls, neuron, shape, weight: float = 1.0):
        import nir

        dt = neuron.dt
        tau_syn, tau_mem = 1.0 / neuron.tau_syn_inv, 1.0 / neuron.tau_mem_inv
        v_unit = tau_mem / dt  # NIR v = Norse v * tau_mem / dt
        return nir.CubaLIF(tau_syn=_full(tau_syn, shape), tau_mem=_full(tau_mem, shape),
                           r=_full(tau_mem / dt, shape),
                           v_leak=_full(neuron.v_leak * v_unit, shape),
                           v_threshold=_full(neuron.v_th * v_unit, shape),
                           v_reset=_full(neuron.v_reset * v_unit, shape),
                           w_in=_full(weight * (tau_syn / dt), shape),
                           metadata=to_metadata(neuron, v_unit))


class CompiledCubaLI(CompiledCubaLIF):
    """``CubaLI``: a ``CubaLIF`` without threshold (output ``v``); netx cannot read it out."""

    IR = CubaLI

    def netx_refusal(self):
        return _LEAKY_READOUT.format(kind=self.neuron.kind)

    @classmethod
    def nir_node(cls, neuron, shape, weight: float = 1.0):
        import nir

        dt = neuron.dt
        tau_mem, tau_syn = 1.0 / neuron.tau_mem_inv, 1.0 / neuron.tau_syn_inv
        unit = tau_mem / dt
        return nir.CubaLI(tau_syn=_full(tau_syn, shape), tau_mem=_full(tau_mem, shape),
                          r=_full(unit, shape), v_leak=_full(neuron.v_leak * unit, shape),
                          w_in=_full(weight * (tau_syn / dt), shape))


class CompiledLIF(ChipNeuron):
    """``LIF`` (Norse ``LIFBoxCell``): ``(1, dt tau_mem_inv, dt tau_mem_inv)`` (the current
    lasts one step); NIR ``LIF`` with ``tau = 1/tau_mem_inv``, ``r = 1`` and the voltages
    divided by a pool's ``weight`` (Euler at ``dt``: ``v += dt/tau (v_leak - v + S)``, Norse's
    ``LIFBoxCell`` step; Norse's ``from_nir`` ignores ``r``)."""

    IR = LIF

    @classmethod
    def rates(cls, neuron):
        dt = neuron.dt
        return 1.0, dt * neuron.tau_mem_inv, dt * neuron.tau_mem_inv

    @classmethod
    def nir_node(cls, neuron, shape, weight: float = 1.0):
        import nir

        tau_mem = 1.0 / neuron.tau_mem_inv
        return nir.LIF(tau=_full(tau_mem, shape), r=_full(1.0, shape),
                       v_leak=_full(neuron.v_leak / weight, shape),
                       v_threshold=_full(neuron.v_th / weight, shape),
                       v_reset=_full(neuron.v_reset / weight, shape),
                       metadata=to_metadata(neuron, 1.0 / weight))


class CompiledLI(CompiledLIF):
    """``LI`` (Norse ``LIBoxCell``): an ``LIF`` without threshold; netx cannot read it out."""

    IR = LI

    def netx_refusal(self):
        return _LEAKY_READOUT.format(kind=self.neuron.kind)

    @classmethod
    def nir_node(cls, neuron, shape, weight: float = 1.0):
        import nir

        tau_mem = 1.0 / neuron.tau_mem_inv
        return nir.LI(tau=_full(tau_mem, shape), r=_full(1.0, shape),
                      v_leak=_full(neuron.v_leak / weight, shape))


class CompiledIF(ChipNeuron):
    """``IF``: ``(1, 0, 1)``, ``vDecay = 0`` and weights ``w S``; NIR ``IF`` with ``r = 1``
    and the voltages divided by a pool's ``weight``: ``v += r S`` per step, as every NIR
    reader integrates it (Norse ``IAFCell``, sinabs ``IAF``, snnTorch 1.0 asserts ``r == 1``)."""

    IR = IF
    ZERO_LEAK = True

    @classmethod
    def rates(cls, neuron):
        return 1.0, 0.0, 1.0

    @classmethod
    def nir_node(cls, neuron, shape, weight: float = 1.0):
        import nir

        return nir.IF(r=_full(1.0, shape), v_threshold=_full(neuron.v_th / weight, shape),
                      v_reset=_full(neuron.v_reset / weight, shape),
                      metadata=to_metadata(neuron, 1.0 / weight))


_LEAKY_READOUT = ("a {kind} leaky-integrator readout; a netx network's output is spikes "
                  "(lava-dl 0.6 netx reads only CUBA/LIF neurons and Lava's sink records "
                  "s_out), so its voltage cannot be read out: end the model in a spiking layer "
                  "(e.g. LIFCell) for Loihi 2, or export this net as ONNX or NIR "
                  "(formats=['onnx', 'nir'])")

#: IR neuron class -> its chip image class.
CHIP_NEURONS: dict[type, type[ChipNeuron]] = {
    cls.IR: cls for cls in (CompiledCubaLIF, CompiledLIF, CompiledIF, CompiledCubaLI,
                            CompiledLI)}


def chip_class(neuron) -> type[ChipNeuron]:
    """The :class:`ChipNeuron` subclass of an IR neuron node.

    Raises:
        CompileError: a neuron type without a chip image (named).
    """
    try:
        return CHIP_NEURONS[type(neuron)]
    except KeyError:
        raise CompileError(f"neuron {type(neuron).__name__} has no chip image; known: "
                           f"{sorted(c.__name__ for c in CHIP_NEURONS)}") from None


def check_neuron(neuron, layer: str = "neuron") -> None:
    """:meth:`ChipNeuron.check` of ``neuron``'s kind."""
    chip_class(neuron).check(neuron, layer)


def neuron_decays(neuron, profile: HardwareProfile, name: str) -> tuple[int, int, float]:
    """:meth:`ChipNeuron.decays` of ``neuron``'s kind: ``(iDecay, vDecay, gain)``."""
    return chip_class(neuron).decays(neuron, profile, name)


def cuba_rates(neuron) -> tuple[float, float, float]:
    """:meth:`ChipNeuron.rates` of ``neuron``'s kind."""
    return chip_class(neuron).rates(neuron)
