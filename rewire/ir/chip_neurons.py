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
Adding a neuron kind means one subclass of :class:`~rewire.ir.chip_base.ChipNeuron` (here, or
in its own module as :mod:`rewire.ir.chip_bitshift` for Xylo's ``BitshiftLIF``) and its entry
in :data:`CHIP_NEURONS`.
"""

from __future__ import annotations

from rewire.errors import CompileError
from rewire.hw_profiles.profile import HardwareProfile
from rewire.ir.chip_base import ChipNeuron, decay_constant, full
from rewire.ir.chip_bitshift import CompiledBitshiftLIF
from rewire.ir.neurons import IF, LI, LIF, CubaLI, CubaLIF
from rewire.ir.spike_metadata import to_metadata

__all__ = ["ChipNeuron", "CompiledBitshiftLIF", "CompiledCubaLIF", "CompiledLIF", "CompiledIF", "CompiledCubaLI",
           "CompiledLI", "CHIP_NEURONS", "chip_class", "decay_constant", "check_neuron",
           "neuron_decays", "cuba_rates"]


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
        return nir.CubaLIF(tau_syn=full(tau_syn, shape), tau_mem=full(tau_mem, shape),
                           r=full(tau_mem / dt, shape),
                           v_leak=full(neuron.v_leak * v_unit, shape),
                           v_threshold=full(neuron.v_th * v_unit, shape),
                           v_reset=full(neuron.v_reset * v_unit, shape),
                           w_in=full(weight * (tau_syn / dt), shape),
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
        return nir.CubaLI(tau_syn=full(tau_syn, shape), tau_mem=full(tau_mem, shape),
                          r=full(unit, shape), v_leak=full(neuron.v_leak * unit, shape),
                          w_in=full(weight * (tau_syn / dt), shape))


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
        return nir.LIF(tau=full(tau_mem, shape), r=full(1.0, shape),
                       v_leak=full(neuron.v_leak / weight, shape),
                       v_threshold=full(neuron.v_th / weight, shape),
                       v_reset=full(neuron.v_reset / weight, shape),
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
        return nir.LI(tau=full(tau_mem, shape), r=full(1.0, shape),
                      v_leak=full(neuron.v_leak / weight, shape))


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

        return nir.IF(r=full(1.0, shape), v_threshold=full(neuron.v_th / weight, shape),
                      v_reset=full(neuron.v_reset / weight, shape),
                      metadata=to_metadata(neuron, 1.0 / weight))


_LEAKY_READOUT = ("a {kind} leaky-integrator readout; a netx network's output is spikes "
                  "(lava-dl 0.6 netx reads only CUBA/LIF neurons and Lava's sink records "
                  "s_out), so its voltage cannot be read out: end the model in a spiking layer "
                  "(e.g. LIFCell) for Loihi 2, or export this net as ONNX or NIR "
                  "(formats=['onnx', 'nir'])")

#: IR neuron class -> its chip image class.
CHIP_NEURONS: dict[type, type[ChipNeuron]] = {
    cls.IR: cls for cls in (CompiledCubaLIF, CompiledLIF, CompiledIF, CompiledCubaLI,
                            CompiledLI, CompiledBitshiftLIF)}


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
