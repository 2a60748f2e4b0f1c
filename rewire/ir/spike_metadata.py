"""The spike and reset fields of an IR neuron as NIR node metadata (rewire's own keys).

NIR 1.0.8 (``nir/ir/neuron.py``) records a neuron's threshold and reset potential but not
how it resets or how many spikes it emits per step. rewire's NIR writer
(:mod:`rewire.export.nir_graph`) stores every :data:`rewire.ir.neurons.SPIKE_FIELDS` entry
that differs from its default in the neuron node's ``metadata`` under the key
``"rewire.<field>"``, and the NIR reader (:mod:`rewire.frontends.nir`) reads them back. A
neuron with the default fields (Norse's and Lava's rule) carries no such key, so files of such
networks are unchanged. The format (docs/formats.md, "NIR"):

=============================  =========  ==================================================
key                            type       meaning (:class:`rewire.ir.neurons.CubaLIF`)
=============================  =========  ==================================================
``rewire.reset``               str        ``"subtract"``: ``v <- v - n v_threshold``
``rewire.reset_delay``         bool       snnTorch's ``reset_delay=True``
``rewire.max_spikes``          int        most spikes per step (``n = floor(v/v_th)``)
``rewire.spike_at_threshold``  bool       spike at ``v >= v_threshold``
``rewire.v_min``               float      floor on ``v`` after the reset, in the node's own
                                          voltage units (those of ``v_threshold``)
=============================  =========  ==================================================

Example:
    >>> from rewire.ir.neurons import IF
    >>> meta = to_metadata(IF(v_th=1.0, reset="subtract", v_min=-2.0), v_unit=10.0)
    >>> meta
    {'rewire.reset': 'subtract', 'rewire.v_min': -20.0}
    >>> from_metadata(meta, v_unit=10.0)
    {'reset': 'subtract', 'v_min': -2.0}
"""

from __future__ import annotations

import math

from rewire.ir.neurons import RESETS, SPIKE_FIELDS

__all__ = ["PREFIX", "to_metadata", "from_metadata"]

PREFIX = "rewire."  #: key prefix of rewire's neuron-node metadata in a NIR file


def to_metadata(neuron, v_unit: float = 1.0) -> dict:
    """``{"rewire.<field>": value}`` for each spike field of ``neuron`` that differs from its
    default (:data:`rewire.ir.neurons.SPIKE_FIELDS`); ``{}`` for a leaky integrator or a
    neuron with the defaults.

    Args:
        neuron: an IR neuron node (:mod:`rewire.ir.neurons`).
        v_unit: the factor from the IR's voltage to the NIR node's (``v_min`` is written
            times it, as ``v_threshold`` is).
    """
    if not neuron.spiking:
        return {}
    out = {}
    for name, default in SPIKE_FIELDS.items():
        value = getattr(neuron, name)
        if value == default:
            continue
        if name == "v_min":
            value = float(value) * v_unit
        out[PREFIX + name] = value
    return out


def _flag(key: str, value, where: str) -> bool:
    if isinstance(value, (bool, int)) or type(value).__name__ == "bool_":
        if value in (0, 1):
            return bool(value)
    raise ValueError(f"{where}metadata {key!r} must be True or False, got {value!r}")


def _count(key: str, value, where: str) -> int:
    try:
        ok = float(value) == int(value) and int(value) >= 1 and not isinstance(value, bool)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"{where}metadata {key!r} must be an integer >= 1, got {value!r}")
    return int(value)


def _reset(key: str, value, where: str) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if value not in RESETS:
        raise ValueError(f"{where}metadata {key!r} must be one of {RESETS}, got {value!r}")
    return str(value)


def _volt(key: str, value, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v) or isinstance(value, (bool, str, bytes)):
        raise ValueError(f"{where}metadata {key!r} must be a finite number, got {value!r}")
    return v


#: spike field -> the check that reads its metadata value.
_READERS = {"reset": _reset, "reset_delay": _flag, "max_spikes": _count,
            "spike_at_threshold": _flag, "v_min": _volt}


def from_metadata(metadata: dict | None, v_unit: float = 1.0, where: str = "") -> dict:
    """The spike fields stored by :func:`to_metadata`, as keyword arguments of the IR neuron
    (``v_min`` divided by ``v_unit``); keys without the ``rewire.`` prefix are ignored.

    Raises:
        ValueError: an unknown ``rewire.`` key or a value of the wrong type, naming the key
            (``where`` prefixes the message, e.g. the node's name).
    """
    out = {}
    for key, value in dict(metadata or {}).items():
        if not str(key).startswith(PREFIX):
            continue
        name = str(key)[len(PREFIX):]
        if name not in _READERS:
            raise ValueError(f"{where}metadata {key!r} is not a rewire neuron field; known: "
                             f"{sorted(PREFIX + k for k in SPIKE_FIELDS)}")
        out[name] = _READERS[name](key, value, where)
    if "v_min" in out:
        out["v_min"] /= v_unit
    return out
