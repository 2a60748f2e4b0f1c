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
        r"""NIR 1.0 ``CubaLIF`` of a ``BitshiftLIF`` (docs/formats.md, "Xylo's neuron in NIR"):
        ``tau_syn = dt 2**dash_syn``, ``tau_mem = dt 2**dash_mem`` (s),
        ``r = max(2**dash_mem - 1, 1)``, ``w_in = (2**dash_syn - 1) 2**dash_mem / r``,
        ``v_threshold = v_th / weight``, ``v_leak = v_reset = 0``.

        rockpool 3.1's ``from_nir`` takes ``dt = tau_mem / (1 + r)``, which is then ``dt``
        exactly (``dash_mem >= 1``), so its Xylo mapper's ``dash = log2(tau / dt)`` gives back
        both dash values; it reads the weights and ``v_threshold`` as written and ignores
        ``w_in``. A reader that steps the synapse equation and then the membrane equation
        on the new current (Norse 1.1's ``from_nir``: a ``LIBoxCell`` then a ``LIFBoxCell``;
        rewire's own CubaLIF reading, Norse's ``LIFCell`` order) gets ``I`` proportional to
        Xylo's ``i`` and exactly :math:`v_t = (1 - 2^{-d_m}) v_{t-1} + i_t` (up to the
        scale of ``v``, which ``v_threshold`` follows); one that steps both equations from
        the previous step's values (explicit Euler of the coupled equations) gives ``v``
        the current of the step before, one step late. Several spikes per step and the
        subtractive reset are in the metadata only. The ``metadata`` carries
        ``rewire.kind = "BitshiftLIF"``, ``rewire.dash_syn``/``rewire.dash_mem``, the spike
        fields (:mod:`rewire.ir.spike_metadata`) and those differences in words
        (``rewire.note``); rewire's reader (:mod:`rewire.frontends.nir`) reads the node back
        as the ``BitshiftLIF`` it was, by them.

        Raises:
            CompileError: ``dash_syn = 0``: the current is emptied every step, so the neuron
                never receives input; NIR could only say so with ``w_in = 0``, which readers
                refuse.
        """
        import nir

        from rewire.ir.spike_metadata import to_metadata

        dt, ds, dm = neuron.dt, neuron.dash_syn, neuron.dash_mem
        if ds == 0:
            raise CompileError("NIR export: a BitshiftLIF with dash_syn = 0 empties its "
                               "synaptic current every step and never receives input; NIR "
                               "can only write that as w_in = 0, which readers refuse: "
                               "train with dash_syn >= 1")
        r = max(2.0 ** dm - 1.0, 1.0)
        meta = {**to_metadata(neuron, 1.0 / weight), "rewire.kind": "BitshiftLIF",
                "rewire.dash_syn": ds, "rewire.dash_mem": dm, "rewire.note": NIR_NOTE}
        return nir.CubaLIF(tau_syn=full(dt * 2.0 ** ds, shape),
                           tau_mem=full(dt * 2.0 ** dm, shape), r=full(r, shape),
                           v_leak=full(0.0, shape), v_threshold=full(neuron.v_th / weight, shape),
                           v_reset=full(0.0, shape),
                           w_in=full((2.0 ** ds - 1.0) * 2.0 ** dm / r, shape), metadata=meta)


#: How the CubaLIF of :meth:`CompiledBitshiftLIF.nir_node` reads as Xylo's neuron (its metadata).
NIR_NOTE = ("Xylo BitshiftLIF: i = (1 - 2^-dash_syn)(i + a); v = (1 - 2^-dash_mem) v + i; "
            "n = min(floor(v / v_threshold), rewire.max_spikes) spikes at v >= v_threshold, "
            "v -= n v_threshold. The input reaches v in the same step: stepping the synapse "
            "and then the membrane on the new current (Norse's from_nir) is exact; explicit "
            "Euler of both equations from the previous step's values is one step late")
