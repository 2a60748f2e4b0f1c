r"""The IR's neuron models (:class:`CubaLIF`, :class:`LIF`, :class:`IF`, :class:`CubaLI`,
:class:`LI`, :class:`BitshiftLIF`), each a small frozen dataclass with its own parameters in SI units and its time
step ``dt`` explicit. Their discrete-time semantics are written once, in
:mod:`rewire.ir.dynamics` (see :mod:`rewire.ir.nodes` for the equations); their chip image
(fixed point, integer step, netx and NIR fields) in :mod:`rewire.ir.chip_neurons`.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass
from typing import ClassVar

from rewire.ir._fields import _finite

__all__ = ["CubaLIF", "LIF", "IF", "CubaLI", "LI", "BitshiftLIF", "NEURONS", "Neuron", "RESETS",
           "SPIKE_FIELDS"]

#: Reset rules of a spiking neuron: ``"set"``: ``v <- v_reset`` after a spike (Norse, Lava's
#: CUBA, snnTorch ``reset_mechanism="zero"`` with ``v_reset = 0``); ``"subtract"``:
#: ``v <- v - n v_th`` for ``n`` spikes (snnTorch's default, sinabs, rockpool, Xylo).
RESETS = ("set", "subtract")

#: The spike and reset fields of every spiking neuron, with their defaults (the semantics of
#: Norse 1.1 and Lava's CUBA neuron). A neuron's ``to_dict`` leaves out fields at their default.
SPIKE_FIELDS = {"reset": "set", "reset_delay": False, "max_spikes": 1,
                "spike_at_threshold": False, "v_min": None}

# --------------------------------------------------------------------------- neurons


@dataclass(frozen=True)
class _Neuron:
    """Shared checks: every field finite, time constants and ``dt`` > 0."""

    spiking: ClassVar[bool] = True
    kind: ClassVar[str] = ""
    #: integer fields (checked by the kind itself, not made floats)
    INT_FIELDS: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if f.name in SPIKE_FIELDS or f.name in self.INT_FIELDS:
                continue
            value = getattr(self, f.name)
            positive = f.name == "dt" or f.name.endswith("_inv") or f.name == "v_th"
            object.__setattr__(self, f.name, _finite(f"{type(self).__name__}.{f.name}", value,
                                                     positive=positive))
        if self.spiking and getattr(self, "v_reset", 0.0) >= self.v_th:
            raise ValueError(f"{type(self).__name__}: v_reset = {self.v_reset} must be below "
                             f"v_th = {self.v_th}")
        if self.spiking:
            _check_spike_fields(self)

    def to_dict(self) -> dict:
        """``{"kind": ..., field: value, ...}`` (JSON-ready; spike fields at their default
        left out)."""
        out = {"kind": self.kind, **dataclasses.asdict(self)}
        for name, default in SPIKE_FIELDS.items():
            if name in out and out[name] == default:
                del out[name]
        return out


def _check_spike_fields(neuron) -> None:
    """Validate the :data:`SPIKE_FIELDS` of a spiking neuron, naming the field."""
    name = type(neuron).__name__
    if neuron.reset not in RESETS:
        raise ValueError(f"{name}.reset must be one of {RESETS}, got {neuron.reset!r}")
    for flag in ("reset_delay", "spike_at_threshold"):
        if not isinstance(getattr(neuron, flag), bool):
            raise ValueError(f"{name}.{flag} must be True or False, got "
                             f"{getattr(neuron, flag)!r}")
    spikes = neuron.max_spikes
    if isinstance(spikes, bool) or not isinstance(spikes, int) or spikes < 1:
        raise ValueError(f"{name}.max_spikes must be an integer >= 1, got {spikes!r}")
    if spikes > 1 and (neuron.reset != "subtract" or not neuron.spike_at_threshold):
        raise ValueError(f"{name}: max_spikes = {spikes} counts n = floor(v / v_th) spikes, "
                         f"which needs reset='subtract' and spike_at_threshold=True")
    if spikes > 1 and neuron.reset_delay:
        raise ValueError(f"{name}: reset_delay (snnTorch's delayed reset) is defined for one "
                         f"spike per step; set max_spikes = 1")
    if neuron.v_min is not None:
        v_min = _finite(f"{name}.v_min", neuron.v_min)
        if v_min >= neuron.v_th:
            raise ValueError(f"{name}: v_min = {v_min} must be below v_th = {neuron.v_th}")
        object.__setattr__(neuron, "v_min", v_min)


@dataclass(frozen=True)
class CubaLIF(_Neuron):
    """Current-based LIF (Norse ``LIFCell``, NIR ``CubaLIF``, Loihi CUBA).

    Attributes:
        tau_syn_inv: :math:`1/\\tau_\\mathrm{syn}` in 1/s.
        tau_mem_inv: :math:`1/\\tau_\\mathrm{mem}` in 1/s.
        v_th: threshold; v_leak, v_reset: leak and reset potentials (same units as ``v``).
        dt: Euler step in s.
        reset: ``"set"`` (``v <- v_reset``) or ``"subtract"`` (``v <- v - n v_th``); see
            :data:`RESETS`.
        reset_delay: snnTorch's ``reset_delay=True``: a spike of step ``t`` resets ``v`` at
            step ``t + 1``, after that step's integration and before its threshold test.
        max_spikes: most spikes per step; above 1, ``n = min(floor(v / v_th), max_spikes)``
            (sinabs ``MultiSpike``, rockpool, Xylo), which needs ``reset="subtract"``.
        spike_at_threshold: spike when ``v >= v_th`` (sinabs, rockpool, Xylo) instead of
            ``v > v_th`` (Norse, snnTorch, Lava).
        v_min: a floor on ``v`` after the reset (sinabs ``min_v_mem``), or ``None``.
    """

    tau_syn_inv: float
    tau_mem_inv: float
    v_th: float = 1.0
    v_leak: float = 0.0
    v_reset: float = 0.0
    dt: float = 1e-3
    reset: str = "set"
    reset_delay: bool = False
    max_spikes: int = 1
    spike_at_threshold: bool = False
    v_min: float | None = None
    kind: ClassVar[str] = "CubaLIF"


@dataclass(frozen=True)
class LIF(_Neuron):
    """LIF without synaptic current: the input enters ``v`` directly (Norse ``LIFBoxCell``,
    NIR ``LIF``).

    Attributes:
        tau_mem_inv: :math:`1/\\tau_\\mathrm{mem}` in 1/s.
        v_th, v_leak, v_reset: as :class:`CubaLIF`.
        dt: Euler step in s.
        reset, reset_delay, max_spikes, spike_at_threshold, v_min: as :class:`CubaLIF`.
    """

    tau_mem_inv: float
    v_th: float = 1.0
    v_leak: float = 0.0
    v_reset: float = 0.0
    dt: float = 1e-3
    reset: str = "set"
    reset_delay: bool = False
    max_spikes: int = 1
    spike_at_threshold: bool = False
    v_min: float | None = None
    kind: ClassVar[str] = "LIF"


@dataclass(frozen=True)
class IF(_Neuron):
    """Integrate-and-fire, no leak: ``v += a`` (Norse ``IAFCell``, NIR ``IF``).

    Attributes:
        v_th, v_reset: threshold and reset potential.
        dt: the network's step in s (the dynamics do not depend on it).
        reset, reset_delay, max_spikes, spike_at_threshold, v_min: as :class:`CubaLIF`.
    """

    v_th: float = 1.0
    v_reset: float = 0.0
    dt: float = 1e-3
    reset: str = "set"
    reset_delay: bool = False
    max_spikes: int = 1
    spike_at_threshold: bool = False
    v_min: float | None = None
    kind: ClassVar[str] = "IF"


@dataclass(frozen=True)
class CubaLI(_Neuron):
    """Leaky integrator with synaptic current, never spikes: a readout (Norse ``LICell``,
    NIR ``CubaLI``). Its output is ``v``.

    Attributes:
        tau_syn_inv, tau_mem_inv: in 1/s; v_leak: leak potential; dt: step in s.
    """

    tau_syn_inv: float
    tau_mem_inv: float
    v_leak: float = 0.0
    dt: float = 1e-3
    spiking: ClassVar[bool] = False
    kind: ClassVar[str] = "CubaLI"


@dataclass(frozen=True)
class LI(_Neuron):
    """Leaky integrator without synaptic current, never spikes: a readout (Norse
    ``LIBoxCell``, NIR ``LI``). Its output is ``v``.

    Attributes:
        tau_mem_inv: in 1/s; v_leak: leak potential; dt: step in s.
    """

    tau_mem_inv: float
    v_leak: float = 0.0
    dt: float = 1e-3
    spiking: ClassVar[bool] = False
    kind: ClassVar[str] = "LI"


@dataclass(frozen=True)
class BitshiftLIF(_Neuron):
    r"""Current-based LIF whose decays are bit shifts: SynSense Xylo's neuron (rockpool 3.1
    ``LIFBitshiftTorch``; the Xylo Audio 2 core, ``xylosim.v2.XyloLayer``).

    With :math:`\alpha_s = 1 - 2^{-\mathrm{dash\_syn}}` and
    :math:`\alpha_m = 1 - 2^{-\mathrm{dash\_mem}}` one step is (float semantics,
    :func:`rewire.ir.dynamics.bitshift_subthreshold`)

    .. math::
        i_t = (i_{t-1} + a_t) - 2^{-\mathrm{dash\_syn}} (i_{t-1} + a_t), \quad
        v_t = v_{t-1} - 2^{-\mathrm{dash\_mem}} v_{t-1} + i_t,

    then ``n = min(floor(v / v_th), max_spikes)`` spikes where ``v >= v_th`` and
    ``v <- v - n v_th`` (the only reset Xylo has). The input of a step reaches ``v`` in the
    same step. On the chip (:class:`rewire.ir.chip_bitshift.CompiledBitshiftLIF`) the
    products by :math:`2^{-d}` are arithmetic right shifts (at least one unit toward 0), the
    states saturate at 16 bits, hidden neurons emit up to 31 spikes per step and readout
    neurons one.

    Attributes:
        dash_syn, dash_mem: the decays as bit shifts (int >= 0; ``dash = 0`` empties the
            state every step).
        v_th: threshold (> 0).
        dt: the step in s (the dynamics do not depend on it; NIR's time constants do:
            ``tau = dt / 2**-dash``).
        max_spikes: most spikes per step (Xylo: 31 in hidden neurons, 1 in readout neurons).
        reset, spike_at_threshold, reset_delay, v_min: fixed at ``"subtract"``, ``True``,
            ``False``, ``None`` (Xylo's rule); other values raise ``ValueError``.

    Raises:
        ValueError: a ``dash`` that is not an integer >= 0, ``v_th <= 0``, or a spike field
            other than Xylo's rule (named).
    """

    dash_syn: int
    dash_mem: int
    v_th: float = 1.0
    dt: float = 1e-3
    reset: str = "subtract"
    reset_delay: bool = False
    max_spikes: int = 1
    spike_at_threshold: bool = True
    v_min: float | None = None
    kind: ClassVar[str] = "BitshiftLIF"
    INT_FIELDS: ClassVar[tuple[str, ...]] = ("dash_syn", "dash_mem")

    def __post_init__(self):
        for name in self.INT_FIELDS:
            value = getattr(self, name)
            try:  # an int, or a numpy integer read from a file
                dash = operator.index(value) if not isinstance(value, bool) else -1
            except TypeError:
                dash = -1
            if dash < 0:
                raise ValueError(f"BitshiftLIF.{name} must be an integer bit shift >= 0, got "
                                 f"{value!r}")
            object.__setattr__(self, name, int(dash))
        rule = {"reset": "subtract", "spike_at_threshold": True, "reset_delay": False,
                "v_min": None}
        for name, want in rule.items():
            if getattr(self, name) != want:
                raise ValueError(f"BitshiftLIF.{name} = {getattr(self, name)!r}: Xylo's neuron "
                                 f"has only {name} = {want!r}")
        super().__post_init__()


NEURONS = {cls.kind: cls for cls in (CubaLIF, LIF, IF, CubaLI, LI, BitshiftLIF)}
Neuron = CubaLIF | LIF | IF | CubaLI | LI | BitshiftLIF
