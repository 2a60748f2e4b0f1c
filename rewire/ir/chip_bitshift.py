r"""The chip image of :class:`rewire.ir.neurons.BitshiftLIF`: SynSense Xylo's neuron in integer
arithmetic (Xylo Audio 2, SYNS61201; bit for bit the ``xylosim.v2.XyloLayer`` of XyloSim
0.1.3, which rockpool 3.1's ``XyloSim`` wraps).

With ``dec(x, d) = x >> d`` (arithmetic shift), replaced by ``+1`` where that is 0 and
``x > 0`` (a positive state always decays by at least one unit; a negative one already does),
and ``sat16`` the saturation to int16, one step of a neuron with synaptic input ``a`` (the
integer weights times the input events, clipped at 15 per channel and step, plus its
recurrent spikes of the step before) is::

    I = sat16(I + a);  I = I - dec(I, dash_syn)
    V = sat16(V + sat16(I - dec(V, dash_mem)))
    n = [V >= th] min(V // th, max_spikes);  V = V - n th

The change of ``V`` is saturated before it is added, and ``a`` is accumulated into ``I`` one
presynaptic neuron at a time, saturating after each (the integer model does that:
:func:`rewire.compiler.chip_rules.ordered_input`); both measured against XyloSim 0.1.3 in
``tests/export/test_xylo_sim.py``.
(:meth:`CompiledBitshiftLIF.int_step`; the fields ``i_decay``, ``v_decay`` and ``v_th_mant``
of :class:`~rewire.ir.chip_base.ChipNeuron` hold ``dash_syn``, ``dash_mem`` and the int16
threshold ``th``). Where the float weights and threshold are integers times ``1/S`` the float
model (:func:`rewire.ir.dynamics.bitshift_subthreshold`) differs from this only by the
rounding of the shifts.
"""

from __future__ import annotations

from rewire.errors import CompileError
from rewire.hw_profiles.profile import HardwareProfile
from rewire.ir.chip_base import ChipNeuron, full
from rewire.ir.chip_spikes import int_spike
from rewire.ir.neurons import BitshiftLIF

__all__ = ["CompiledBitshiftLIF"]


class CompiledBitshiftLIF(ChipNeuron):
    """``BitshiftLIF`` on Xylo: ``i_decay = dash_syn``, ``v_decay = dash_mem``,
    ``v_th_mant`` = the int16 threshold; weights ``round(w S)`` (gain 1: the input enters
    ``I`` unscaled)."""

    IR = BitshiftLIF

    @classmethod
    def rates(cls, neuron):
        """``(2**-dash_syn, 2**-dash_mem, 1)``: the fractions lost per step and the gain."""
        return 2.0 ** -neuron.dash_syn, 2.0 ** -neuron.dash_mem, 1.0

    @classmethod
    def check(cls, neuron, layer: str = "neuron") -> None:
        """Raises:
            CompileError: ``v_th <= 0``."""
        if not neuron.v_th > 0:
            raise CompileError(f"{layer}: v_th must be > 0, got {neuron.v_th}")

    @classmethod
    def decays(cls, neuron, profile: HardwareProfile, name: str) -> tuple[int, int, float]:
        """``(dash_syn, dash_mem, 1.0)`` after :meth:`check`.

        Raises:
            CompileError: a ``dash`` above ``2**decay_bits - 1`` (the profile's field).
        """
        cls.check(neuron, f"layer {name}")
        top = (1 << profile.neuron.decay_bits) - 1
        for field in ("dash_syn", "dash_mem"):
            value = getattr(neuron, field)
            if value > top:
                raise CompileError(f"layer {name}: {field} = {value} is above {top}, the "
                                   f"largest bit shift of {profile.name} (neuron.decay_bits = "
                                   f"{profile.neuron.decay_bits}); train with {field} <= {top}")
        return neuron.dash_syn, neuron.dash_mem, 1.0

    @classmethod
    def max_weight_shift(cls, profile: HardwareProfile) -> int:
        """The largest ``weight_shift`` of a Xylo weight matrix: ``state_bits - weights.bits``
        (8: ``127 << 8 = 32512`` and ``-128 << 8`` are the last int8 weights int16 holds;
        XyloSim 0.1.3 computes ``w << shift`` in int16, so ``127 << 9`` wraps to -512,
        measured)."""
        return max(0, profile.neuron.state_bits - profile.weights.bits)

    @classmethod
    def weight_range(cls, profile: HardwareProfile) -> tuple[int, int, int]:
        """``(min_int << s, max_int << s, step)`` with ``s`` = :meth:`max_weight_shift`: the
        chip's weight is ``int8 << weight_shift``, one shift per matrix (which shifts a
        network's matrices take: :func:`rewire.compiler.xylo.xylo_shifts`)."""
        fmt, s = profile.weights, cls.max_weight_shift(profile)
        return fmt.min_int << s, fmt.max_int << s, fmt.step

    def int_step(self, ops, u, v, a, z_prev=None):
        """One Xylo step (module docstring) on the backend ``ops`` (``add``, ``saturate``,
        ``bitshift_decay``, ``bitshift_leak`` and :func:`rewire.ir.chip_spikes.int_spike`'s ops); ``u`` is
        ``Isyn``, ``v`` is ``Vmem``.

        Returns:
            ``(u, v, out, n)`` as :meth:`ChipNeuron.int_step`.
        """
        u = ops.saturate(ops.add(u, a, "u_pre"))
        u = ops.bitshift_decay(u, self.i_decay, "u_")
        dv = ops.saturate(ops.add(u, ops.bitshift_leak(v, self.v_decay, "v_"), "dv"))
        v = ops.saturate(ops.add(v, dv, "v_pre"))
        v, out, n = int_spike(self, ops, v, z_prev)
        return u, v, out, n

    def netx_refusal(self) -> str | None:
        return ("a BitshiftLIF neuron (Xylo's: bit-shift decays, reset by subtraction, "
                "several spikes per step), which Lava's CUBA neuron cannot hold; compile it "
                "for the 'xylo' profile, or train with Norse's LIFCell for Loihi 2")

    def netx_fields(self, i_decay=None, v_decay=None) -> dict:
        raise CompileError(self.netx_refusal())

    @classmethod
    def nir_node(cls, neuron, shape, weight: float = 1.0):
        """NIR 1.0 ``CubaLIF`` with ``tau = dt / 2**-dash`` (``tau_syn``, ``tau_mem``),
        ``r = 1``, ``w_in = 1``: Euler at ``dt`` gives the decays ``1 - 2**-dash``; the input
        gain and order differ from this neuron's (``i`` decays before ``v`` reads it), which
        the ``metadata`` names (``rewire.kind = "BitshiftLIF"``, the dash values)."""
        import nir

        from rewire.ir.spike_metadata import to_metadata

        dt = neuron.dt
        tau_syn, tau_mem = dt * 2.0 ** neuron.dash_syn, dt * 2.0 ** neuron.dash_mem
        meta = {**to_metadata(neuron, 1.0 / weight),
                "rewire.kind": "BitshiftLIF", "rewire.dash_syn": neuron.dash_syn,
                "rewire.dash_mem": neuron.dash_mem}
        return nir.CubaLIF(tau_syn=full(tau_syn, shape), tau_mem=full(tau_mem, shape),
                           r=full(1.0, shape), v_leak=full(0.0, shape),
                           v_threshold=full(neuron.v_th / weight, shape),
                           v_reset=full(0.0, shape), w_in=full(1.0, shape), metadata=meta)
