"""NIR frontend, part 2a: a NIR neuron node to an IR neuron and the factor its synapse's
weights take (see :mod:`rewire.frontends.nir` for the equations: NIR spec, nir 1.0.8
``nir/ir/neuron.py``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from rewire.errors import LoweringError
from rewire.frontends._nir_graph import _arr, _kind
from rewire.ir import nodes as irn
from rewire.ir.spike_metadata import from_metadata


def _one(name: str, node, fld: str, n: int, default: float = 0.0) -> float:
    """The one value of a per-neuron field (a scalar, or ``n`` equal entries)."""
    value = getattr(node, fld, None)
    if value is None:
        return default
    a = _arr(value).ravel()
    if a.size == 0:
        raise ValueError(f"NIR node {name!r} ({_kind(node)}).{fld} is empty")
    if a.size not in (1, n):
        raise ValueError(f"NIR node {name!r} ({_kind(node)}).{fld} has {a.size} entries for "
                         f"a layer of {n} neurons")
    values = np.unique(a)
    if values.size != 1:
        raise LoweringError(f"NIR node {name!r} ({_kind(node)}).{fld} differs between neurons "
                            f"({values.size} values, {values.min():g} to {values.max():g}); "
                            f"the chip has one {fld} per layer: train with one value per "
                            f"layer or split the layer", piece=name)
    return float(values[0])


def _invert(stored: float, forward, approx: float, forward32=None) -> float:
    """The value ``c`` with ``forward(c) == stored`` that has the shortest decimal form:
    ``approx`` to 15 significant digits when that maps to ``stored`` exactly (so the 1.0 that
    rewire's writer scaled reads back as 1.0, not 0.9999999999999999), else to the fewest digits (up to
    7) that map to ``stored`` in float32 when it is a float32 (Norse and snnTorch write float32:
    Norse's ``dt / 200.0`` reads back as 200.0), else ``approx``."""
    forward32 = forward32 or forward
    if float(np.float32(stored)) == stored:
        for digits in range(1, 8):
            short = float(f"{approx:.{digits}g}")
            if np.float32(forward32(short)) == stored or np.float32(forward(short)) == stored:
                return short
    tidy = float(f"{approx:.15g}")
    return tidy if forward(tidy) == stored else approx


def _tidy_one(x: float) -> float:
    """``x`` as 1.0 when within 1e-12 of it (the ``w_in dt / tau_syn`` of rewire's and
    snnTorch's files is 1 up to float64 rounding)."""
    return 1.0 if abs(x - 1.0) < 1e-12 else x


def _inv_tau(tau: float, scale: float = 1.0) -> float:
    """``scale / tau`` in 1/s, tidied as :func:`_invert` does."""
    return _invert(tau, lambda c: scale / c, scale / tau,
                   lambda c: np.float32(scale) / np.float32(c))


def _rockpool_cuba(name: str, node, n: int, dt: float):
    r"""rockpool 3.1's ``LIFTorch`` step, which its ``to_nir`` writes as a ``CubaLIF``
    (``tau_syn``, ``tau_mem`` in s, ``r = tau_mem e^{-dt/tau_mem}/dt``, ``w_in = 1``):
    ``J = I + x; v = a v + b J; I = b J`` with the exact decays ``a = e^{-dt/tau_mem}``,
    ``b = e^{-dt/tau_syn}``. It is the IR's CubaLIF with ``dt tau_mem_inv = 1 - a``,
    ``dt tau_syn_inv = 1 - b``, voltages as written and the weights times ``b / (1 - a)``;
    rockpool's several spikes per step and subtractive reset are its spike fields
    (:mod:`rewire.frontends._nir_frameworks`)."""
    one = lambda fld, default=0.0: _one(name, node, fld, n, default)  # noqa: E731
    a, b = math.exp(-dt / one("tau_mem")), math.exp(-dt / one("tau_syn"))
    try:
        neuron = irn.CubaLIF((1 - b) / dt, (1 - a) / dt, v_th=one("v_threshold"),
                             v_leak=one("v_leak"), v_reset=one("v_reset"), dt=dt)
    except ValueError as exc:
        raise ValueError(f"NIR node {name!r} (CubaLIF): {exc}") from None
    return neuron, b / (1 - a)


def _sinabs(name: str, node, n: int, dt: float):
    r"""sinabs 3's own reading of a node it wrote (``sinabs/nir.py``: ``IF`` with ``r = 1``,
    ``LIF``/``LI`` with ``tau`` in time steps, ``r = 1``; ``sinabs/layers/functional/lif.py``
    ``lif_forward_single`` with ``norm_input=False``): ``IF`` is ``v += x`` with the threshold
    as written; ``LIF``/``LI`` are ``v = a v + x`` with ``a = e^{-1/tau}``: the IR's LIF/LI
    with ``dt tau_mem_inv = 1 - a``, voltages as written and the weights times ``1 / (1 -
    a)``."""
    one = lambda fld, default=0.0: _one(name, node, fld, n, default)  # noqa: E731
    kind = _kind(node)
    try:
        if kind == "IF":
            return irn.IF(v_th=one("v_threshold"), v_reset=one("v_reset"), dt=dt), 1.0
        if kind not in ("LIF", "LI"):
            raise LoweringError(f"NIR node {name!r} ({kind}): sinabs writes IF, LIF and LI "
                                f"neurons only; pass framework='nir' to read it by NIR's "
                                f"equations", piece=name)
        a = math.exp(-1.0 / one("tau"))
        if kind == "LI":
            return irn.LI((1 - a) / dt, v_leak=one("v_leak"), dt=dt), 1.0 / (1 - a)
        return irn.LIF((1 - a) / dt, v_th=one("v_threshold"), v_leak=one("v_leak"),
                       v_reset=one("v_reset"), dt=dt), 1.0 / (1 - a)
    except ValueError as exc:
        if isinstance(exc, LoweringError):
            raise
        raise ValueError(f"NIR node {name!r} ({kind}): {exc}") from None


def _bitshift(name: str, node, n: int, dt: float):
    r"""rewire's own Xylo node (written by
    :meth:`rewire.ir.chip_bitshift.CompiledBitshiftLIF.nir_node`: a ``CubaLIF`` with
    ``metadata["rewire.kind"] = "BitshiftLIF"``) read back as that
    :class:`~rewire.ir.neurons.BitshiftLIF`: the dash values and spike fields from the
    metadata, ``v_th = v_threshold``, weights as written (factor 1). The time constants must
    be ``dt 2**dash`` at the file's ``dt``, else the node was changed after rewire wrote it
    and is refused (``ValueError`` naming the field)."""
    one = lambda fld, default=0.0: _one(name, node, fld, n, default)  # noqa: E731
    meta = dict(getattr(node, "metadata", None) or {})
    dash = {}
    for fld, tau in (("dash_syn", "tau_syn"), ("dash_mem", "tau_mem")):
        value = meta.pop(f"rewire.{fld}", None)
        try:
            dash[fld] = irn.BitshiftLIF(value, 0).dash_syn  # its own check of a bit shift
        except ValueError:
            raise ValueError(f"NIR node {name!r} (BitshiftLIF): metadata 'rewire.{fld}' must "
                             f"be an integer >= 0, got {value!r}") from None
        if not math.isclose(one(tau), dt * 2.0 ** dash[fld], rel_tol=1e-6):
            raise ValueError(f"NIR node {name!r} (BitshiftLIF): {tau} = {one(tau)!r} s is not "
                             f"dt 2**{fld} = {dt * 2.0 ** dash[fld]!r} s (dt = {dt!r} s from "
                             f"the graph's metadata): the node was changed after rewire "
                             f"wrote it; write it again from the model")
    for key in ("rewire.kind", "rewire.note"):
        meta.pop(key, None)
    try:
        neuron = irn.BitshiftLIF(v_th=one("v_threshold"), dt=dt, **dash,
                                 **from_metadata(meta))
    except ValueError as exc:
        raise ValueError(f"NIR node {name!r} (BitshiftLIF): {exc}") from None
    return neuron, 1.0


#: ``metadata["rewire.kind"]`` -> the reader of a neuron kind NIR has no node for.
REWIRE_KINDS = {"BitshiftLIF": _bitshift}


def _lower_neuron(name: str, node, n: int, dt: float, mode: str = "nir",
                  tau_scale: float = 1.0):
    """``(IR neuron, weight factor)`` of a NIR neuron node of ``n`` neurons (module docstring
    of :mod:`rewire.frontends.nir`). ``mode``: ``"nir"`` NIR's equations (voltages / r, the
    CubaLIF factor w_in dt / tau_syn into the weights); ``"norse"`` Norse's own parameters
    (r = w_in = 1: voltages and weights as written); ``"spyx"`` spyx's (``r`` holds
    ``beta``, not a resistance, and ``V_t = beta V + x``: voltages divided by tau/dt, weights as
    written); ``"rockpool"`` a CubaLIF is rockpool's ``LIFTorch`` (:func:`_rockpool_cuba`).
    ``"sinabs"``: sinabs' own reading (:func:`_sinabs`). A node whose metadata names a rewire
    kind (``rewire.kind``, :data:`REWIRE_KINDS`) is read as that kind in every mode.
    ``tau_scale``: the time constants are ``tau_scale`` times too small (Norse 1.1: ``dt``)."""
    kind = _kind(node)
    own = (getattr(node, "metadata", None) or {}).get("rewire.kind")
    if own is not None:
        if own not in REWIRE_KINDS:
            raise ValueError(f"NIR node {name!r}: metadata 'rewire.kind' = {own!r} is not a "
                             f"kind rewire writes; known: {sorted(REWIRE_KINDS)}")
        return REWIRE_KINDS[own](name, node, n, dt)
    if mode == "sinabs":
        return _sinabs(name, node, n, dt)
    if mode == "rockpool" and kind == "CubaLIF":
        return _rockpool_cuba(name, node, n, dt)
    one = lambda fld, default=0.0: _one(name, node, fld, n, default)  # noqa: E731
    r = one("r")

    def volt_of(stored: float, divisor: float) -> float:
        return _invert(stored, lambda c: c * divisor, stored / divisor,
                       lambda c: np.float32(c) * np.float32(divisor))

    def volt(fld: str, divisor: float) -> float:
        return volt_of(one(fld), divisor)

    try:
        if kind in ("CubaLIF", "CubaLI"):
            ts, tm = one("tau_syn"), one("tau_mem")
            tsi, tmi = _inv_tau(ts, tau_scale), _inv_tau(tm, tau_scale)
            nir_mode = mode in ("nir", "rewire-1")
            factor = _tidy_one(one("w_in", 1.0) * dt / ts * tau_scale) if nir_mode else 1.0
            div = {"norse": 1.0, "spyx": tm / dt}.get(mode, r)
            if kind == "CubaLIF":
                neuron = irn.CubaLIF(tsi, tmi, v_th=volt("v_threshold", div),
                                     v_leak=volt("v_leak", div), v_reset=volt("v_reset", div),
                                     dt=dt)
            else:
                neuron = irn.CubaLI(tsi, tmi, v_leak=volt("v_leak", div), dt=dt)
        elif kind in ("LIF", "LI"):
            tau = one("tau")
            tmi, factor = _inv_tau(tau, tau_scale), 1.0
            div = {"norse": 1.0, "spyx": tau / dt}.get(mode, r)
            if kind == "LIF":
                neuron = irn.LIF(tmi, v_th=volt("v_threshold", div), v_leak=volt("v_leak", div),
                                 v_reset=volt("v_reset", div), dt=dt)
            else:
                neuron = irn.LI(tmi, v_leak=volt("v_leak", div), dt=dt)
        else:  # IF: v += r S per step, as NIR's readers integrate it (NIR stores no step);
            # rewire's files before r = 1 (mode "rewire-1") wrote r = weight/dt: v += dt r S
            div = 1.0 if mode in ("norse", "spyx") else r * dt if mode == "rewire-1" else r
            factor = 1.0
            neuron = irn.IF(v_th=volt("v_threshold", div), v_reset=volt("v_reset", div), dt=dt)
        if neuron.spiking:  # rewire's spike fields (rewire.ir.spike_metadata)
            fields = from_metadata(getattr(node, "metadata", None))
            if "v_min" in fields:
                fields["v_min"] = volt_of(fields["v_min"], div)
            neuron = dataclasses.replace(neuron, **fields) if fields else neuron
    except ValueError as exc:
        if isinstance(exc, LoweringError):
            raise
        raise ValueError(f"NIR node {name!r} ({kind}): {exc}") from None
    return neuron, factor
