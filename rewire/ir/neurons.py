r"""The IR's neuron models (:class:`CubaLIF`, :class:`LIF`, :class:`IF`, :class:`CubaLI`,
:class:`LI`), each a small frozen dataclass with its own parameters in SI units and its time
step ``dt`` explicit. Their discrete-time semantics are written once, in
:mod:`rewire.ir.dynamics` (see :mod:`rewire.ir.nodes` for the equations); their chip image
(fixed point, integer step, netx and NIR fields) in :mod:`rewire.ir.chip_neurons`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from rewire.ir._fields import _finite

__all__ = ["CubaLIF", "LIF", "IF", "CubaLI", "LI", "NEURONS", "Neuron"]

# --------------------------------------------------------------------------- neurons


@dataclass(frozen=True)
class _Neuron:
    """Shared checks: every field finite, time constants and ``dt`` > 0."""

    spiking: ClassVar[bool] = True
    kind: ClassVar[str] = ""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            positive = f.name == "dt" or f.name.endswith("_inv") or f.name == "v_th"
            object.__setattr__(self, f.name, _finite(f"{type(self).__name__}.{f.name}", value,
                                                     positive=positive))
        if self.spiking and getattr(self, "v_reset", 0.0) >= self.v_th:
            raise ValueError(f"{type(self).__name__}: v_reset = {self.v_reset} must be below "
                             f"v_th = {self.v_th}")

    def to_dict(self) -> dict:
        """``{"kind": ..., field: value, ...}`` (JSON-ready)."""
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class CubaLIF(_Neuron):
    """Current-based LIF (Norse ``LIFCell``, NIR ``CubaLIF``, Loihi CUBA).

    Attributes:
        tau_syn_inv: :math:`1/\\tau_\\mathrm{syn}` in 1/s.
        tau_mem_inv: :math:`1/\\tau_\\mathrm{mem}` in 1/s.
        v_th: threshold; v_leak, v_reset: leak and reset potentials (same units as ``v``).
        dt: Euler step in s.
    """

    tau_syn_inv: float
    tau_mem_inv: float
    v_th: float = 1.0
    v_leak: float = 0.0
    v_reset: float = 0.0
    dt: float = 1e-3
    kind: ClassVar[str] = "CubaLIF"


@dataclass(frozen=True)
class LIF(_Neuron):
    """LIF without synaptic current: the input enters ``v`` directly (Norse ``LIFBoxCell``,
    NIR ``LIF``).

    Attributes:
        tau_mem_inv: :math:`1/\\tau_\\mathrm{mem}` in 1/s.
        v_th, v_leak, v_reset: as :class:`CubaLIF`.
        dt: Euler step in s.
    """

    tau_mem_inv: float
    v_th: float = 1.0
    v_leak: float = 0.0
    v_reset: float = 0.0
    dt: float = 1e-3
    kind: ClassVar[str] = "LIF"


@dataclass(frozen=True)
class IF(_Neuron):
    """Integrate-and-fire, no leak: ``v += a`` (Norse ``IAFCell``, NIR ``IF``).

    Attributes:
        v_th, v_reset: threshold and reset potential.
        dt: the network's step in s (the dynamics do not depend on it).
    """

    v_th: float = 1.0
    v_reset: float = 0.0
    dt: float = 1e-3
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


NEURONS = {cls.kind: cls for cls in (CubaLIF, LIF, IF, CubaLI, LI)}
Neuron = CubaLIF | LIF | IF | CubaLI | LI
